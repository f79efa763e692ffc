//! Anthropic Messages: `POST {base_url}/v1/messages`.
//!
//! Requests: system messages are joined into the top-level `system`; `tool` messages become
//! user messages of `tool_result` blocks (the Messages API has no tool role); assistant
//! tool calls become `tool_use` blocks whose `input` is the parsed arguments object.
//! Responses: `text` blocks make the content, `tool_use` blocks the tool calls, `thinking`
//! blocks the thinking; cache read/creation tokens are reported as such.
//!
//! Streamed answers are read event by event in the `stream` submodule.

mod stream;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use self::stream::AnthropicEvents;
use super::{ApiKey, Endpoint, WireFormat};
use crate::providers::ProviderConfig;
use crate::types::{Content, ContentBlock, Error, Request, Response, Role, StopReason, ToolCall, Usage};

/// The API version this adapter speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The adapter for `api_format = "anthropic-messages"`.
pub(crate) struct AnthropicAdapter {
    endpoint: Endpoint,
}

impl AnthropicAdapter {
    pub(crate) fn new(config: &ProviderConfig, model: &str, api_key: Option<ApiKey>) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", HeaderValue::from_static(ANTHROPIC_VERSION));
        if let Some(key) = &api_key {
            let mut value = HeaderValue::from_str(key.expose())
                .map_err(|_| Error::config(&config.name, "the API key is not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        Ok(AnthropicAdapter { endpoint: Endpoint::new(config, model, "/v1/messages", headers, api_key)? })
    }

    fn content(&self, content: &Content) -> Result<Value, Error> {
        let blocks = match content {
            Content::Text(text) => return Ok(json!(text)),
            Content::Blocks(blocks) => blocks,
        };
        let blocks = blocks
            .iter()
            .map(|block| {
                Ok(match block {
                    ContentBlock::Text(text) => json!({"type": "text", "text": text}),
                    ContentBlock::Image(image) => json!({
                        "type": "image",
                        "source": {"type": "base64", "media_type": image.media_type, "data": image.data},
                    }),
                    ContentBlock::ToolUse(call) => json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": self.endpoint.tool_arguments(&call.id, &call.arguments)?,
                    }),
                    ContentBlock::ToolResult(result) => {
                        let mut block = json!({
                            "type": "tool_result",
                            "tool_use_id": result.tool_use_id,
                            "content": result.content,
                        });
                        if result.is_error {
                            block["is_error"] = json!(true);
                        }
                        block
                    }
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Value::Array(blocks))
    }
}

impl WireFormat for AnthropicAdapter {
    type Events = AnthropicEvents;

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn events(&self, headers: &HeaderMap) -> AnthropicEvents {
        AnthropicEvents::new(&self.endpoint, headers)
    }

    fn body(&self, request: &Request) -> Result<Value, Error> {
        let e = &self.endpoint;
        let mut system = Vec::new();
        let mut messages = Vec::new();
        for (index, message) in request.messages.iter().enumerate() {
            match message.role {
                Role::System => system.push(self.endpoint.system_text(index, &message.content)?),
                Role::User => {
                    messages.push(json!({"role": "user", "content": self.content(&message.content)?}))
                }
                Role::Assistant => {
                    messages.push(json!({"role": "assistant", "content": self.content(&message.content)?}))
                }
                Role::Tool => match &message.content {
                    Content::Blocks(_) => {
                        messages.push(json!({"role": "user", "content": self.content(&message.content)?}))
                    }
                    Content::Text(_) => {
                        return Err(e.request_error(format!(
                            "messages[{index}] has role tool but no tool-result blocks"
                        )))
                    }
                },
            }
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(e.model));
        body.insert("max_tokens".into(), json!(e.max_tokens(request)));
        if !system.is_empty() {
            body.insert("system".into(), json!(system.join("\n\n")));
        }
        body.insert("messages".into(), Value::Array(messages));
        if let Some(temperature) = e.temperature(request) {
            body.insert("temperature".into(), json!(temperature));
        }
        if !request.options.stop_sequences.is_empty() {
            body.insert("stop_sequences".into(), json!(request.options.stop_sequences));
        }
        if !request.tools.is_empty() {
            let tools = e.tools(request, "input_schema")?;
            body.insert("tools".into(), tools.into_iter().map(Value::Object).collect());
        }
        e.merge_extra(&mut body, request)?;
        Ok(Value::Object(body))
    }

    fn response(&self, headers: &HeaderMap, body: &[u8]) -> Result<Response, Error> {
        let e = &self.endpoint;
        let parsed: MessagesResponse = serde_json::from_slice(body).map_err(|err| {
            e.http.parse_error(format!("the response is not an Anthropic Messages body: {err}"), body)
        })?;
        let mut text = String::new();
        let mut thinking = Vec::new();
        let mut tool_calls = Vec::new();
        for block in parsed.content {
            match block {
                ResponseBlock::Text { text: t } => text.push_str(&t),
                ResponseBlock::Thinking { thinking: t } => thinking.push(t),
                ResponseBlock::ToolUse { id, name, input } => {
                    tool_calls.push(ToolCall { id, name, arguments: input.to_string() })
                }
                ResponseBlock::Other => {}
            }
        }
        let mut metadata = e.header_metadata(headers);
        let stop_reason = stop_reason(parsed.stop_reason.as_deref(), &mut metadata);
        Ok(Response {
            content: (!text.is_empty()).then_some(text),
            tool_calls,
            usage: usage(&parsed.usage),
            model: parsed.model,
            stop_reason,
            thinking: (!thinking.is_empty()).then(|| thinking.join("\n\n")),
            metadata,
        })
    }
}

/// The stop reason for a Messages `stop_reason`. `null` or a reason newer than this
/// adapter reads as `end-turn`, the raw value kept in `adapter.stop_reason`.
fn stop_reason(reason: Option<&str>, metadata: &mut Vec<(String, String)>) -> StopReason {
    match reason {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("model_context_window_exceeded") => StopReason::ContextWindowExceeded,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("pause_turn") => StopReason::PauseTurn,
        Some("refusal") => StopReason::Refusal,
        other => {
            metadata.push(("adapter.stop_reason".into(), other.unwrap_or("null").to_string()));
            StopReason::EndTurn
        }
    }
}

fn usage(usage: &MessagesUsage) -> Usage {
    let total = [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens.unwrap_or(0),
        usage.cache_creation_input_tokens.unwrap_or(0),
    ]
    .into_iter()
    .fold(0u64, u64::saturating_add);
    Usage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        // Anthropic's `input_tokens` excludes cached tokens, so the total adds them:
        // it counts every token the call processed, as OpenAI's does.
        total_tokens: total,
        cache_read_tokens: usage.cache_read_input_tokens,
        cache_write_tokens: usage.cache_creation_input_tokens,
        reasoning_tokens: usage.output_tokens_details.as_ref().and_then(|d| d.thinking_tokens),
    }
}

/// The parts of a Messages response this adapter reads; other fields are ignored.
#[derive(Deserialize)]
struct MessagesResponse {
    model: String,
    content: Vec<ResponseBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    usage: MessagesUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Thinking {
        thinking: String,
    },
    /// `redacted_thinking`, server-tool blocks and anything newer: nothing to map.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessagesUsage {
    input_tokens: u64,
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    /// The part of `output_tokens` spent thinking, where the API reports it.
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    thinking_tokens: Option<u64>,
}
