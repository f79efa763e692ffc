//! The commit point of a streamed answer: the first event that carries content. Before it
//! an answer can still be retried or replaced without the caller noticing; after it, not.
//!
//! This file depends on nothing else in the SDK, so the host's tests compile it natively.

/// Most events pulled before the first content event. A stream that sends more events
/// without content is handed on as it is, as if committed: nothing is gained by holding
/// more of it in the module.
pub const MAX_HEAD: usize = 256;

/// How an event counts for the commit point.
pub trait Event {
    /// Whether it carries content (text, thinking, a tool call).
    fn carries_content(&self) -> bool;
    /// Whether it is the answer's `stop`.
    fn is_stop(&self) -> bool;
}

/// The events pulled from a stream up to its commit point.
#[derive(Debug, PartialEq)]
pub struct Head<E> {
    /// The events pulled, ending with the first content event (or holding the whole
    /// answer, when it ended first).
    pub events: Vec<E>,
    /// Whether the stream ended: `events` is the whole answer and nothing follows.
    pub ended: bool,
}

/// Pulls `next` until the first content event, the end of the stream, or [`MAX_HEAD`]
/// events. A failure before the commit point is returned as it is; a stream that ends
/// without its `stop` (cut short before any content) is the error `cut_short` makes. A
/// complete answer without content (a `stop` and nothing else) is a valid answer.
pub fn pull_to_commit<E: Event, X>(
    mut next: impl FnMut() -> Option<Result<E, X>>,
    cut_short: impl FnOnce() -> X,
) -> Result<Head<E>, X> {
    let mut events = Vec::new();
    loop {
        match next() {
            Some(Ok(event)) => {
                let committed = event.carries_content();
                events.push(event);
                if committed || events.len() >= MAX_HEAD {
                    return Ok(Head { events, ended: false });
                }
            }
            Some(Err(error)) => return Err(error),
            None if events.iter().any(Event::is_stop) => return Ok(Head { events, ended: true }),
            None => return Err(cut_short()),
        }
    }
}
