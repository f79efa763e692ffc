//! The fallback module: when the inner provider fails, tries the providers of its `chain`
//! in order through the host's registry and returns the first success. When every one
//! fails, the primary (inner) error is returned unchanged.
//!
//! Fallback targets are adapters the host creates on first use, with no retry or fallback
//! of their own, so a fallback never recurses and a retry around it never multiplies. When
//! the stack has the built-in circuit breaker, the host puts each target behind it: a target
//! whose breaker is open fails at once, with the breaker's error and no network call, and
//! the walk moves on as after any failure.

mod policy;

use std::sync::OnceLock;

use arcllm_module_sdk::{config, target};
use arcllm_module_sdk::{
    export, hand_on, inner, log, pull_to_commit, registry, Error, EventStream, Guest, Level, ModuleGuest,
    RequestHandle, Response,
};
use policy::{parse_chain, Walk};

const METADATA_KEY: &str = "arcllm.fallback.provider";

static CHAIN: OnceLock<Vec<String>> = OnceLock::new();

struct Fallback;

impl Guest for Fallback {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let primary = match inner::invoke(request) {
            Ok(mut response) => {
                response.add_metadata(METADATA_KEY, inner::name());
                return Ok(response);
            }
            Err(error) => error,
        };
        let chain = CHAIN.get().map(Vec::as_slice).unwrap_or_default();
        let walked = policy::walk(
            chain,
            &primary,
            |last: &Error, target| log(Level::Warn, &format!("{}; falling back to {target}", last.summary())),
            |target| registry::invoke(target, request),
        );
        match walked {
            Walk::Answered { target, mut response } => {
                response.add_metadata(METADATA_KEY, &chain[target]);
                Ok(response)
            }
            Walk::Exhausted { failures } => Err(exhausted(primary, &failures, chain.len())),
        }
    }

    /// The primary, then each target of the chain, is pulled up to its first content event
    /// (the commit point); a failure before it moves on to the next target. The answer that
    /// commits is handed on with the rest of its stream, whose events never enter this
    /// module; a failure after it is the stream's own end.
    fn invoke_stream(request: &RequestHandle, first_event_timeout_ms: Option<u64>) -> Result<EventStream, Error> {
        let open = |stream: Result<EventStream, Error>, provider: &str| {
            let stream = stream?;
            Ok((pull_to_commit(&stream, provider)?, stream))
        };
        let primary_name = inner::name();
        let primary = match open(inner::invoke_stream(request, first_event_timeout_ms), &primary_name) {
            Ok((head, stream)) => return Ok(hand_on(head, stream, &[(METADATA_KEY.into(), primary_name)])),
            Err(error) => error,
        };
        let chain = CHAIN.get().map(Vec::as_slice).unwrap_or_default();
        let walked = policy::walk(
            chain,
            &primary,
            |last: &Error, target| log(Level::Warn, &format!("{}; falling back to {target}", last.summary())),
            |target| open(registry::invoke_stream(target, request, first_event_timeout_ms), target),
        );
        match walked {
            Walk::Answered { target, response: (head, stream) } => {
                Ok(hand_on(head, stream, &[(METADATA_KEY.into(), chain[target].clone())]))
            }
            Walk::Exhausted { failures } => Err(exhausted(primary, &failures, chain.len())),
        }
    }
    arcllm_module_sdk::delegate_to_inner!();
}

/// The primary error, once every fallback failed too.
fn exhausted(primary: Error, failures: &[Error], chain: usize) -> Error {
    if let Some(last) = failures.last() {
        log(
            Level::Error,
            &format!("{}; all {chain} fallbacks failed, returning the primary error", last.summary()),
        );
    }
    primary
}

impl ModuleGuest for Fallback {
    fn configure(config: String) -> Result<(), String> {
        let chain = parse_chain(&config)?;
        let _ = CHAIN.set(chain);
        Ok(())
    }
}

export!(Fallback);
