//! The circuit-breaker module: stops calling a provider that keeps failing, for every
//! model of the process and every replica sharing a Redis; the decisions are in
//! `policy.rs`.
//!
//! While the breaker is open a call fails at once, without a network call, with an `api`
//! error, status 503 and `retry_after_ms` set to the rest of the cooldown: fallback treats
//! it as a failure and moves on to its next provider; retry waits the cooldown out.

mod policy;

use std::sync::OnceLock;

use arcllm_module_sdk::state::HostState;
use arcllm_module_sdk::{config, scope, shared};
use arcllm_module_sdk::{
    export, inner, log, Error, ErrorKind, Guest, Level, ModuleGuest, RequestHandle, Response,
};
use policy::{Gate, Outcome, Policy, Transition};

static POLICY: OnceLock<Policy> = OnceLock::new();

fn policy() -> &'static Policy {
    POLICY.get_or_init(Policy::default)
}

/// The inner provider's name and the breaker's target. An instance serves one stack, whose
/// inner provider never changes: they are asked for once, not on every call.
static TARGET: OnceLock<(String, String)> = OnceLock::new();

fn provider_and_target() -> &'static (String, String) {
    TARGET.get_or_init(|| {
        let provider = inner::name();
        let target = policy().target(&provider, &inner::model_name());
        (provider, target)
    })
}

fn outcome(result: &Result<Response, Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(error) => match error.kind {
            ErrorKind::Api => Outcome::Status(error.status.unwrap_or(0)),
            ErrorKind::Connection | ErrorKind::Timeout => Outcome::Unreachable,
            _ => Outcome::Other,
        },
    }
}

struct CircuitBreaker;

impl Guest for CircuitBreaker {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let p = policy();
        let (provider, target) = provider_and_target();
        let gate = p.gate(&mut HostState, target);
        if let Gate::Reject { retry_after, reason } = &gate {
            return Err(Error {
                kind: ErrorKind::Api,
                status: Some(503),
                retry_after_ms: Some(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)),
                should_retry: None,
                provider: provider.clone(),
                message: format!("{reason}: failing fast, no call made"),
                body: None,
            });
        }
        let result = inner::invoke(request);
        match p.record(&mut HostState, target, &gate, outcome(&result)) {
            Ok(Some(Transition::Opened { failures })) => log(
                Level::Warn,
                &format!(
                    "circuit breaker for {target} opened after {failures} failures within {}s; calls fail fast for {}s",
                    p.window.as_secs_f64(),
                    p.cooldown.as_secs_f64()
                ),
            ),
            Ok(Some(Transition::Reopened)) => log(
                Level::Warn,
                &format!("circuit breaker for {target}: the probe failed; open for another {}s", p.cooldown.as_secs_f64()),
            ),
            Ok(Some(Transition::Closed)) => {
                log(Level::Info, &format!("circuit breaker for {target}: the probe succeeded; closed"))
            }
            Ok(None) => {}
            Err(why) => log(Level::Warn, &format!("circuit breaker for {target} could not record the outcome: {}", why.0)),
        }
        result
    }
    // A streaming call through this layer is made whole and replayed: the layer decides
    // on whole calls (and counts their usage), so it does not stream yet.
    arcllm_module_sdk::buffered_stream!();
    arcllm_module_sdk::delegate_to_inner!();
}

impl ModuleGuest for CircuitBreaker {
    fn configure(config: String) -> Result<(), String> {
        let parsed = Policy::from_json(&config)?;
        let _ = POLICY.set(parsed);
        Ok(())
    }
}

export!(CircuitBreaker);
