//! Bindings and helpers for writing arcllm middleware modules in Rust.
//!
//! A module implements the `arc:llm/middleware` world: it exports [`Guest`] (the provider
//! it presents outward) and [`ModuleGuest`] (its configuration hook), and calls [`inner`]
//! for the next layer inward. Build it as a `cdylib` for `wasm32-wasip2` and register the
//! implementation with [`export!`]:
//!
//! ```ignore
//! use arcllm_module_sdk::*;
//! struct Tag;
//! impl Guest for Tag {
//!     // The request arrives by handle: forwarding it costs nothing whatever its size;
//!     // `request.get()` copies it in when the module needs to read it.
//!     fn invoke(request: &RequestHandle) -> Result<Response, Error> {
//!         let mut response = inner::invoke(request)?;
//!         response.metadata.push(("example.tag".into(), "seen".into()));
//!         Ok(response)
//!     }
//!     // A stream is a host resource: passing it on costs nothing per event. To annotate
//!     // the answer, splice it with metadata the host adds to its `stop` event.
//!     fn invoke_stream(request: &RequestHandle, timeout: Option<u64>) -> Result<EventStream, Error> {
//!         let stream = inner::invoke_stream(request, timeout)?;
//!         Ok(EventStream::splice(&[], Some(stream), &[("example.tag".into(), "seen".into())]))
//!     }
//!     // name, model-name and validate-config answer for the inner provider.
//!     delegate_to_inner!();
//! }
//! impl ModuleGuest for Tag {
//!     fn configure(_config: String) -> Result<(), String> { Ok(()) }
//! }
//! export!(Tag);
//! ```

#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "middleware",
    path: "../../wit/v0.3",
    pub_export_macro: true,
    default_bindings_module: "arcllm_module_sdk",
});

pub use arc::llm::logging::{self, Level};
pub use arc::llm::provider as inner;
pub use arc::llm::registry;
pub use arc::llm::streaming::{resumption_of, EventStream, Resumption, Stop, StreamEvent, ToolCallDelta, ToolCallStart};
pub use arc::llm::types::*;
pub use exports::arc::llm::module::Guest as ModuleGuest;
pub use exports::arc::llm::provider::Guest;

/// The allocator the built-in modules use (feature `heap`): see [`heap::Heap`].
#[cfg(all(feature = "heap", target_arch = "wasm32"))]
pub mod heap;
#[cfg(all(feature = "heap", target_arch = "wasm32"))]
#[global_allocator]
static HEAP: heap::Heap = heap::Heap::new();
pub mod commit;
pub mod config;
pub mod scope;
/// The shared-state operations as a plain-Rust trait (what policies are written against).
pub mod shared;
/// The host's `arc:llm/state` import behind [`shared::SharedState`].
pub mod state;
pub mod target;
pub mod time;

/// Inside `impl Guest for …`: answers `name`, `model-name` and `validate-config` from the
/// inner provider, as a wrapping module should (it is the inner provider, plus behavior).
#[macro_export]
macro_rules! delegate_to_inner {
    () => {
        fn name() -> String {
            $crate::inner::name()
        }
        fn model_name() -> String {
            $crate::inner::model_name()
        }
        fn validate_config() -> Result<(), $crate::Error> {
            $crate::inner::validate_config()
        }
    };
}

/// Inside `impl Guest for …`: answers `invoke-stream` with this module's own `invoke`,
/// replayed as a stream. For modules that only act on whole answers: they then stream
/// nothing as it arrives (the caller gets the answer once the module has it).
#[macro_export]
macro_rules! buffered_stream {
    () => {
        fn invoke_stream(
            request: &$crate::RequestHandle,
            _first_event_timeout_ms: Option<u64>,
        ) -> Result<$crate::EventStream, $crate::Error> {
            Ok($crate::replay(<Self as $crate::Guest>::invoke(request)?))
        }
    };
}

impl commit::Event for StreamEvent {
    fn carries_content(&self) -> bool {
        StreamEvent::carries_content(self)
    }
    fn is_stop(&self) -> bool {
        matches!(self, StreamEvent::Stop(_))
    }
}

impl StreamEvent {
    /// Whether the event carries content: text, thinking, or a tool call's start or
    /// arguments. The first such event delivered is the commit point.
    pub fn carries_content(&self) -> bool {
        matches!(
            self,
            StreamEvent::TextDelta(_)
                | StreamEvent::ThinkingDelta(_)
                | StreamEvent::ToolCallStart(_)
                | StreamEvent::ToolCallDelta(_)
        )
    }
}

/// Pulls `stream` up to its commit point (see [`commit::pull_to_commit`]); a stream cut
/// short before any content is a `connection` error from `provider`.
pub fn pull_to_commit(stream: &EventStream, provider: &str) -> Result<commit::Head<StreamEvent>, Error> {
    pull_to_commit_from(stream, || provider.to_string())
}

/// [`pull_to_commit`], asking `provider` for the provider's name only if the stream is cut
/// short (a layer that would learn it through `inner::name` spares that call).
pub fn pull_to_commit_from(
    stream: &EventStream,
    provider: impl FnOnce() -> String,
) -> Result<commit::Head<StreamEvent>, Error> {
    commit::pull_to_commit(
        || stream.next(),
        || Error {
            kind: ErrorKind::Connection,
            status: None,
            retry_after_ms: None,
            should_retry: None,
            provider: provider(),
            message: "the stream ended before any content".into(),
            body: None,
        },
    )
}

/// Hands on what [`pull_to_commit`] pulled and the rest of `stream` as one stream, with
/// `metadata` added to its `stop` event. The events that follow never enter this module.
pub fn hand_on(head: commit::Head<StreamEvent>, stream: EventStream, metadata: &[(String, String)]) -> EventStream {
    let rest = if head.ended { None } else { Some(stream) };
    EventStream::splice(&head.events, rest, metadata)
}

/// [`hand_on`], resumable: should the rest fail after the commit point, the host calls
/// this module's `invoke-stream` again with `request` continued by the text delivered so
/// far, and [`resumption_of`] returns `state` and the failure (see `event-stream.resumable`).
/// A complete answer (`head.ended`) has nothing to resume and is handed on as it is.
pub fn hand_on_resumable(
    head: commit::Head<StreamEvent>,
    stream: EventStream,
    metadata: &[(String, String)],
    request: &RequestHandle,
    state: &[u8],
) -> EventStream {
    if head.ended {
        return EventStream::splice(&head.events, None, metadata);
    }
    EventStream::resumable(&head.events, stream, metadata, request, state)
}

/// The events of a complete response, in stream order.
pub fn response_events(response: Response) -> Vec<StreamEvent> {
    let Response { content, tool_calls, usage, model, stop_reason, thinking, metadata } = response;
    let mut events = vec![StreamEvent::MessageStart(model)];
    if let Some(thinking) = thinking {
        events.push(StreamEvent::ThinkingDelta(thinking));
    }
    if let Some(content) = content {
        events.push(StreamEvent::TextDelta(content));
    }
    for (index, call) in (0u32..).zip(tool_calls) {
        events.push(StreamEvent::ToolCallStart(ToolCallStart { index, id: call.id, name: call.name }));
        events.push(StreamEvent::ToolCallDelta(ToolCallDelta { index, arguments: call.arguments }));
    }
    events.push(StreamEvent::Usage(usage));
    events.push(StreamEvent::Stop(Stop { reason: stop_reason, metadata }));
    events
}

/// A complete response as a stream (its events, held by the host).
pub fn replay(response: Response) -> EventStream {
    EventStream::splice(&response_events(response), None, &[])
}

/// Logs through the host's logger; the host tags the line with this module's name.
pub fn log(level: Level, message: &str) {
    logging::log(level, message);
}

impl Response {
    /// Appends a metadata entry (`key` should be dotted under the module's own prefix).
    pub fn add_metadata(&mut self, key: &str, value: impl ToString) {
        self.metadata.push((key.to_string(), value.to_string()));
    }
}

impl ErrorKind {
    /// The kind's WIT name: `api`, `connection`, …
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Api => "api",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Config => "config",
            ErrorKind::Parse => "parse",
            ErrorKind::Module => "module",
        }
    }
}

impl Error {
    /// One line for logs: "api error from openai (HTTP 503): …", as the host writes it.
    pub fn summary(&self) -> String {
        match self.status {
            Some(status) => {
                format!(
                    "{} error from {} (HTTP {status}): {}",
                    self.kind.as_str(),
                    self.provider,
                    self.message
                )
            }
            None => format!("{} error from {}: {}", self.kind.as_str(), self.provider, self.message),
        }
    }
}
