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

/// About how many bytes `event` holds: its text, plus a fixed size.
pub(crate) fn event_bytes(event: &crate::stream::StreamEvent) -> usize {
    use crate::stream::StreamEvent;
    size_of::<StreamEvent>()
        + match event {
            StreamEvent::MessageStart { model } => model.len(),
            StreamEvent::TextDelta(text) | StreamEvent::ThinkingDelta(text) => text.len(),
            StreamEvent::ToolCallStart { id, name, .. } => id.len() + name.len(),
            StreamEvent::ToolCallDelta { arguments, .. } => arguments.len(),
            StreamEvent::Usage(_) => 0,
            StreamEvent::Stop { metadata, .. } => metadata_bytes(metadata),
        }
}

/// Bytes of metadata entries, keys and values, with a fixed size per entry.
pub(crate) fn metadata_bytes(metadata: &[(String, String)]) -> usize {
    metadata.iter().map(|(k, v)| size_of::<(String, String)>() + k.len() + v.len()).sum()
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
    fn request_size_counts_text_and_elements() {
        let small = request_bytes(&Request::new(vec![Message::user("x")]));
        let big = request_bytes(&Request::new(vec![Message::user("x".repeat(1000))]));
        assert_eq!(big - small, 999);
        let many = request_bytes(&Request::new(vec![Message::user(""); 1000]));
        assert!(many >= 1000 * size_of::<Message>());
    }
}
