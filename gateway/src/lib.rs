//! `arcllm serve`: an HTTP gateway that speaks OpenAI's Chat Completions and Anthropic's
//! Messages, so that any program with one of those SDKs gets arcllm's module stacks (retry,
//! fallback, third-party modules) by changing its base URL.
//!
//! A request is decoded from its front end's shape into arcllm's normalized request
//! ([`openai`], [`anthropic`]), routed to a model ([`models`]: `provider/model`, `provider`
//! or an alias), run through that model's stack, and the answer (or its event stream) is
//! encoded back in the same front end's shape. Either front end reaches any provider.
//!
//! Around that: the gateway's own keys ([`auth`]), limits on bodies, concurrency and time
//! ([`limits`]), errors in each front end's format ([`errors`]), Prometheus metrics
//! ([`metrics`]), an access log line per request, hot reload, and graceful shutdown
//! ([`server`]).

#![warn(missing_docs)]

pub mod anthropic;
pub mod auth;
pub mod config;
pub mod errors;
mod fields;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod openai;
mod routes;
pub mod server;

use std::sync::atomic::{AtomicU64, Ordering};

use arcllm::types::{Request, Usage};

pub use config::{GatewayConfig, ServerConfig};
pub use errors::ApiError;
pub use server::{run, Gateway, ServeError};

/// The API shape a request came in, and its answer goes out, in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
}

impl Front {
    /// The route, as metrics and the access log name it.
    pub fn route(self) -> &'static str {
        match self {
            Front::OpenAi => "/v1/chat/completions",
            Front::Anthropic => "/v1/messages",
        }
    }
}

/// A client request, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The front end it came through.
    pub front: Front,
    /// The model the client named (an alias, `provider` or `provider/model`).
    pub model: String,
    /// The normalized request.
    pub request: Request,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether a stream ends with token counts (OpenAI's `stream_options.include_usage`;
    /// Anthropic streams always carry them).
    pub include_usage: bool,
}

/// Input tokens counting cached ones, the way OpenAI's `prompt_tokens` does, whatever the
/// vendor: arcllm's `total_tokens` counts every token a call processed, so this is the total
/// less the output.
pub(crate) fn input_tokens_including_cache(usage: &Usage) -> u64 {
    usage.total_tokens.saturating_sub(usage.output_tokens).max(usage.input_tokens)
}

/// A fresh response id with the vendor's prefix (`chatcmpl-`, `msg_`): unique within the
/// process and unlikely to repeat across processes.
pub(crate) fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    format!("{prefix}{:016x}{:08x}{n:08x}", nanos, std::process::id())
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// How long file changes must settle before the gateway re-reads config.toml.
pub(crate) const SETTLE: std::time::Duration = arcllm::model::DEFAULT_DEBOUNCE;
