//! The streams the host builds for modules: a spliced stream (events a module pulled, then
//! the rest of another stream), and the deadlines that bound a stream in time.
//!
//! All of them are plain Rust streams over the adapter's: once a module has spliced a
//! stream and returned, its events flow from the vendor to the caller without entering
//! wasm. Each pulls from its inner stream only when it is polled, so nothing is buffered
//! between the vendor and the caller beyond the event in hand (a slow caller holds the
//! vendor back), and dropping the outermost stream drops the connection under it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::future::Future;

use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use crate::stream::{EventStream, StreamEvent};
use crate::types::Error;

/// `head`, then every item of `rest`, with `metadata` appended to the `stop` event's.
pub(crate) fn splice(
    head: Vec<StreamEvent>,
    rest: Option<EventStream>,
    metadata: Vec<(String, String)>,
) -> EventStream {
    Box::pin(Splice { head: head.into(), rest, metadata: Some(metadata).filter(|m| !m.is_empty()) })
}

struct Splice {
    head: VecDeque<StreamEvent>,
    rest: Option<EventStream>,
    /// Added to the first `stop` that passes (none left once it has).
    metadata: Option<Vec<(String, String)>>,
}

impl Splice {
    fn annotate(&mut self, mut event: StreamEvent) -> StreamEvent {
        if let StreamEvent::Stop { metadata, .. } = &mut event {
            if let Some(added) = self.metadata.take() {
                metadata.extend(added);
            }
        }
        event
    }
}

impl Stream for Splice {
    type Item = Result<StreamEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(event) = self.head.pop_front() {
            return Poll::Ready(Some(Ok(self.annotate(event))));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match rest.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(Ok(self.annotate(event)))),
            Poll::Ready(None) => {
                self.rest = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

/// Fails `inner` with `error` when no content event has come out of it by `deadline` (what
/// `first-event-timeout-ms` promises); once one has, the deadline no longer applies.
pub(crate) fn first_content_by(inner: EventStream, deadline: Instant, error: Error) -> EventStream {
    Box::pin(Deadline {
        inner: Some(inner),
        sleep: Some(Box::pin(tokio::time::sleep_until(deadline))),
        until_content: true,
        error: Some(error),
    })
}

/// Fails `inner` with `error` once `deadline` passes, whatever it has delivered (the call
/// deadline of a stack, over the whole stream).
pub(crate) fn ends_by(inner: EventStream, deadline: Instant, error: Error) -> EventStream {
    Box::pin(Deadline {
        inner: Some(inner),
        sleep: Some(Box::pin(tokio::time::sleep_until(deadline))),
        until_content: false,
        error: Some(error),
    })
}

struct Deadline {
    /// `None` once the stream has ended or failed.
    inner: Option<EventStream>,
    /// `None` once the deadline no longer applies.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The deadline stops applying at the first content event.
    until_content: bool,
    error: Option<Error>,
}

impl Stream for Deadline {
    type Item = Result<StreamEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => {
                if this.until_content && event.carries_content() {
                    this.sleep = None;
                }
                return Poll::Ready(Some(Ok(event)));
            }
            Poll::Ready(other) => {
                this.inner = None;
                return Poll::Ready(other);
            }
            Poll::Pending => {}
        }
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                // Dropping the inner stream abandons the vendor's answer.
                this.inner = None;
                return Poll::Ready(this.error.take().map(Err));
            }
        }
        Poll::Pending
    }
}
