//! The retry module: re-sends a failed invoke with exponential backoff and jitter.
//!
//! It decides and sleeps inside the sandbox: the wait runs on the WASI monotonic clock and
//! the jitter comes from WASI random, both granted (and, in tests, controlled) by the host.
//!
//! Rules (the decisions themselves are in `policy.rs`):
//! - retried: `api` errors whose status is in `retryable_status_codes`, and every
//!   `connection` and `timeout` error;
//! - never retried: 400, 401 and 403, statuses outside the set, `config`, `parse` and
//!   `module` errors;
//! - the vendor's `x-should-retry` verdict overrides the status rule (but never makes
//!   400/401/403 retryable);
//! - wait before retry n (from 0): `min(retry_after, max_wait)` when the error carries
//!   one, else `b + uniform(0, b)` with `b = base * 2^n` while that is below `max_wait`,
//!   and a draw from `(0.75 * max_wait, max_wait]` once it is not;
//! - `max_elapsed_seconds` bounds all attempts together: no wait starts that would end
//!   past it;
//! - when attempts run out, the last error is returned unchanged;
//! - with `budget_percent` set, retries to a provider are bounded across calls and
//!   replicas by a retry budget in the host's shared state (`budget.rs`): beyond it the
//!   failure is returned without retry, and the module logs why.
//! - streaming: an attempt counts as failed until its first content event (the commit
//!   point), and `first_token_timeout_seconds` bounds the wait for it; after it nothing is
//!   retried, unless `resume = true`: then a failure after it is retried like any other
//!   (same attempts, waits and budget), with the request continued by the text delivered
//!   so far, and the new attempt's stream continues the answer.

mod budget;
mod policy;

use std::sync::OnceLock;
use std::time::Duration;

use arcllm_module_sdk::state::HostState;
use arcllm_module_sdk::{config, shared};
use arcllm_module_sdk::time::{now_ns, random_unit, sleep};
use arcllm_module_sdk::{
    export, hand_on, hand_on_resumable, inner, log, pull_to_commit_from, resumption_of, Error, ErrorKind, EventStream,
    Guest, Level, ModuleGuest, RequestHandle, Response,
};
use budget::Verdict;
use policy::{Failure, Kind, Policy};

static POLICY: OnceLock<Policy> = OnceLock::new();
/// The inner provider's name, for the budget's keys.
static PROVIDER: OnceLock<String> = OnceLock::new();

fn policy() -> &'static Policy {
    POLICY.get_or_init(Policy::default)
}

/// What the policy needs to know of `error`.
fn failure(error: &Error) -> Failure {
    let kind = match error.kind {
        ErrorKind::Api => Kind::Api,
        ErrorKind::Connection => Kind::Connection,
        ErrorKind::Timeout => Kind::Timeout,
        ErrorKind::Config | ErrorKind::Parse | ErrorKind::Module => Kind::Permanent,
    };
    Failure {
        kind,
        status: error.status,
        retry_after_ms: error.retry_after_ms,
        should_retry: error.should_retry,
    }
}

struct Retry;

/// Where a call's attempts stand: the attempt running (from 1) and when the first began.
#[derive(Clone, Copy)]
struct Attempts {
    attempt: u32,
    started: u64,
}

/// Runs `call` until it succeeds, fails for good, or attempts run out, sleeping between
/// attempts as the policy says. Returns the answer and the attempt that gave it.
fn with_retries<T>(call: impl FnMut() -> Result<T, Error>) -> Result<(T, u32), Error> {
    count_request();
    retrying(Attempts { attempt: 1, started: now_ns() }, None, call)
}

/// Counts a new request against the retry budget. The budget counts requests per
/// provider; without one, no shared state is touched.
fn count_request() {
    if let Some(budget) = &policy().budget {
        if let Err(why) = budget.request(&mut HostState, provider()) {
            log(Level::Warn, &format!("retry budget: could not count this request: {}", why.0));
        }
    }
}

/// The inner provider's name: an instance serves one stack, whose inner provider never
/// changes.
fn provider() -> &'static str {
    PROVIDER.get_or_init(inner::name)
}

/// [`with_retries`] from where `at` says, after `failed` (the failure of attempt
/// `at.attempt`) when given, else starting with a call.
fn retrying<T>(
    at: Attempts,
    failed: Option<Error>,
    mut call: impl FnMut() -> Result<T, Error>,
) -> Result<(T, u32), Error> {
    let s = policy();
    let attempts = s.max_retries + 1;
    let Attempts { mut attempt, started } = at;
    let mut failed = failed;
    loop {
        let error = match failed.take().map_or_else(&mut call, Err) {
            Ok(answer) => return Ok((answer, attempt)),
            Err(error) => error,
        };
        let failure = failure(&error);
        if !s.is_retryable(&failure) {
            return Err(error);
        }
        if attempt >= attempts {
            log(Level::Error, &format!("giving up after {attempts} attempts: {}", error.summary()));
            return Err(error);
        }
        if let Some(budget) = &s.budget {
            if let Verdict::Denied { reason } = budget.allow_retry(&mut HostState, provider()) {
                log(
                    Level::Warn,
                    &format!("not retrying after attempt {attempt} of {attempts}: {reason}: {}", error.summary()),
                );
                return Err(error);
            }
        }
        let wait = s.wait_seconds(attempt - 1, &failure, random_unit);
        if let Some(limit) = s.max_elapsed {
            let elapsed = now_ns().saturating_sub(started) as f64 / 1e9;
            if s.past_deadline(elapsed, wait) {
                log(
                    Level::Error,
                    &format!(
                        "giving up after {attempt} of {attempts} attempts: waiting {wait:.3}s would pass \
                         max_elapsed_seconds ({limit}s, {elapsed:.3}s used): {}",
                        error.summary()
                    ),
                );
                return Err(error);
            }
        }
        log(
            Level::Warn,
            &format!("attempt {attempt} of {attempts} failed ({}); retrying in {wait:.3}s", error.summary()),
        );
        sleep(Duration::from_secs_f64(wait));
        attempt += 1;
    }
}

/// What a resumable stream carries for its resumption: the attempt that committed, when
/// the first began, and how many times the answer has been resumed.
fn encode(at: Attempts, resumed: u32) -> Vec<u8> {
    let mut state = Vec::with_capacity(16);
    state.extend_from_slice(&at.attempt.to_le_bytes());
    state.extend_from_slice(&at.started.to_le_bytes());
    state.extend_from_slice(&resumed.to_le_bytes());
    state
}

fn decode(state: &[u8]) -> Option<(Attempts, u32)> {
    let attempt = u32::from_le_bytes(state.get(0..4)?.try_into().ok()?);
    let started = u64::from_le_bytes(state.get(4..12)?.try_into().ok()?);
    let resumed = u32::from_le_bytes(state.get(12..16)?.try_into().ok()?);
    Some((Attempts { attempt, started }, resumed))
}

/// Streams `request` from attempt `at` on (after `failed`, when resuming), and hands the
/// committed attempt on: resumable when the table says `resume = true`.
fn stream_from(
    request: &RequestHandle,
    first_event_timeout_ms: Option<u64>,
    at: Attempts,
    failed: Option<Error>,
    resumed: u32,
) -> Result<EventStream, Error> {
    let timeout = policy().first_event_timeout_ms(first_event_timeout_ms);
    let ((head, stream), attempt) = retrying(at, failed, || {
        let stream = inner::invoke_stream(request, timeout)?;
        Ok((pull_to_commit_from(&stream, || provider().to_string())?, stream))
    })?;
    let mut metadata = vec![("arcllm.retry.attempts".to_string(), attempt.to_string())];
    if !policy().resume {
        return Ok(hand_on(head, stream, &metadata));
    }
    if resumed > 0 {
        metadata.push(("arcllm.retry.resumed".into(), resumed.to_string()));
    }
    let state = encode(Attempts { attempt, started: at.started }, resumed);
    Ok(hand_on_resumable(head, stream, &metadata, request, &state))
}

impl Guest for Retry {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let (mut response, attempt) = with_retries(|| inner::invoke(request))?;
        response.add_metadata("arcllm.retry.attempts", attempt);
        Ok(response)
    }

    /// Each attempt is pulled up to its first content event (the commit point): a failure
    /// before it, or no content within `first_token_timeout_seconds`, is retried like a
    /// failed call. The committed attempt is handed on with the rest of its stream, so what
    /// follows never enters this module, and a later failure is the stream's own end;
    /// with `resume = true` the host calls this again on such a failure, with the request
    /// continued by the text delivered, and the answer goes on from the next attempt.
    fn invoke_stream(request: &RequestHandle, first_event_timeout_ms: Option<u64>) -> Result<EventStream, Error> {
        if policy().resume {
            if let Some(resumption) = resumption_of(request) {
                let Some((at, resumed)) = decode(&resumption.state) else {
                    return Err(resumption.failure);
                };
                log(Level::Warn, &format!("resuming the answer after: {}", resumption.failure.summary()));
                return stream_from(request, first_event_timeout_ms, at, Some(resumption.failure), resumed + 1);
            }
        }
        count_request();
        stream_from(request, first_event_timeout_ms, Attempts { attempt: 1, started: now_ns() }, None, 0)
    }
    arcllm_module_sdk::delegate_to_inner!();
}

impl ModuleGuest for Retry {
    fn configure(config: String) -> Result<(), String> {
        let parsed = Policy::from_json(&config)?;
        let _ = POLICY.set(parsed);
        Ok(())
    }
}

export!(Retry);
