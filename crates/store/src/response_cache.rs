//! Record of the response-cache setting of a public model (issue 6).

use gatehouse_types::Timestamp;
use serde::{Deserialize, Serialize};

/// A public model that opted in to the gateway's exact-match response cache: answers of its
/// non-streamed calls are kept for `ttl_secs` seconds, per team. Stored in `model_cache`, one row
/// per model, removed with the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCachePolicy {
    /// The public model name.
    pub model: String,
    /// Time to live of a cached answer, seconds (≥ 1).
    pub ttl_secs: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}
