//! OpenAI Chat Completions: `POST {base_url}/v1/chat/completions`, also spoken by ollama,
//! vLLM, Groq, Together, DeepSeek, Mistral, Fireworks and most other servers.
//!
//! Requests: assistant tool calls become `tool_calls` with JSON-text arguments; every tool
//! result becomes its own `role: tool` message (placed before any text or images that
//! share its arcllm message, since tool answers must directly follow the call); images
//! become data-URL `image_url` parts. Text-only content is sent as a plain string, which
//! every compatible server understands; content with images as a list of parts.
//! Responses: `reasoning_content` (DeepSeek, vLLM) or `reasoning` becomes the thinking, and
//! a `refusal` is the content, with the stop reason `refusal`.
//!
//! Streamed answers are read chunk by chunk in the `stream` submodule.

mod stream;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use self::stream::OpenAiEvents;
use super::{ApiKey, Endpoint, WireFormat};
use crate::providers::ProviderConfig;
use crate::types::{Content, ContentBlock, Error, Request, Response, Role, StopReason, ToolCall, Usage};

/// The adapter for `api_format = "openai-chat"`.
pub(crate) struct OpenAiAdapter {
    endpoint: Endpoint,
}

impl OpenAiAdapter {
    pub(crate) fn new(config: &ProviderConfig, model: &str, api_key: Option<ApiKey>) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| Error::config(&config.name, "the API key is not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(OpenAiAdapter {
            endpoint: Endpoint::new(config, model, "/v1/chat/completions", headers, api_key)?,
        })
    }

    /// A user (or tool) message of blocks: one `tool` message per tool result, then a user
    /// message with the text and images, if there are any.
    fn user_blocks(
        &self,
        index: usize,
        blocks: &[ContentBlock],
        messages: &mut Vec<Value>,
    ) -> Result<(), Error> {
        let mut parts = Vec::new();
        let mut has_image = false;
        for block in blocks {
            match block {
                ContentBlock::ToolResult(result) => {
                    // Chat Completions has no error flag on tool messages; say it in the text.
                    let content = if result.is_error {
                        format!("Error: {}", result.content)
                    } else {
                        result.content.clone()
                    };
                    messages.push(
                        json!({"role": "tool", "tool_call_id": result.tool_use_id, "content": content}),
                    );
                }
                ContentBlock::Text(text) => parts.push(json!({"type": "text", "text": text})),
                ContentBlock::Image(image) => {
                    has_image = true;
                    let url = format!("data:{};base64,{}", image.media_type, image.data);
                    parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                }
                ContentBlock::ToolUse(call) => {
                    return Err(self.endpoint.request_error(format!(
                        "messages[{index}] is not an assistant message but holds tool call `{}`",
                        call.id
                    )))
                }
            }
        }
        if parts.is_empty() {
            return Ok(());
        }
        let content = if has_image {
            Value::Array(parts)
        } else {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
            json!(texts.join("\n"))
        };
        messages.push(json!({"role": "user", "content": content}));
        Ok(())
    }

    /// An assistant message: its text (fragments joined as written) and its tool calls.
    fn assistant(&self, index: usize, content: &Content) -> Result<Value, Error> {
        let blocks = match content {
            Content::Text(text) => return Ok(json!({"role": "assistant", "content": text})),
            Content::Blocks(blocks) => blocks,
        };
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in blocks {
            match block {
                ContentBlock::Text(t) => text.push_str(t),
                ContentBlock::ToolUse(call) => {
                    // Validated, then sent as the JSON text the caller wrote.
                    self.endpoint.tool_arguments(&call.id, &call.arguments)?;
                    tool_calls.push(json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }));
                }
                ContentBlock::Image(_) | ContentBlock::ToolResult(_) => {
                    return Err(self.endpoint.request_error(format!(
                        "assistant messages[{index}] may hold text and tool-use blocks only"
                    )))
                }
            }
        }
        let mut message =
            json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        Ok(message)
    }
}

impl WireFormat for OpenAiAdapter {
    type Events = OpenAiEvents;

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn stream_body(&self, request: &Request) -> Result<Value, Error> {
        let mut body = self.body(request)?;
        body["stream"] = Value::Bool(true);
        // Without it the stream carries no token counts.
        match body.get_mut("stream_options") {
            Some(Value::Object(options)) => {
                options.insert("include_usage".into(), Value::Bool(true));
            }
            _ => body["stream_options"] = json!({"include_usage": true}),
        }
        Ok(body)
    }

    fn events(&self, headers: &HeaderMap) -> OpenAiEvents {
        OpenAiEvents::new(&self.endpoint, headers)
    }

    fn body(&self, request: &Request) -> Result<Value, Error> {
        let e = &self.endpoint;
        let mut messages = Vec::new();
        for (index, message) in request.messages.iter().enumerate() {
            match (message.role, &message.content) {
                (Role::System, content) => {
                    let text = self.endpoint.system_text(index, content)?;
                    messages.push(json!({"role": "system", "content": text}));
                }
                (Role::User, Content::Text(text)) => messages.push(json!({"role": "user", "content": text})),
                (Role::Tool, Content::Text(_)) => {
                    return Err(
                        e.request_error(format!("messages[{index}] has role tool but no tool-result blocks"))
                    )
                }
                (Role::User | Role::Tool, Content::Blocks(blocks)) => {
                    self.user_blocks(index, blocks, &mut messages)?
                }
                (Role::Assistant, content) => messages.push(self.assistant(index, content)?),
            }
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(e.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert(e.max_tokens_param.field().into(), json!(e.max_tokens(request)));
        if let Some(temperature) = e.temperature(request) {
            body.insert("temperature".into(), json!(temperature));
        }
        if !request.options.stop_sequences.is_empty() {
            body.insert("stop".into(), json!(request.options.stop_sequences));
        }
        if !request.tools.is_empty() {
            let tools = e.tools(request, "parameters")?;
            let tools = tools.into_iter().map(|function| json!({"type": "function", "function": function}));
            body.insert("tools".into(), tools.collect());
        }
        e.merge_extra(&mut body, request)?;
        Ok(Value::Object(body))
    }

    fn response(&self, headers: &HeaderMap, body: &[u8]) -> Result<Response, Error> {
        let e = &self.endpoint;
        let parsed: ChatResponse = serde_json::from_slice(body).map_err(|err| {
            e.http.parse_error(format!("the response is not a Chat Completions body: {err}"), body)
        })?;
        let Some(choice) = parsed.choices.into_iter().next() else {
            return Err(e.http.parse_error("the response has no choices", body));
        };
        let message = choice.message;
        let mut tool_calls = Vec::new();
        for call in message.tool_calls.unwrap_or_default() {
            // Custom tools (free-form text input, not a JSON object) exist only when a caller
            // asked for them through `options.extra`; the contract's tool calls carry JSON
            // arguments, so say so plainly instead of inventing an object.
            let function = match (call.kind.as_deref(), call.function) {
                (Some("custom"), _) => {
                    return Err(e.http.parse_error(
                        format!("tool call `{}` is a custom tool call; custom tool calls are not supported (only function tools are)", call.id),
                        body,
                    ))
                }
                (None | Some("function"), Some(function)) => function,
                (None | Some("function"), None) => {
                    return Err(e.http.parse_error(format!("tool call `{}` has no `function`", call.id), body))
                }
                (Some(kind), _) => {
                    return Err(e.http.parse_error(
                        format!("tool call `{}` is of type `{kind}`, not a function call", call.id),
                        body,
                    ))
                }
            };
            let arguments = match function.arguments {
                Value::String(text) => text,
                Value::Null => "{}".to_string(),
                // A few compatible servers send the object itself.
                other => other.to_string(),
            };
            tool_calls.push(ToolCall { id: call.id, name: function.name, arguments });
        }
        let mut metadata = e.header_metadata(headers);
        let refused = message.refusal.as_deref().is_some_and(|r| !r.is_empty());
        let stop_reason = stop_reason(choice.finish_reason.as_deref(), refused, &mut metadata);
        let content = message.content.filter(|c| !c.is_empty()).or(message.refusal.filter(|r| !r.is_empty()));
        let thinking = message.reasoning_content.or(message.reasoning).filter(|t| !t.is_empty());
        Ok(Response {
            content,
            tool_calls,
            usage: usage(parsed.usage.unwrap_or_default()),
            model: parsed.model.filter(|m| !m.is_empty()).unwrap_or_else(|| e.model.clone()),
            stop_reason,
            thinking,
            metadata,
        })
    }
}

/// The stop reason for a `finish_reason`; a refusal is a `refusal` stop. A reason
/// this adapter does not know is kept raw in `adapter.stop_reason`.
fn stop_reason(
    finish_reason: Option<&str>,
    refused: bool,
    metadata: &mut Vec<(String, String)>,
) -> StopReason {
    match finish_reason {
        _ if refused => StopReason::Refusal,
        Some("stop") => StopReason::EndTurn,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::ContentFilter,
        other => {
            metadata.push(("adapter.stop_reason".into(), other.unwrap_or("null").to_string()));
            StopReason::EndTurn
        }
    }
}

fn usage(usage: ChatUsage) -> Usage {
    let prompt_details = usage.prompt_tokens_details.unwrap_or_default();
    Usage {
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
        total_tokens: usage
            .total_tokens
            .unwrap_or(usage.prompt_tokens.saturating_add(usage.completion_tokens)),
        // DeepSeek reports cache hits under its own name.
        cache_read_tokens: prompt_details.cached_tokens.or(usage.prompt_cache_hit_tokens),
        cache_write_tokens: prompt_details.cache_write_tokens,
        reasoning_tokens: usage.completion_tokens_details.and_then(|d| d.reasoning_tokens),
    }
}

/// The parts of a Chat Completions response this adapter reads; other fields are ignored.
/// Optional where compatible servers are known to leave things out.
#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ChatToolCall>>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
}

#[derive(Deserialize)]
struct ChatToolCall {
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// Absent on `custom` tool calls.
    #[serde(default)]
    function: Option<ChatFunction>,
}

#[derive(Deserialize)]
struct ChatFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize, Default)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}
