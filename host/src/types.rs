//! The arcllm data model, as the newest version of the WIT contract defines it
//! (`arc:llm/types`).
//!
//! These are the very types the runtime lifts from and lowers into modules, so a request
//! crosses the host/module boundary without conversion. Helpers here make them pleasant
//! to build and read from Rust.

use std::fmt;

pub use crate::runtime::wit::latest::arc::llm::types::{
    Content, ContentBlock, Error, ErrorKind, Image, Message, Options, Request, Response, Role, StopReason,
    ToolCall, ToolDefinition, ToolResult, ToolUse, Usage,
};

impl Message {
    /// A message with plain text content.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message { role, content: Content::Text(text.into()) }
    }
    /// A system message with plain text content.
    pub fn system(text: impl Into<String>) -> Self {
        Self::text(Role::System, text)
    }
    /// A user message with plain text content.
    pub fn user(text: impl Into<String>) -> Self {
        Self::text(Role::User, text)
    }
    /// An assistant message with plain text content.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::text(Role::Assistant, text)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options { max_tokens: None, temperature: None, stop_sequences: Vec::new(), extra: None }
    }
}

impl Request {
    /// A request with these messages, no tools and default options.
    pub fn new(messages: Vec<Message>) -> Self {
        Request { messages, tools: Vec::new(), options: Options::default() }
    }
}

impl Usage {
    /// No tokens counted, and no optional count reported: the usage of an answer whose
    /// vendor reported none.
    pub const ZERO: Usage = Usage {
        input_tokens: 0,
        output_tokens: 0,
        total_tokens: 0,
        cache_read_tokens: None,
        cache_write_tokens: None,
        reasoning_tokens: None,
    };
}

impl Response {
    /// The value of the first metadata entry named `key`.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl Error {
    /// An error of `kind` from `provider`, with no HTTP details.
    pub fn new(kind: ErrorKind, provider: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            kind,
            status: None,
            retry_after_ms: None,
            should_retry: None,
            provider: provider.into(),
            message: message.into(),
            body: None,
        }
    }

    /// A configuration error: unknown provider, missing key, invalid module table.
    pub fn config(provider: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, provider, message)
    }

    /// One line for logs and messages: "api error from openai (HTTP 503): …". (The
    /// generated `Display` prints the whole record.)
    pub fn summary(&self) -> String {
        match self.status {
            Some(status) => {
                format!("{} error from {} (HTTP {status}): {}", self.kind, self.provider, self.message)
            }
            None => format!("{} error from {}: {}", self.kind, self.provider, self.message),
        }
    }

    /// A non-2xx answer from the vendor.
    pub fn api(provider: impl Into<String>, status: u16, message: impl Into<String>) -> Self {
        Error { status: Some(status), ..Self::new(ErrorKind::Api, provider, message) }
    }
}

impl ErrorKind {
    /// The contract's name for the kind (`api`, `connection`, `timeout`, `config`, `parse`,
    /// `module`): what JSON output and logs use.
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

impl StopReason {
    /// The contract's name for the reason in snake_case (`end_turn`, `tool_use`,
    /// `max_tokens`, `stop_sequence`, `content_filter`, `pause_turn`, `refusal`,
    /// `context_window_exceeded`), as JSON output spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::ToolUse => "tool_use",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ContentFilter => "content_filter",
            StopReason::PauseTurn => "pause_turn",
            StopReason::Refusal => "refusal",
            StopReason::ContextWindowExceeded => "context_window_exceeded",
        }
    }
}

/// `Display` prints the contract's name (`as_str`).
macro_rules! display_as_str {
    ($($kind:ty),*) => {$(
        impl fmt::Display for $kind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(ErrorKind, StopReason);
