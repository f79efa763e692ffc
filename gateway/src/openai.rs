//! The OpenAI Chat Completions front end: `POST /v1/chat/completions` decoded into an
//! arcllm [`Request`], and a [`Response`] or a stream of [`StreamEvent`]s encoded back as
//! a `chat.completion` or `chat.completion.chunk`s (`data: {…}` … `data: [DONE]`).
//!
//! The field mapping and the rule for fields it does not translate are in docs/gateway.md.

use arcllm::stream::StreamEvent;
use arcllm::types::{
    Content, ContentBlock, Image, Message, Options, Request, Response, Role, StopReason, ToolDefinition,
    ToolResult, ToolUse, Usage,
};
use serde_json::{json, Map, Value};

use crate::errors::ApiError;
use crate::fields::{parse_body, Fields};
use crate::{input_tokens_including_cache, Decoded, Front};

const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "n",
    "parallel_tool_calls",
];

/// Decodes a Chat Completions request body.
pub fn decode(body: &[u8]) -> Result<Decoded, ApiError> {
    let body = parse_body(body)?;
    let top = Fields::new("", &body)?;
    top.only(TOP_LEVEL)?;
    let model = top.req_str("model")?.to_string();
    if top.positive("n")?.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("`n` must be 1: arcllm serve returns one choice"));
    }
    if top.bool("parallel_tool_calls")? == Some(false) {
        return Err(ApiError::invalid("`parallel_tool_calls: false` is not supported"));
    }
    match top.get("tool_choice") {
        None => {}
        Some(Value::String(choice)) if choice == "auto" => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`tool_choice` {other} is not supported: the model chooses (\"auto\")"
            )))
        }
    }
    let stream = top.bool("stream")?.unwrap_or(false);
    let include_usage = match top.object("stream_options")? {
        None => false,
        Some(options) => {
            options.only(&["include_usage"])?;
            if !stream {
                return Err(ApiError::invalid("`stream_options` is only allowed with `stream: true`"));
            }
            options.bool("include_usage")?.unwrap_or(false)
        }
    };
    let mut messages = Vec::new();
    let items = top.array("messages")?.ok_or_else(|| ApiError::invalid("missing field `messages`"))?;
    for (i, item) in items.iter().enumerate() {
        message(&Fields::new(format!("messages[{i}]"), item)?, &mut messages)?;
    }
    let tools = top.each("tools", tool)?;
    let mut extra = Map::new();
    if let Some(top_p) = top.number("top_p")? {
        extra.insert("top_p".into(), json!(top_p));
    }
    let options = Options {
        max_tokens: top.positive("max_completion_tokens")?.or(top.positive("max_tokens")?),
        temperature: top.number("temperature")?,
        stop_sequences: top.strings("stop")?,
        extra: (!extra.is_empty()).then(|| Value::Object(extra).to_string()),
    };
    Ok(Decoded {
        front: Front::OpenAi,
        model,
        request: Request { messages, tools, options },
        stream,
        include_usage,
    })
}

/// Text of a `content` that may be a string or an array of text parts.
fn text_content(f: &Fields, key: &str) -> Result<String, ApiError> {
    match f.get(key) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let p = Fields::new(format!("{}[{j}]", f.path(key)), part)?;
                p.only(&["type", "text"])?;
                match p.req_str("type")? {
                    "text" => text.push_str(p.req_str("text")?),
                    other => {
                        return Err(ApiError::invalid(format!(
                            "`{}` must be \"text\", got `{other}`",
                            p.path("type")
                        )))
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(ApiError::invalid(format!("`{}` must be a string or an array of parts", f.path(key)))),
    }
}

fn message(f: &Fields, out: &mut Vec<Message>) -> Result<(), ApiError> {
    match f.req_str("role")? {
        "system" | "developer" => {
            f.only(&["role", "content"])?;
            out.push(Message::system(text_content(f, "content")?));
        }
        "user" => {
            f.only(&["role", "content"])?;
            out.push(Message { role: Role::User, content: user_content(f)? });
        }
        "assistant" => {
            // `refusal`, `annotations` and `audio` are output fields an SDK echoes back when a
            // caller appends the response's message to the history; only empty ones pass.
            f.only(&["role", "content", "tool_calls", "refusal", "annotations", "audio", "function_call"])?;
            for echoed in ["refusal", "audio", "function_call"] {
                if f.get(echoed).is_some_and(|v| v != &json!("")) {
                    return Err(ApiError::invalid(format!(
                        "`{}` is not supported in a request",
                        f.path(echoed)
                    )));
                }
            }
            if f.array("annotations")?.is_some_and(|a| !a.is_empty()) {
                return Err(ApiError::invalid(format!("`{}` must be empty", f.path("annotations"))));
            }
            let text = text_content(f, "content")?;
            let mut blocks = Vec::new();
            for (j, call) in f.array("tool_calls")?.into_iter().flatten().enumerate() {
                let c = Fields::new(format!("{}[{j}]", f.path("tool_calls")), call)?;
                c.only(&["id", "type", "function"])?;
                if c.str("type")?.is_some_and(|t| t != "function") {
                    return Err(ApiError::invalid(format!("`{}` must be \"function\"", c.path("type"))));
                }
                let function = c.req_object("function")?;
                function.only(&["name", "arguments"])?;
                blocks.push(ContentBlock::ToolUse(ToolUse {
                    id: c.req_str("id")?.to_string(),
                    name: function.req_str("name")?.to_string(),
                    arguments: function.str("arguments")?.unwrap_or("{}").to_string(),
                }));
            }
            let content = if blocks.is_empty() {
                Content::Text(text)
            } else {
                if !text.is_empty() {
                    blocks.insert(0, ContentBlock::Text(text));
                }
                Content::Blocks(blocks)
            };
            out.push(Message { role: Role::Assistant, content });
        }
        "tool" => {
            f.only(&["role", "content", "tool_call_id"])?;
            let result = ContentBlock::ToolResult(ToolResult {
                tool_use_id: f.req_str("tool_call_id")?.to_string(),
                content: text_content(f, "content")?,
                is_error: false,
            });
            // Consecutive tool messages answer one assistant turn: keep them together.
            match out.last_mut() {
                Some(Message { role: Role::Tool, content: Content::Blocks(blocks) }) => blocks.push(result),
                _ => out.push(Message { role: Role::Tool, content: Content::Blocks(vec![result]) }),
            }
        }
        other => {
            return Err(ApiError::invalid(format!(
                "`{}` must be system, developer, user, assistant or tool, got `{other}`",
                f.path("role")
            )))
        }
    }
    Ok(())
}

fn user_content(f: &Fields) -> Result<Content, ApiError> {
    let parts = match f.required("content")? {
        Value::String(s) => return Ok(Content::Text(s.clone())),
        Value::Array(parts) => parts,
        _ => {
            return Err(ApiError::invalid(format!(
                "`{}` must be a string or an array of parts",
                f.path("content")
            )))
        }
    };
    let mut blocks = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let p = Fields::new(format!("{}[{j}]", f.path("content")), part)?;
        match p.req_str("type")? {
            "text" => {
                p.only(&["type", "text"])?;
                blocks.push(ContentBlock::Text(p.req_str("text")?.to_string()));
            }
            "image_url" => {
                p.only(&["type", "image_url"])?;
                let image = p.req_object("image_url")?;
                image.only(&["url", "detail"])?;
                blocks.push(ContentBlock::Image(data_url(&image.path("url"), image.req_str("url")?)?));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "`{}`: content part type `{other}` is not supported (text and image_url are)",
                    p.path("type")
                )))
            }
        }
    }
    Ok(Content::Blocks(blocks))
}

/// A `data:<media type>;base64,<data>` URL as an image: arcllm carries images inline.
fn data_url(path: &str, url: &str) -> Result<Image, ApiError> {
    let parsed = url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,"));
    match parsed {
        Some((media_type, data)) if !media_type.is_empty() => {
            Ok(Image { media_type: media_type.to_string(), data: data.to_string() })
        }
        _ => Err(ApiError::invalid(format!("`{path}` must be a base64 data URL (data:image/png;base64,…)"))),
    }
}

fn tool(f: &Fields) -> Result<ToolDefinition, ApiError> {
    f.only(&["type", "function"])?;
    if f.req_str("type")? != "function" {
        return Err(ApiError::invalid(format!("`{}` must be \"function\"", f.path("type"))));
    }
    let function = f.req_object("function")?;
    function.only(&["name", "description", "parameters", "strict"])?;
    if function.bool("strict")? == Some(true) {
        return Err(ApiError::invalid(format!("`{}: true` is not supported", function.path("strict"))));
    }
    let parameters = function.json_object("parameters", "a JSON Schema object")?;
    function.tool_definition(parameters.unwrap_or_else(|| json!({"type": "object", "properties": {}})))
}

/// `finish_reason` for a stop reason. Chat Completions has fewer reasons than the contract:
/// a paused turn reads as `length` (incomplete), a refusal as `content_filter` and a full context window
/// as `length`, the nearest reason an OpenAI client already acts on.
fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::ToolUse => "tool_calls",
        StopReason::MaxTokens | StopReason::ContextWindowExceeded => "length",
        StopReason::ContentFilter | StopReason::Refusal => "content_filter",
        // A paused turn is incomplete, as a cut one is.
        StopReason::PauseTurn => "length",
    }
}

fn usage(usage: &Usage) -> Value {
    let mut value = json!({
        "prompt_tokens": input_tokens_including_cache(usage),
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    });
    if let Some(cached) = usage.cache_read_tokens {
        value["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    if let Some(reasoning) = usage.reasoning_tokens {
        value["completion_tokens_details"] = json!({"reasoning_tokens": reasoning});
    }
    value
}

/// A complete response as a `chat.completion`.
pub fn encode(response: &Response, id: &str, created: u64) -> Value {
    let mut message = json!({"role": "assistant", "content": response.content, "refusal": null});
    if !response.tool_calls.is_empty() {
        message["tool_calls"] = response
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
    }
    if let Some(thinking) = &response.thinking {
        message["reasoning_content"] = json!(thinking);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": response.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(response.stop_reason), "logprobs": null}],
        "usage": usage(&response.usage),
    })
}

/// Encodes a stream of events as Chat Completions chunks.
pub struct ChunkEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    usage: Option<Usage>,
}

impl ChunkEncoder {
    /// An encoder for one streamed answer; `include_usage` as the client's `stream_options`.
    pub fn new(id: String, created: u64, include_usage: bool) -> Self {
        ChunkEncoder { id, created, model: String::new(), include_usage, usage: None }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        frame(&chunk)
    }

    /// The frames for one event (none for usage, which comes in its own chunk at the end).
    pub fn event(&mut self, event: StreamEvent) -> Vec<String> {
        match event {
            StreamEvent::MessageStart { model } => {
                self.model = model;
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            StreamEvent::TextDelta(text) => vec![self.chunk(json!({"content": text}), None)],
            StreamEvent::ThinkingDelta(text) => vec![self.chunk(json!({"reasoning_content": text}), None)],
            StreamEvent::ToolCallStart { index, id, name } => vec![self.chunk(
                json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
            )],
            StreamEvent::ToolCallDelta { index, arguments } => {
                vec![self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}), None)]
            }
            StreamEvent::Usage(usage) => {
                self.usage = Some(usage);
                Vec::new()
            }
            StreamEvent::Stop { reason, .. } => {
                let mut frames = vec![self.chunk(json!({}), Some(finish_reason(reason)))];
                if self.include_usage {
                    let usage = self.usage.as_ref().map(usage).unwrap_or(Value::Null);
                    frames.push(frame(&json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    })));
                }
                frames.push("data: [DONE]\n\n".to_string());
                frames
            }
        }
    }

    /// The frame for a failure after the stream began: an `error` object, as OpenAI sends
    /// one (the SDK raises it as an `APIError`); the stream ends after it.
    pub fn error(&self, error: &ApiError) -> String {
        frame(&error.body(Front::OpenAi))
    }
}

fn frame(value: &Value) -> String {
    format!("data: {value}\n\n")
}

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;
