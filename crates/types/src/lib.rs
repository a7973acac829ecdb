//! Gatehouse wire types, identifiers, usage accounting and the one error-code table.
//!
//! This crate is pure data: no I/O, no async runtime. Every other crate depends on it.
//!
//! * [`aws`]: the sealed-secret form of an AWS credential set (Bedrock SigV4).
//! * [`error`]: [`ErrorCode`] (code → HTTP status, OpenAI `type`) and [`ApiError`], the only
//!   error that crosses an HTTP boundary.
//! * [`usage`]: [`Usage`], token counts as reported by providers.
//! * [`ids`]: UUIDv7 identifiers and timestamps.
//! * [`provider`]: [`ProviderKind`], the upstream dialects and their default base URLs.
//! * [`openai`]: OpenAI-compatible wire types (chat, embeddings, models), unknown fields kept.

pub mod aws;
pub mod apim;
pub mod error;
pub mod ids;
pub mod openai;
pub mod provider;
pub mod usage;

pub use error::{ApiError, ErrorCode};
pub use ids::{new_id, now, Id, Timestamp};
pub use provider::ProviderKind;
pub use usage::Usage;
