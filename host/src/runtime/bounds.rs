//! Bounds on what the host holds and does on a module's behalf, per call: the requests a
//! module makes handles for, the lines it logs, and the memory of the stores kept idle.
//!
//! The memory cap bounds a module's own linear memory; everything here bounds what the
//! host keeps for it outside that memory, so that one module cannot make the host hold or
//! write more than a small multiple of what the module itself may use.

use std::mem::size_of;

use wasmtime::{ResourceLimiter, StoreLimits};

use crate::types::{Content, ContentBlock, Message, Request, ToolDefinition};

/// Runtime-wide bounds on host work done for modules (see the `RuntimeBuilder` setters of
/// the same names).
#[derive(Clone, Debug)]
pub struct HostLimits {
    /// Most bytes of requests that handles made by modules may hold at once in one call.
    pub request_bytes_per_call: usize,
    /// Most events (each splice counts one more) that modules may hand the host in stream
    /// splices during one call.
    pub stream_events_per_call: usize,
    /// Most bytes of events and metadata that modules may hand the host in stream splices
    /// during one call.
    pub stream_bytes_per_call: usize,
    /// Most bytes of one log line; longer lines are cut and marked.
    pub log_line_bytes: usize,
    /// Most lines the modules of one call may log; one warning replaces the rest.
    pub log_lines_per_call: usize,
    /// Most bytes of linear memory a store may have and still be kept idle for reuse.
    pub idle_store_memory_bytes: usize,
    /// Most bytes of linear memory all idle stores of a runtime may hold together.
    pub idle_memory_bytes: usize,
    /// Most shared-state operations (`arc:llm/state`) the modules of one call may make.
    pub state_ops_per_call: usize,
}

impl HostLimits {
    /// The defaults for modules capped at `memory_bytes` each.
    pub fn for_memory_limit(memory_bytes: usize) -> Self {
        HostLimits {
            request_bytes_per_call: memory_bytes.saturating_mul(4),
            stream_events_per_call: 1 << 16,
            stream_bytes_per_call: memory_bytes.saturating_mul(4),
            log_line_bytes: 4 << 10,
            log_lines_per_call: 256,
            idle_store_memory_bytes: 8 << 20,
            idle_memory_bytes: 256 << 20,
            state_ops_per_call: 256,
        }
    }
}

/// What one call has used of [`HostLimits`].
#[derive(Default)]
pub(crate) struct CallUsage {
    /// Bytes of requests held by handles modules made.
    pub(crate) request_bytes: usize,
    /// Log lines emitted in this call.
    pub(crate) log_lines: usize,
    /// Shared-state operations made in this call.
    pub(crate) state_ops: usize,
    /// Events (and splices) modules handed the host in stream splices.
    pub(crate) stream_events: usize,
    /// Bytes of events and metadata modules handed the host in stream splices.
    pub(crate) stream_bytes: usize,
}

impl CallUsage {
    /// Counts one shared-state operation; errs once the call's allowance is spent.
    pub(crate) fn count_state_op(&mut self, max: usize) -> Result<(), super::limits::LimitExceeded> {
        if self.state_ops >= max {
            return Err(super::limits::LimitExceeded::StateOps { max });
        }
        self.state_ops += 1;
        Ok(())
    }
}

/// The store's resource limiter: the memory cap, plus a count of the bytes of linear
/// memory the store's instances hold (what keeping the store idle would keep resident).
pub(crate) struct MeteredLimits {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl MeteredLimits {
    pub(crate) fn new(limits: StoreLimits) -> Self {
        MeteredLimits { limits, memory_bytes: 0 }
    }

    /// Bytes of linear memory the store's instances hold now.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl ResourceLimiter for MeteredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            // Also called with `current == 0` when a memory is created.
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// A module made request handles holding more bytes than one call allows.
#[derive(Debug, thiserror::Error)]
#[error(
    "held more than {limit} bytes of requests in handles it made during one call (limits.max_request_bytes_per_call; by default 4× the module memory cap)"
)]
pub(crate) struct RequestBytesExceeded {
    pub(crate) limit: usize,
}

/// A module handed the host more stream events (or bytes of them) than one call allows.
#[derive(Debug, thiserror::Error)]
#[error("handed the host more than {events} stream events or {bytes} bytes of them in splices during one call (HostLimits::stream_events_per_call, stream_bytes_per_call)")]
pub(crate) struct StreamBoundExceeded {
    pub(crate) events: usize,
    pub(crate) bytes: usize,
}

/// What one stream event a module hands the host counts besides its text (the bound on
/// splices, `HostLimits::stream_bytes_per_call`).
pub(crate) const STREAM_EVENT_BYTES: usize = size_of::<crate::stream::StreamEvent>();

/// What one metadata entry of a splice counts besides its key and value.
pub(crate) const METADATA_ENTRY_BYTES: usize = size_of::<(String, String)>();

/// Where one response a module returns went over the caps on it
/// ([`MAX_RESPONSE_BYTES`](super::limits::MAX_RESPONSE_BYTES) and the metadata caps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseOver {
    /// Content, thinking and tool calls together.
    Text,
    /// This many metadata entries.
    MetadataEntries(usize),
    /// Metadata keys and values together.
    MetadataBytes,
}

impl std::fmt::Display for ResponseOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::limits::{MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_RESPONSE_BYTES};
        match self {
            ResponseOver::Text => {
                write!(f, "more than {MAX_RESPONSE_BYTES} bytes of content, thinking and tool calls")
            }
            ResponseOver::MetadataEntries(n) => {
                write!(f, "{n} metadata entries (at most {MAX_METADATA_ENTRIES})")
            }
            ResponseOver::MetadataBytes => {
                write!(f, "more than {MAX_METADATA_BYTES} bytes of metadata")
            }
        }
    }
}

/// The caps on one response a module returns, counted piece by piece: while the response is
/// copied out of the module's memory (each piece before it is copied, see `lazy_response`),
/// or over a response already in hand ([`ResponseTally::of`]). One rule for both, so that
/// what is refused does not depend on how the response was read. The first cap passed is
/// the one reported; once one is, every later piece is refused too.
#[derive(Default)]
pub(crate) struct ResponseTally {
    text: usize,
    metadata: usize,
    over: Option<ResponseOver>,
}

impl ResponseTally {
    /// What one tool call counts besides its text: what the host holds for it.
    pub(crate) const TOOL_CALL: usize = size_of::<crate::types::ToolCall>();

    /// Counts `bytes` of content, thinking or tool calls; false once over the cap.
    pub(crate) fn text(&mut self, bytes: usize) -> bool {
        self.text = self.text.saturating_add(bytes);
        self.within(self.text > super::limits::MAX_RESPONSE_BYTES, ResponseOver::Text)
    }

    /// Counts the number of metadata entries; false once over the cap.
    pub(crate) fn metadata_entries(&mut self, entries: usize) -> bool {
        let over = entries > super::limits::MAX_METADATA_ENTRIES;
        self.within(over, ResponseOver::MetadataEntries(entries))
    }

    /// Counts `bytes` of metadata keys and values; false once over the cap.
    pub(crate) fn metadata(&mut self, bytes: usize) -> bool {
        self.metadata = self.metadata.saturating_add(bytes);
        self.within(self.metadata > super::limits::MAX_METADATA_BYTES, ResponseOver::MetadataBytes)
    }

    /// The cap the response went over, if any.
    pub(crate) fn over(&self) -> Option<ResponseOver> {
        self.over
    }

    fn within(&mut self, over: bool, what: ResponseOver) -> bool {
        if self.over.is_none() && over {
            self.over = Some(what);
        }
        self.over.is_none()
    }

    /// The cap `response` is over, if any, counted in the order its fields come out of a
    /// module: what the lazy copy (`lazy_response`) counts, written out for a whole response.
    #[cfg(test)]
    pub(crate) fn of(response: &crate::types::Response) -> Option<ResponseOver> {
        let mut tally = ResponseTally::default();
        tally.text(response.content.as_ref().map_or(0, String::len));
        tally.text(response.tool_calls.len().saturating_mul(Self::TOOL_CALL));
        for call in &response.tool_calls {
            tally.text(call.id.len());
            tally.text(call.name.len());
            tally.text(call.arguments.len());
        }
        tally.text(response.thinking.as_ref().map_or(0, String::len));
        tally.metadata_entries(response.metadata.len());
        for (key, value) in &response.metadata {
            tally.metadata(key.len());
            tally.metadata(value.len());
        }
        tally.over()
    }
}

/// About how many bytes `request` holds: its text, plus a fixed size per list element (so
/// that a million empty messages count too). Cheap: no text is read.
pub(crate) fn request_bytes(request: &Request) -> usize {
    let content = |content: &Content| match content {
        Content::Text(text) => text.len(),
        Content::Blocks(blocks) => blocks
            .iter()
            .map(|block| {
                size_of::<ContentBlock>()
                    + match block {
                        ContentBlock::Text(text) => text.len(),
                        ContentBlock::Image(image) => image.media_type.len() + image.data.len(),
                        ContentBlock::ToolUse(tool) => tool.id.len() + tool.name.len() + tool.arguments.len(),
                        ContentBlock::ToolResult(result) => result.tool_use_id.len() + result.content.len(),
                    }
            })
            .sum(),
    };
    let messages: usize = request.messages.iter().map(|m| size_of::<Message>() + content(&m.content)).sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|t| size_of::<ToolDefinition>() + t.name.len() + t.description.len() + t.parameters.len())
        .sum();
    let options = &request.options;
    let stops: usize = options.stop_sequences.iter().map(|s| size_of::<String>() + s.len()).sum();
    size_of::<Request>() + messages + tools + stops + options.extra.as_ref().map_or(0, String::len)
}

/// At most `max_bytes` of `message` as one log line: control characters (newlines, escape
/// sequences) escaped so that a module cannot start a line of its own or forge a host
/// line, and a marker when the message was cut.
pub(crate) fn log_line(message: &str, max_bytes: usize) -> String {
    let mut line = String::with_capacity(message.len().min(max_bytes) + 32);
    let mut taken = 0;
    for c in message.chars() {
        let before = line.len();
        match c {
            // Printable, and escaping them would garble ordinary text.
            '\\' | '\'' | '"' => line.push(c),
            _ => line.extend(c.escape_debug()),
        }
        if line.len() > max_bytes {
            line.truncate(before);
            break;
        }
        taken += c.len_utf8();
    }
    if taken < message.len() {
        line.push_str(&format!(" … [cut: {} of {} bytes shown]", taken, message.len()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_escaped_and_cut() {
        assert_eq!(log_line("a\nb\x1b[31m \"q\" é", 100), "a\\nb\\u{1b}[31m \"q\" é");
        let cut = log_line(&"x".repeat(10_000), 4096);
        assert!(cut.starts_with(&"x".repeat(4096)), "{cut}");
        assert!(cut.ends_with("[cut: 4096 of 10000 bytes shown]"), "{cut}");
        assert_eq!(log_line("\n\n\n", 4), "\\n\\n … [cut: 2 of 3 bytes shown]");
    }

    #[test]
    fn a_response_is_refused_for_the_first_cap_it_passes() {
        use super::super::limits::{MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_RESPONSE_BYTES};
        use crate::types::{Response, StopReason, ToolCall, Usage};
        let mut response = Response {
            content: None,
            tool_calls: Vec::new(),
            usage: Usage::ZERO,
            model: String::new(),
            stop_reason: StopReason::EndTurn,
            thinking: None,
            metadata: Vec::new(),
        };
        assert_eq!(ResponseTally::of(&response), None);
        response.metadata = vec![("k".into(), "v".repeat(MAX_METADATA_BYTES)); MAX_METADATA_ENTRIES + 1];
        assert_eq!(
            ResponseTally::of(&response),
            Some(ResponseOver::MetadataEntries(MAX_METADATA_ENTRIES + 1))
        );
        response.metadata.truncate(1);
        assert_eq!(ResponseTally::of(&response), Some(ResponseOver::MetadataBytes));
        // Text is counted first, as it comes first out of a module; tool calls count their
        // bookkeeping too.
        let call = ToolCall { id: String::new(), name: String::new(), arguments: String::new() };
        response.tool_calls = vec![call; MAX_RESPONSE_BYTES / ResponseTally::TOOL_CALL + 1];
        assert_eq!(ResponseTally::of(&response), Some(ResponseOver::Text));
        response.tool_calls.clear();
        response.content = Some("x".repeat(MAX_RESPONSE_BYTES));
        response.metadata.clear();
        assert_eq!(ResponseTally::of(&response), None, "the cap itself is allowed");
        response.thinking = Some("y".into());
        assert_eq!(ResponseTally::of(&response), Some(ResponseOver::Text));
    }

    #[test]
    fn request_size_counts_text_and_elements() {
        let small = request_bytes(&Request::new(vec![Message::user("x")]));
        let big = request_bytes(&Request::new(vec![Message::user("x".repeat(1000))]));
        assert_eq!(big - small, 999);
        let many = request_bytes(&Request::new(vec![Message::user(""); 1000]));
        assert!(many >= 1000 * size_of::<Message>());
    }
}
