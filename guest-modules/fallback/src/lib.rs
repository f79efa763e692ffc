//! The fallback module: when the inner provider fails, tries the providers of its `chain`
//! in order through the host's registry and returns the first success. When every one
//! fails, the primary (inner) error is returned unchanged.
//!
//! Streaming: the primary, then each target, counts as failed until its first content event;
//! after it, a failure ends the stream, or with `resume = true` the answer is continued on
//! the next target of the chain (the request carries the text delivered so far).
//!
//! Fallback targets are adapters the host creates on first use, with no retry or fallback
//! of their own, so a fallback never recurses and a retry around it never multiplies. When
//! the stack has the built-in circuit breaker, the host puts each target behind it: a target
//! whose breaker is open fails at once, with the breaker's error and no network call, and
//! the walk moves on as after any failure.

mod policy;

use std::sync::OnceLock;

use arcllm_module_sdk::{config, target};
use arcllm_module_sdk::commit::Head;
use arcllm_module_sdk::{
    export, hand_on, hand_on_resumable, inner, log, pull_to_commit, registry, resumption_of, Error, EventStream,
    Guest, Level, ModuleGuest, RequestHandle, Response, Resumption, StreamEvent,
};
use policy::{parse_chain, Walk};

const METADATA_KEY: &str = "arcllm.fallback.provider";
/// How many times a streamed answer was resumed on a next target.
const RESUMED_KEY: &str = "arcllm.fallback.resumed";

static CHAIN: OnceLock<Vec<String>> = OnceLock::new();
/// `resume = true`: streamed answers that fail after their commit point are continued.
static RESUME: OnceLock<bool> = OnceLock::new();

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
        let (target, mut response) = fall_back(chain, primary, Walking::Fallback, |target| {
            registry::invoke(target, request)
        })?;
        response.add_metadata(METADATA_KEY, &chain[target]);
        Ok(response)
    }

    /// The primary, then each target of the chain, is pulled up to its first content event
    /// (the commit point); a failure before it moves on to the next target. The answer that
    /// commits is handed on with the rest of its stream, whose events never enter this
    /// module; a failure after it is the stream's own end, unless `resume = true`: then the
    /// host calls this again with the request continued by the text delivered so far, and
    /// the answer goes on from the next target of the chain.
    fn invoke_stream(request: &RequestHandle, first_event_timeout_ms: Option<u64>) -> Result<EventStream, Error> {
        let chain = CHAIN.get().map(Vec::as_slice).unwrap_or_default();
        if RESUME.get().copied().unwrap_or(false) {
            if let Some(resumption) = resumption_of(request) {
                return resume(request, chain, resumption, first_event_timeout_ms);
            }
        }
        let primary_name = inner::name();
        let primary = match open(inner::invoke_stream(request, first_event_timeout_ms), &primary_name) {
            Ok((head, stream)) => return Ok(hand_on_from(request, head, stream, &primary_name, 0, 0)),
            Err(error) => error,
        };
        let (target, (head, stream)) = fall_back(chain, primary, Walking::Fallback, |target| {
            open(registry::invoke_stream(target, request, first_event_timeout_ms), target)
        })?;
        Ok(hand_on_from(request, head, stream, &chain[target], target + 1, 0))
    }
    arcllm_module_sdk::delegate_to_inner!();
}

/// A stream, pulled up to its commit point.
fn open(stream: Result<EventStream, Error>, provider: &str) -> Result<(Head<StreamEvent>, EventStream), Error> {
    let stream = stream?;
    Ok((pull_to_commit(&stream, provider)?, stream))
}

/// Hands on the answer of `provider`, whose chain successors start at `next`; resumable
/// when the table says `resume = true` (a resumption goes on from `next`).
fn hand_on_from(
    request: &RequestHandle,
    head: Head<StreamEvent>,
    stream: EventStream,
    provider: &str,
    next: usize,
    resumed: u32,
) -> EventStream {
    let mut metadata = vec![(METADATA_KEY.to_string(), provider.to_string())];
    if !RESUME.get().copied().unwrap_or(false) {
        return hand_on(head, stream, &metadata);
    }
    if resumed > 0 {
        metadata.push((RESUMED_KEY.into(), resumed.to_string()));
    }
    let mut state = Vec::with_capacity(8);
    state.extend_from_slice(&u32::try_from(next).unwrap_or(u32::MAX).to_le_bytes());
    state.extend_from_slice(&resumed.to_le_bytes());
    hand_on_resumable(head, stream, &metadata, request, &state)
}

/// Continues an answer that failed after its commit point on the chain's next targets (the
/// request carries the text delivered so far); when none answers, the failure stands.
fn resume(
    request: &RequestHandle,
    chain: &[String],
    resumption: Resumption,
    first_event_timeout_ms: Option<u64>,
) -> Result<EventStream, Error> {
    let failure = resumption.failure;
    let word = |range: std::ops::Range<usize>| {
        resumption.state.get(range).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    };
    let (Some(next), Some(resumed)) = (word(0..4), word(4..8)) else {
        return Err(failure);
    };
    let next = (next as usize).min(chain.len());
    let rest = &chain[next..];
    let (target, (head, stream)) = fall_back(rest, failure, Walking::Resume, |target| {
        open(registry::invoke_stream(target, request, first_event_timeout_ms), target)
    })?;
    Ok(hand_on_from(request, head, stream, &rest[target], next + target + 1, resumed + 1))
}

/// Why the chain is walked: the primary failed, or an answer broke after its commit point.
#[derive(Clone, Copy)]
enum Walking {
    Fallback,
    Resume,
}

/// Walks `chain` after `first` failed, calling `call` for each target until one answers:
/// that target's index and answer. When every one fails, `first` is returned unchanged.
/// Each move on, and the end of the walk, is logged.
fn fall_back<R>(
    chain: &[String],
    first: Error,
    walking: Walking,
    call: impl FnMut(&str) -> Result<R, Error>,
) -> Result<(usize, R), Error> {
    let moving = match walking {
        Walking::Fallback => "falling back to",
        Walking::Resume => "resuming the answer on",
    };
    let before = |last: &Error, target: &str| log(Level::Warn, &format!("{}; {moving} {target}", last.summary()));
    match policy::walk(chain, &first, before, call) {
        Walk::Answered { target, response } => Ok((target, response)),
        Walk::Exhausted { failures } => {
            if let Some(last) = failures.last() {
                let outcome = match walking {
                    Walking::Fallback => {
                        format!("all {} fallbacks failed, returning the primary error", chain.len())
                    }
                    Walking::Resume => "no target left to resume the answer on".to_string(),
                };
                log(Level::Error, &format!("{}; {outcome}", last.summary()));
            }
            Err(first)
        }
    }
}

impl ModuleGuest for Fallback {
    fn configure(config: String) -> Result<(), String> {
        let chain = parse_chain(&config)?;
        let resume = policy::parse_resume(&config)?;
        let _ = CHAIN.set(chain);
        let _ = RESUME.set(resume);
        Ok(())
    }
}

export!(Fallback);
