//! The rate-limit module: a shared token bucket per provider (or per provider and model)
//! in front of the inner provider; the decisions are in `policy.rs`.
//!
//! A call takes a token, waiting for one (asleep: not charged as CPU) up to
//! `max_wait_seconds`; past that it fails with an `api` error, status 429 and
//! `retry_after_ms` set to when a token is due, which retry waits out and fallback treats
//! as a failure. With `tokens_per_minute` the answer's `usage.total_tokens` is counted too.
//! When the shared state is unavailable and the host fails closed, the call fails the same
//! way, saying so.

mod policy;

use std::sync::OnceLock;
use std::time::Duration;

use arcllm_module_sdk::state::HostState;
use arcllm_module_sdk::time::sleep;
use arcllm_module_sdk::{config, scope, shared};
use arcllm_module_sdk::{
    export, inner, log, Error, ErrorKind, Guest, Level, ModuleGuest, RequestHandle, Response,
};
use policy::{Admission, Policy};

static POLICY: OnceLock<Policy> = OnceLock::new();

fn policy() -> &'static Policy {
    POLICY.get_or_init(Policy::default)
}

/// The inner provider's name and the bucket's key. An instance serves one stack, whose
/// inner provider never changes: they are asked for once, not on every call.
static KEY: OnceLock<(String, String)> = OnceLock::new();

fn provider_and_key() -> &'static (String, String) {
    KEY.get_or_init(|| {
        let provider = inner::name();
        let key = policy().key(&provider, &inner::model_name());
        (provider, key)
    })
}

fn limited(provider: String, message: String, retry_after: Duration) -> Error {
    Error {
        kind: ErrorKind::Api,
        status: Some(429),
        retry_after_ms: Some(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)),
        should_retry: None,
        provider,
        message,
        body: None,
    }
}

struct RateLimit;

impl Guest for RateLimit {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let p = policy();
        let (provider, key) = provider_and_key();
        match p.admit(&mut HostState, key, sleep) {
            Admission::Admitted { waited } if waited > Duration::ZERO => log(
                Level::Warn,
                &format!("waited {:.3}s for a rate-limit token ({key})", waited.as_secs_f64()),
            ),
            Admission::Admitted { .. } => {}
            Admission::Limited { waited, retry_after, limit } => {
                let message = format!(
                    "rate limit reached for {key} ({limit}): no token within max_wait_seconds ({:.3}s, waited {:.3}s); the next is due in {:.3}s",
                    p.max_wait.as_secs_f64(),
                    waited.as_secs_f64(),
                    retry_after.as_secs_f64()
                );
                log(Level::Warn, &message);
                return Err(limited(provider.clone(), message, retry_after));
            }
            Admission::Unavailable(why) => {
                let message = format!("rate limit for {key} cannot be checked (shared state unavailable, on_error = \"closed\"): {why}");
                log(Level::Error, &message);
                return Err(limited(provider.clone(), message, Duration::from_secs(1)));
            }
        }
        let response = inner::invoke(request)?;
        if let Err(why) = p.record_usage(&mut HostState, key, response.usage.total_tokens) {
            log(Level::Warn, &format!("could not count this call's tokens against {key}: {}", why.0));
        }
        Ok(response)
    }
    // A streaming call through this layer is made whole and replayed: the layer decides
    // on whole calls (and counts their usage), so it does not stream yet.
    arcllm_module_sdk::buffered_stream!();
    arcllm_module_sdk::delegate_to_inner!();
}

impl ModuleGuest for RateLimit {
    fn configure(config: String) -> Result<(), String> {
        let parsed = Policy::from_json(&config)?;
        let _ = POLICY.set(parsed);
        Ok(())
    }
}

export!(RateLimit);
