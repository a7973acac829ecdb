//! Integration tests of the data plane: the real router in-process on port 0, SQLite store,
//! the testkit mock as upstream (issue 2 "Tests").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod counting;
mod harness;

mod anomaly;
mod auth;
mod bedrock;
mod azure_inbound;
mod cache;
mod hardening;
mod calllog;
mod chat;
mod checklist_dpop;
mod checklist_http;
mod checklist_jwt;
mod checklist_mtls;
mod cost;
mod derived;
mod failures;
mod gemini;
mod messages;
mod token_security;
mod token_caps;
mod limits;
mod oauth;
mod outbound;
mod restart;
mod routing;
mod services;
