//! Streamed answers: the vendor-neutral events a streaming call yields, and the way back
//! from events to the [`Response`] a non-streaming call gives.
//!
//! A streaming call yields [`StreamEvent`]s in this order: one [`StreamEvent::MessageStart`],
//! then the content events ([`TextDelta`](StreamEvent::TextDelta),
//! [`ThinkingDelta`](StreamEvent::ThinkingDelta), [`ToolCallStart`](StreamEvent::ToolCallStart),
//! [`ToolCallDelta`](StreamEvent::ToolCallDelta)) as the vendor sends them, then
//! [`Usage`](StreamEvent::Usage) (when the vendor reports it) and one
//! [`Stop`](StreamEvent::Stop), after which the stream ends. A failure is the stream's last
//! item, an `Err`; nothing follows it. A `Usage` holds the counts so far and replaces any
//! earlier one: a stream that fails may deliver the counts its vendor had reported just
//! before its error, and an answer resumed after such a failure (docs/streaming.md) carries
//! them before its continuation.
//!
//! Only the content events carry content ([`StreamEvent::carries_content`]): once one of
//! them has reached the caller, the answer is committed, and a layer that would retry or
//! fall back must not start the answer over.

use std::collections::HashMap;
use std::pin::Pin;

use futures_core::Stream;
use futures_util::StreamExt;

use crate::types::{Error, Response, StopReason, ToolCall, Usage};

/// One step of a streamed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// The answer begins; `model` is the model that answers, as the vendor names it.
    MessageStart {
        /// The model that answers.
        model: String,
    },
    /// The next piece of the answer's text.
    TextDelta(String),
    /// The next piece of the model's reasoning.
    ThinkingDelta(String),
    /// A tool call begins. `index` identifies it among this answer's tool calls; its
    /// argument pieces follow as [`StreamEvent::ToolCallDelta`]s with the same index.
    ToolCallStart {
        /// The call's position among this answer's tool calls.
        index: u32,
        /// The vendor's id for the call.
        id: String,
        /// The tool called.
        name: String,
    },
    /// The next piece of the JSON text of tool call `index`'s arguments.
    ToolCallDelta {
        /// The call the piece belongs to.
        index: u32,
        /// The piece of JSON text.
        arguments: String,
    },
    /// The token counts so far, as totals (a later `Usage` replaces an earlier one).
    Usage(Usage),
    /// The answer is complete: why the model stopped, and the annotations a [`Response`]
    /// would carry in its `metadata`.
    Stop {
        /// Why the model stopped.
        reason: StopReason,
        /// Annotations, in the order they were added.
        metadata: Vec<(String, String)>,
    },
}

impl StreamEvent {
    /// Whether the event carries content: text, thinking, or a tool call's start or
    /// arguments. The first such event delivered to a caller is the commit point after
    /// which an answer cannot be retried or replaced without the caller noticing.
    pub fn carries_content(&self) -> bool {
        matches!(
            self,
            StreamEvent::TextDelta(_)
                | StreamEvent::ThinkingDelta(_)
                | StreamEvent::ToolCallStart { .. }
                | StreamEvent::ToolCallDelta { .. }
        )
    }
}

/// A streamed answer: events, then possibly one `Err` that ends it. Dropping the stream
/// abandons the call (an HTTP adapter closes its connection to the vendor).
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, Error>> + Send>>;

/// Replays a complete response as a stream, for providers that cannot stream: the
/// events [`Collector`] folds back into the very same response.
pub fn from_response(response: Response) -> EventStream {
    Box::pin(futures_util::stream::iter(response_events(response).into_iter().map(Ok)))
}

/// The events of a complete response, in stream order.
pub fn response_events(response: Response) -> Vec<StreamEvent> {
    let Response { content, tool_calls, usage, model, stop_reason, thinking, metadata } = response;
    let mut events = vec![StreamEvent::MessageStart { model }];
    if let Some(thinking) = thinking {
        events.push(StreamEvent::ThinkingDelta(thinking));
    }
    if let Some(content) = content {
        events.push(StreamEvent::TextDelta(content));
    }
    for (index, call) in (0u32..).zip(tool_calls) {
        events.push(StreamEvent::ToolCallStart { index, id: call.id, name: call.name });
        events.push(StreamEvent::ToolCallDelta { index, arguments: call.arguments });
    }
    events.push(StreamEvent::Usage(usage));
    events.push(StreamEvent::Stop { reason: stop_reason, metadata });
    events
}

/// Folds stream events into the [`Response`] the same call would give without streaming:
/// text and thinking deltas concatenated, tool calls in the order they started with their
/// argument pieces concatenated, the last usage, the stop reason and metadata of `Stop`.
///
/// Tool-call arguments are the JSON text as the vendor streamed it, which can differ in
/// whitespace or key order from what a buffered answer of the same vendor holds.
#[derive(Debug, Default)]
pub struct Collector {
    model: String,
    content: Option<String>,
    thinking: Option<String>,
    tool_calls: Vec<ToolCall>,
    /// Tool-call index → position in `tool_calls`.
    tool_index: HashMap<u32, usize>,
    usage: Option<Usage>,
    stop: Option<(StopReason, Vec<(String, String)>)>,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds in one event. An argument piece for a tool call that never started opens
    /// one with an empty id and name, so nothing the vendor sent is dropped.
    pub fn push(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::MessageStart { model } => self.model = model,
            StreamEvent::TextDelta(text) => self.content.get_or_insert_with(String::new).push_str(&text),
            StreamEvent::ThinkingDelta(text) => self.thinking.get_or_insert_with(String::new).push_str(&text),
            StreamEvent::ToolCallStart { index, id, name } => {
                let position = self.tool_position(index);
                let call = &mut self.tool_calls[position];
                call.id = id;
                call.name = name;
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let position = self.tool_position(index);
                self.tool_calls[position].arguments.push_str(&arguments);
            }
            StreamEvent::Usage(usage) => self.usage = Some(usage),
            StreamEvent::Stop { reason, metadata } => self.stop = Some((reason, metadata)),
        }
    }

    /// Whether a `Stop` has been folded in: the answer is complete.
    pub fn is_complete(&self) -> bool {
        self.stop.is_some()
    }

    /// The response so far. Without a `Stop` the stop reason is `end-turn` and there is no
    /// metadata; without a `Usage` every count is zero (as a vendor that reports none).
    pub fn finish(self) -> Response {
        let (stop_reason, metadata) = self.stop.unwrap_or((StopReason::EndTurn, Vec::new()));
        Response {
            content: self.content,
            tool_calls: self.tool_calls,
            usage: self.usage.unwrap_or(Usage::ZERO),
            model: self.model,
            stop_reason,
            thinking: self.thinking,
            metadata,
        }
    }

    /// Reads `stream` to its end: the response, or the stream's error.
    pub async fn collect(mut stream: EventStream) -> Result<Response, Error> {
        let mut collector = Collector::new();
        while let Some(event) = stream.next().await {
            collector.push(event?);
        }
        Ok(collector.finish())
    }

    fn tool_position(&mut self, index: u32) -> usize {
        let calls = &mut self.tool_calls;
        *self.tool_index.entry(index).or_insert_with(|| {
            calls.push(ToolCall { id: String::new(), name: String::new(), arguments: String::new() });
            calls.len() - 1
        })
    }
}
