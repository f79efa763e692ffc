//! What `arcllm invoke` prints for programs (`--json`) and for people (error lines).
//!
//! The JSON shape uses the contract's own names (`wit/`): stop reasons and error kinds in
//! snake_case (`end_turn`, `tool_use`, `rate_limit` …), metadata as one object whose keys
//! keep the order modules added them in.

use arcllm::types::{Error, Response};
use serde_json::{json, Value};

/// The whole normalized response, in the shape the README documents.
pub fn response(response: &Response) -> ResponseJson<'_> {
    ResponseJson {
        content: response.content.as_deref(),
        tool_calls: response
            .tool_calls
            .iter()
            .map(|c| ToolCallJson { id: &c.id, name: &c.name, arguments: &c.arguments })
            .collect(),
        usage: UsageJson {
            input_tokens: response.usage.input_tokens,
            output_tokens: response.usage.output_tokens,
            total_tokens: response.usage.total_tokens,
            cache_read_tokens: response.usage.cache_read_tokens,
            cache_write_tokens: response.usage.cache_write_tokens,
            reasoning_tokens: response.usage.reasoning_tokens,
        },
        model: &response.model,
        stop_reason: response.stop_reason.as_str(),
        thinking: response.thinking.as_deref(),
        metadata: Metadata(&response.metadata),
    }
}

/// See [`response`]. Serialized directly (not through `serde_json::Value`, whose maps
/// sort their keys) so that metadata keeps its order.
#[derive(serde::Serialize)]
pub struct ResponseJson<'a> {
    content: Option<&'a str>,
    tool_calls: Vec<ToolCallJson<'a>>,
    usage: UsageJson,
    model: &'a str,
    stop_reason: &'static str,
    thinking: Option<&'a str>,
    metadata: Metadata<'a>,
}

#[derive(serde::Serialize)]
struct ToolCallJson<'a> {
    id: &'a str,
    name: &'a str,
    /// JSON text, as the contract carries it.
    arguments: &'a str,
}

#[derive(serde::Serialize)]
struct UsageJson {
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
    cache_read_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

/// A failed call as JSON: `{"error": {...}}`.
pub fn error(error: &Error) -> Value {
    json!({"error": {
        "kind": error.kind.as_str(),
        "status": error.status,
        "provider": error.provider,
        "message": error.message,
        "retry_after_ms": error.retry_after_ms,
        "body": error.body,
    }})
}

/// One line for a person: the summary, then the vendor's body excerpt (already bounded and
/// scrubbed of keys by the adapter), with control characters escaped so a body cannot
/// break the line or forge another.
pub fn error_line(error: &Error) -> String {
    let mut line = error.summary();
    if let Some(body) = error.body.as_deref().filter(|b| !b.trim().is_empty()) {
        if !error.message.contains(body.trim()) {
            line.push_str(" — body: ");
            line.push_str(&body.trim().escape_debug().to_string());
        }
    }
    line
}

/// Metadata pairs as a JSON object in the order they were added; a key added twice keeps
/// its first place and its last value.
struct Metadata<'a>(&'a [(String, String)]);

impl serde::Serialize for Metadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut keys: Vec<&str> = Vec::new();
        for (key, _) in self.0 {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
        let mut map = serializer.serialize_map(Some(keys.len()))?;
        for key in keys {
            let value = self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
            map.serialize_entry(key, &value)?;
        }
        map.end()
    }
}
