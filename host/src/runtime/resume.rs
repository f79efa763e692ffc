//! Resuming a streamed answer that failed after its commit point (`event-stream.resumable`).
//!
//! A layer that opts in hands its committed stream on as a [`resumable`] stream. That
//! stream watches the events that pass, host-side (the text, whether anything but text was
//! delivered, the last usage), and copies none of them into the module. When its rest fails
//! (an error, or the end before a `stop`) and only text was delivered, it cannot call the
//! layer itself: the layer runs in the call's store, which the stream's poller owns. So it
//! queues a [`Pending`] resumption on the call's [`Queue`] and returns `Pending`, and the
//! driver polling it ([`next_item`]: the stack's stream once the call has returned, or
//! `event-stream.next` while a module pulls) sees the queue, calls the layer's
//! `invoke-stream` with the request continued by the delivered text ([`serve`]), hands the
//! answer back and polls again. The stream then carries on with the continuation, dropping
//! its `message-start` and adding the usage the failed part reported to its own.
//!
//! What it costs: nothing unless a layer opted in. With it, the call's store (every
//! layer's instance) is held until the stream ends, and each event is polled through one
//! more host-side stream that appends text deltas to a string.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;
use wasmtime::component::Resource;
use wasmtime::AsContextMut;

use super::sandbox::CallState;
use super::wit::latest::arc::llm::streaming::Resumption;
use crate::stream::{EventStream, StreamEvent};
use crate::types::{Content, ContentBlock, Error, ErrorKind, Message, Request, Role, Usage};

/// The resumptions the streams of one call wait for, served by whoever polls them.
#[derive(Clone, Default)]
pub(crate) struct Queue(Arc<Mutex<Vec<Pending>>>);

impl Queue {
    fn push(&self, pending: Pending) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(pending);
    }

    fn take(&self) -> Option<Pending> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }
}

/// Where a resumption's answer goes: the continuation, or the error that ends the stream.
type Slot = Arc<Mutex<Option<Result<EventStream, Error>>>>;

/// A resumption a stream waits for: call `layer`'s `invoke-stream` with `request`.
pub(crate) struct Pending {
    layer: usize,
    request: Option<Request>,
    resumption: Option<Resumption>,
    slot: Slot,
}

impl Drop for Pending {
    /// A resumption never served (its call failed first) ends its stream with the failure.
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let failure = self.resumption.take().map(|r| r.failure);
            *slot = Some(Err(failure.unwrap_or_else(|| {
                Error::new(ErrorKind::Module, "arcllm", "the answer could not be resumed")
            })));
        }
    }
}

/// A resumption in progress: `resumption-of` answers it to `layer`, asked about `rep`.
pub(crate) struct Resuming {
    pub(crate) rep: u32,
    pub(crate) layer: usize,
    pub(crate) resumption: Resumption,
}

/// `stream` (what `layer` spliced), resumed through the call's `queue` when it fails after
/// only text was delivered; `request` is the one `layer` answers, `state` its own.
pub(crate) fn resumable(
    stream: EventStream,
    layer: usize,
    request: Request,
    state: Vec<u8>,
    queue: Queue,
    provider: String,
) -> EventStream {
    Box::pin(Resumable {
        leg: Leg::First(stream),
        layer,
        request: Some(request),
        state,
        queue,
        provider,
        text: String::new(),
        only_text: true,
        stopped: false,
        usage: None,
        strip: false,
        start_seen: false,
    })
}

enum Leg {
    /// The answer as first handed on.
    First(EventStream),
    /// Failed; waiting for the layer's continuation.
    Waiting(Slot),
    /// The continuation.
    Next(EventStream),
    Ended,
}

struct Resumable {
    leg: Leg,
    layer: usize,
    /// Taken when the resumption is queued.
    request: Option<Request>,
    state: Vec<u8>,
    queue: Queue,
    /// Names the provider in the error of a stream that ended before its `stop`.
    provider: String,
    /// The text delivered by the first leg.
    text: String,
    /// Nothing but text has been delivered (thinking or a tool call cannot be continued).
    only_text: bool,
    stopped: bool,
    /// The last usage the first leg reported, added to the continuation's.
    usage: Option<Usage>,
    /// Whitespace was held back from the prefix: drop the continuation's leading whitespace.
    strip: bool,
    /// The continuation's `message-start` has passed (and was dropped).
    start_seen: bool,
}

impl Resumable {
    fn watch(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::TextDelta(text) => self.text.push_str(text),
            StreamEvent::ThinkingDelta(_)
            | StreamEvent::ToolCallStart { .. }
            | StreamEvent::ToolCallDelta { .. } => self.only_text = false,
            StreamEvent::Usage(usage) => self.usage = Some(usage.clone()),
            StreamEvent::Stop { .. } => self.stopped = true,
            StreamEvent::MessageStart { .. } => {}
        }
    }

    /// A continuation's event as the caller sees it, or none to drop it.
    fn adjust(&mut self, event: StreamEvent) -> Option<StreamEvent> {
        match event {
            StreamEvent::MessageStart { .. } if !self.start_seen => {
                self.start_seen = true;
                None
            }
            StreamEvent::TextDelta(text) if self.strip => {
                let rest = text.trim_start();
                if rest.is_empty() {
                    return None;
                }
                self.strip = false;
                Some(StreamEvent::TextDelta(rest.to_string()))
            }
            StreamEvent::Usage(usage) => Some(StreamEvent::Usage(match &self.usage {
                Some(before) => sum(before, &usage),
                None => usage,
            })),
            other => {
                if other.carries_content() {
                    self.strip = false;
                }
                Some(other)
            }
        }
    }

    /// The first leg failed with `error` (`None`: it ended before its `stop`). Queues the
    /// resumption when the answer can be continued (only text delivered, and no `stop`
    /// yet); otherwise the failure is the answer's end, as it would have been without
    /// resuming.
    fn fail(&mut self, error: Option<Error>) -> Poll<Option<Result<StreamEvent, Error>>> {
        // After its `stop` the answer is whole: a continuation could only add to it.
        let request = self.request.take().filter(|_| self.only_text && !self.stopped);
        let Some(request) = request else {
            self.leg = Leg::Ended;
            return Poll::Ready(error.map(Err));
        };
        let failure = error.unwrap_or_else(|| {
            Error::new(ErrorKind::Connection, &self.provider, "the stream ended before its stop event")
        });
        let (request, held_back) = continued(request, &self.text);
        self.strip = held_back;
        let slot = Slot::default();
        self.queue.push(Pending {
            layer: self.layer,
            request: Some(request),
            resumption: Some(Resumption { state: std::mem::take(&mut self.state), failure }),
            slot: slot.clone(),
        });
        self.leg = Leg::Waiting(slot);
        // The driver polling this stream sees the queue and serves it, then polls again.
        Poll::Pending
    }
}

impl Stream for Resumable {
    type Item = Result<StreamEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.leg {
                Leg::First(stream) => {
                    return match stream.as_mut().poll_next(cx) {
                        Poll::Ready(Some(Ok(event))) => {
                            this.watch(&event);
                            Poll::Ready(Some(Ok(event)))
                        }
                        Poll::Ready(Some(Err(error))) => this.fail(Some(error)),
                        Poll::Ready(None) if this.stopped => {
                            this.leg = Leg::Ended;
                            Poll::Ready(None)
                        }
                        Poll::Ready(None) => this.fail(None),
                        Poll::Pending => Poll::Pending,
                    }
                }
                Leg::Waiting(slot) => {
                    let answer = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                    match answer {
                        None => return Poll::Pending,
                        Some(Ok(next)) => this.leg = Leg::Next(next),
                        Some(Err(error)) => {
                            this.leg = Leg::Ended;
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                }
                Leg::Next(stream) => match stream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(event))) => {
                        if let Some(event) = this.adjust(event) {
                            return Poll::Ready(Some(Ok(event)));
                        }
                    }
                    other => return other,
                },
                Leg::Ended => return Poll::Ready(None),
            }
        }
    }
}

/// `request` continued by `text`: appended to its final assistant message if it ends with
/// one, else as a new assistant message. Trailing whitespace is held back (Anthropic
/// rejects a final assistant message that ends with it); returns whether any was.
fn continued(mut request: Request, text: &str) -> (Request, bool) {
    let kept = text.trim_end();
    let held_back = kept.len() < text.len();
    if kept.is_empty() {
        return (request, held_back);
    }
    match request.messages.last_mut() {
        Some(Message { role: Role::Assistant, content: Content::Text(own) }) => own.push_str(kept),
        Some(Message { role: Role::Assistant, content: Content::Blocks(blocks) })
            if matches!(blocks.last(), Some(ContentBlock::Text(_))) =>
        {
            if let Some(ContentBlock::Text(own)) = blocks.last_mut() {
                own.push_str(kept);
            }
        }
        _ => request.messages.push(Message::assistant(kept)),
    }
    (request, held_back)
}

/// Token counts of two parts of one answer, together.
fn sum(a: &Usage, b: &Usage) -> Usage {
    let opt = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0).saturating_add(y.unwrap_or(0))),
    };
    Usage {
        input_tokens: a.input_tokens.saturating_add(b.input_tokens),
        output_tokens: a.output_tokens.saturating_add(b.output_tokens),
        total_tokens: a.total_tokens.saturating_add(b.total_tokens),
        cache_read_tokens: opt(a.cache_read_tokens, b.cache_read_tokens),
        cache_write_tokens: opt(a.cache_write_tokens, b.cache_write_tokens),
        reasoning_tokens: opt(a.reasoning_tokens, b.reasoning_tokens),
    }
}

/// The next item of `stream`, serving every resumption its streams queue meanwhile. A
/// trap in a resumed layer is returned as the `Err` (it unwinds the call).
pub(crate) async fn next_item<S: AsContextMut<Data = CallState> + Send>(
    store: &mut S,
    stream: &mut EventStream,
) -> wasmtime::Result<Option<Result<StreamEvent, Error>>> {
    let queue = store.as_context().data().resumes.clone();
    loop {
        let step = std::future::poll_fn(|cx| match stream.as_mut().poll_next(cx) {
            Poll::Ready(item) => Poll::Ready(Ok(item)),
            Poll::Pending => match queue.take() {
                Some(pending) => Poll::Ready(Err(pending)),
                None => Poll::Pending,
            },
        })
        .await;
        match step {
            Ok(item) => return Ok(item),
            Err(mut pending) => {
                let answer = serve(store, &mut pending).await?;
                *pending.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
            }
        }
    }
}

/// Calls the pending resumption's layer's `invoke-stream` with its continued request, as
/// the layer above it would (counted against the call's provider calls; the first-event
/// window of an enclosing `invoke-stream` no longer applies: the answer had content).
async fn serve<S: AsContextMut<Data = CallState> + Send>(
    store: &mut S,
    pending: &mut Pending,
) -> wasmtime::Result<Result<EventStream, Error>> {
    let mut store = store.as_context_mut();
    let layer = pending.layer;
    let (Some(request), Some(resumption)) = (pending.request.take(), pending.resumption.clone()) else {
        unreachable!("a pending resumption is served once");
    };
    if let Err(limit) = store.data_mut().budget.count_call() {
        return Err(store.data_mut().exceeded(limit));
    }
    let instance = store.data().instances[layer].clone();
    let held = store.data_mut().hold_request(request)?;
    let rep = held.rep();
    store.data_mut().resuming.push(Resuming { rep, layer, resumption });
    let caller = std::mem::replace(&mut store.data_mut().current, layer);
    let window = store.data_mut().first_event_deadline.take();
    store.set_epoch_deadline(1);
    let result = instance.call_invoke_stream(&mut store, Resource::new_borrow(rep), None).await;
    let data = store.data_mut();
    data.current = caller;
    data.first_event_deadline = window;
    data.resuming.pop();
    let answer = match result {
        Ok(answer) => {
            let name = data.modules[layer].name.clone();
            data.budget.check_returned(&name, answer)
        }
        Err(trap) => return Err(data.unwind(layer, trap)),
    };
    data.drop_request(held)?;
    Ok(match answer {
        Ok(handle) => Ok(data.take_stream(handle)?),
        Err(error) => Err(error),
    })
}

/// The stream of a call whose layers may resume it: `stream`, polled with the call's
/// `store` at hand to serve resumptions; `done` gets the store back when the stream ends,
/// fails, or is dropped by its consumer, whichever comes first.
pub(crate) fn driven(
    store: wasmtime::Store<CallState>,
    stream: EventStream,
    done: impl FnOnce(wasmtime::Store<CallState>) + Send + 'static,
) -> EventStream {
    let held = Held { store: Some(store), done: Some(done) };
    Box::pin(futures_util::stream::unfold(Some((held, stream)), |state| async move {
        let (mut held, mut stream) = state?;
        let store = held.store.as_mut().expect("held until dropped");
        match next_item(store, &mut stream).await {
            Ok(Some(item)) => Some((item, Some((held, stream)))),
            Ok(None) => None,
            Err(trap) => Some((Err(store.data_mut().trapped(0, trap)), None)),
        }
    }))
}

/// A resumable call's store, handed to `done` when dropped.
struct Held<F: FnOnce(wasmtime::Store<CallState>)> {
    store: Option<wasmtime::Store<CallState>>,
    done: Option<F>,
}

impl<F: FnOnce(wasmtime::Store<CallState>)> Drop for Held<F> {
    fn drop(&mut self) {
        if let (Some(store), Some(done)) = (self.store.take(), self.done.take()) {
            done(store);
        }
    }
}
