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
//! Streams: chunks of `choices[0].delta` (content, refusal, reasoning, tool calls by index),
//! a `finish_reason`, then (asked for with `stream_options.include_usage`) a usage chunk with
//! no choices, then `data: [DONE]`. The stop is held back until the end so that it comes
//! once, after the usage.

use std::collections::VecDeque;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::http::HttpClient;
use super::sse::{EventMapper, Flow, SseError, SseEvent};
use super::{ApiKey, Endpoint, WireFormat};
use crate::providers::ProviderConfig;
use crate::stream::StreamEvent;
use crate::types::{
    Content, ContentBlock, Error, ErrorKind, Request, Response, Role, StopReason, ToolCall, Usage,
};

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
        OpenAiEvents {
            http: self.endpoint.http.clone(),
            model: self.endpoint.model.clone(),
            metadata: self.endpoint.header_metadata(headers),
            started: false,
            finish_reason: None,
            refused: false,
            usage: None,
            tools: Vec::new(),
        }
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
            let tools = request
                .tools
                .iter()
                .map(|tool| {
                    let mut function = Map::new();
                    function.insert("name".into(), json!(tool.name));
                    if !tool.description.is_empty() {
                        function.insert("description".into(), json!(tool.description));
                    }
                    function.insert("parameters".into(), e.tool_schema(&tool.name, &tool.parameters)?);
                    Ok(json!({"type": "function", "function": function}))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            body.insert("tools".into(), Value::Array(tools));
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

/// One streamed Chat Completions answer, read chunk by chunk.
pub(crate) struct OpenAiEvents {
    http: HttpClient,
    /// The model asked for, in case the chunks do not name one.
    model: String,
    metadata: Vec<(String, String)>,
    started: bool,
    finish_reason: Option<String>,
    refused: bool,
    usage: Option<Usage>,
    /// Tool calls started so far: their index, and whether any argument text came for it.
    tools: Vec<(u32, bool)>,
}

impl OpenAiEvents {
    fn chunk(&mut self, chunk: ChatChunk, data: &str, out: &mut VecDeque<StreamEvent>) -> Result<(), Error> {
        if !self.started {
            self.started = true;
            let model = chunk.model.filter(|m| !m.is_empty()).unwrap_or_else(|| self.model.clone());
            out.push_back(StreamEvent::MessageStart { model });
        }
        // Only the first choice is the answer (arcllm never asks for `n` > 1).
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                self.delta(delta, data, out)?;
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        if let Some(chunk_usage) = chunk.usage {
            self.usage = Some(usage(chunk_usage));
        }
        Ok(())
    }

    fn delta(&mut self, delta: ChunkDelta, data: &str, out: &mut VecDeque<StreamEvent>) -> Result<(), Error> {
        let present = |text: Option<String>| text.filter(|t| !t.is_empty());
        if let Some(thinking) = present(delta.reasoning_content).or(present(delta.reasoning)) {
            out.push_back(StreamEvent::ThinkingDelta(self.http.scrub(thinking)));
        }
        if let Some(text) = present(delta.content) {
            out.push_back(StreamEvent::TextDelta(self.http.scrub(text)));
        }
        if let Some(refusal) = present(delta.refusal) {
            self.refused = true;
            out.push_back(StreamEvent::TextDelta(self.http.scrub(refusal)));
        }
        for (position, call) in (0u32..).zip(delta.tool_calls.unwrap_or_default()) {
            let index = call.index.unwrap_or(position);
            match call.kind.as_deref() {
                None | Some("function") => {}
                Some("custom") => {
                    return Err(self.http.parse_error(
                        format!("tool call {index} is a custom tool call; custom tool calls are not supported (only function tools are)"),
                        data.as_bytes(),
                    ))
                }
                Some(kind) => {
                    return Err(self.http.parse_error(
                        format!("tool call {index} is of type `{kind}`, not a function call"),
                        data.as_bytes(),
                    ))
                }
            }
            let function = call.function.unwrap_or_default();
            let slot = match self.tools.iter().position(|(i, _)| *i == index) {
                Some(slot) => slot,
                None => {
                    let (Some(id), Some(name)) = (call.id, function.name) else {
                        return Err(self.http.parse_error(
                            format!("tool call {index} streams arguments before its id and name"),
                            data.as_bytes(),
                        ));
                    };
                    out.push_back(StreamEvent::ToolCallStart { index, id, name });
                    self.tools.push((index, false));
                    self.tools.len() - 1
                }
            };
            let arguments = match function.arguments {
                Value::String(text) => text,
                Value::Null => String::new(),
                // A few compatible servers send the object itself.
                other => other.to_string(),
            };
            if !arguments.is_empty() {
                self.tools[slot].1 = true;
                out.push_back(StreamEvent::ToolCallDelta { index, arguments: self.http.scrub(arguments) });
            }
        }
        Ok(())
    }

    /// The end of the answer: `{}` for tool calls that streamed no arguments (as a buffered
    /// answer reads them), the usage, then the stop.
    fn complete(&mut self, out: &mut VecDeque<StreamEvent>) {
        for (index, _) in self.tools.iter().filter(|(_, has_arguments)| !has_arguments) {
            out.push_back(StreamEvent::ToolCallDelta { index: *index, arguments: "{}".into() });
        }
        if let Some(usage) = self.usage.take() {
            out.push_back(StreamEvent::Usage(usage));
        }
        let mut metadata = std::mem::take(&mut self.metadata);
        let reason = stop_reason(self.finish_reason.as_deref(), self.refused, &mut metadata);
        out.push_back(StreamEvent::Stop { reason, metadata });
    }

    /// An error the server reported inside the stream (compatible servers do this when a
    /// generation fails after the answer began).
    fn error_event(&self, error: &Value, data: &str) -> Error {
        let message = error["message"].as_str().or(error.as_str()).unwrap_or("the stream reported an error");
        let status = [&error["code"], &error["status"]]
            .into_iter()
            .find_map(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .and_then(|code| u16::try_from(code).ok())
            .filter(|code| (400..600).contains(code))
            .unwrap_or(500);
        Error {
            kind: ErrorKind::Api,
            status: Some(status),
            ..self.http.parse_error(format!("error event in the stream: {message}"), data.as_bytes())
        }
    }
}

impl EventMapper for OpenAiEvents {
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<StreamEvent>) -> Result<Flow, Error> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.complete(out);
            return Ok(Flow::Done);
        }
        if data.is_empty() {
            return Ok(Flow::Continue);
        }
        if event.event.as_deref() == Some("error") {
            let value: Value = serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string()));
            let error = if value["error"].is_null() { &value } else { &value["error"] };
            return Err(self.error_event(error, data));
        }
        let chunk: ChatChunk = serde_json::from_str(data).map_err(|err| {
            self.http.parse_error(
                format!("a streamed event is not a Chat Completions chunk: {err}"),
                data.as_bytes(),
            )
        })?;
        if let Some(error) = &chunk.error {
            return Err(self.error_event(error, data));
        }
        self.chunk(chunk, data, out)?;
        Ok(Flow::Continue)
    }

    fn end(&mut self, out: &mut VecDeque<StreamEvent>) -> Result<(), Error> {
        // A finish reason means the answer is whole; only the `[DONE]` marker is missing,
        // which some compatible servers never send.
        if self.finish_reason.is_some() {
            self.complete(out);
            return Ok(());
        }
        Err(self.http.error(
            ErrorKind::Connection,
            "the stream ended before the answer was complete (no finish_reason, no [DONE])",
        ))
    }

    fn framing_error(&self, error: SseError) -> Error {
        self.http.error(ErrorKind::Parse, format!("{error} (max_response_bytes)"))
    }
}

/// One streamed chunk; everything optional, as servers differ in what they leave out.
#[derive(Deserialize)]
struct ChatChunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<ChunkDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ChunkToolCall>>,
}

#[derive(Deserialize)]
struct ChunkToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    function: Option<ChunkFunction>,
}

#[derive(Deserialize, Default)]
struct ChunkFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Value,
}
