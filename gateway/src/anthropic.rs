//! The Anthropic Messages front end: `POST /v1/messages` decoded into an arcllm
//! [`Request`], and a [`Response`] or a stream of [`StreamEvent`]s encoded back as a
//! `message` or as Anthropic's events (`message_start`, `content_block_*`, `message_delta`,
//! `message_stop`).
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
use crate::{Decoded, Front};

const TOP_LEVEL: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
];

/// Decodes a Messages request body.
pub fn decode(body: &[u8]) -> Result<Decoded, ApiError> {
    let body = parse_body(body)?;
    let top = Fields::new("", &body)?;
    top.only(TOP_LEVEL)?;
    let model = top.req_str("model")?.to_string();
    let max_tokens =
        top.positive("max_tokens")?.ok_or_else(|| ApiError::invalid("missing field `max_tokens`"))?;
    if let Some(metadata) = top.object("metadata")? {
        // The caller's own tag for abuse tracking: accepted, not forwarded (documented).
        metadata.only(&["user_id"])?;
    }
    if let Some(choice) = top.object("tool_choice")? {
        choice.only(&["type", "disable_parallel_tool_use"])?;
        if choice.req_str("type")? != "auto" || choice.bool("disable_parallel_tool_use")? == Some(true) {
            return Err(ApiError::invalid("`tool_choice` is not supported except {\"type\": \"auto\"}"));
        }
    }
    let mut messages = Vec::new();
    match top.get("system") {
        None => {}
        Some(Value::String(text)) => messages.push(Message::system(text.clone())),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                let b = Fields::new(format!("system[{i}]"), block)?;
                b.only(&["type", "text", "cache_control", "citations"])?;
                if b.req_str("type")? != "text" {
                    return Err(ApiError::invalid(format!("`{}` must be \"text\"", b.path("type"))));
                }
                texts.push(ContentBlock::Text(b.req_str("text")?.to_string()));
            }
            messages.push(Message { role: Role::System, content: Content::Blocks(texts) });
        }
        Some(_) => return Err(ApiError::invalid("`system` must be a string or an array of text blocks")),
    }
    let items = top.array("messages")?.ok_or_else(|| ApiError::invalid("missing field `messages`"))?;
    for (i, item) in items.iter().enumerate() {
        messages.push(message(&Fields::new(format!("messages[{i}]"), item)?)?);
    }
    let tools = top.each("tools", tool)?;
    let mut extra = Map::new();
    if let Some(top_p) = top.number("top_p")? {
        extra.insert("top_p".into(), json!(top_p));
    }
    if let Some(top_k) = top.positive("top_k")? {
        extra.insert("top_k".into(), json!(top_k));
    }
    let options = Options {
        max_tokens: Some(max_tokens),
        temperature: top.number("temperature")?,
        stop_sequences: top.strings("stop_sequences")?,
        extra: (!extra.is_empty()).then(|| Value::Object(extra).to_string()),
    };
    let stream = top.bool("stream")?.unwrap_or(false);
    Ok(Decoded {
        front: Front::Anthropic,
        model,
        request: Request { messages, tools, options },
        stream,
        include_usage: true,
    })
}

fn message(f: &Fields) -> Result<Message, ApiError> {
    f.only(&["role", "content"])?;
    let role = match f.req_str("role")? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            return Err(ApiError::invalid(format!(
                "`{}` must be user or assistant, got `{other}`",
                f.path("role")
            )))
        }
    };
    let blocks = match f.required("content")? {
        Value::String(text) => return Ok(Message { role, content: Content::Text(text.clone()) }),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(ApiError::invalid(format!(
                "`{}` must be a string or an array of blocks",
                f.path("content")
            )))
        }
    };
    let mut out = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let b = Fields::new(format!("{}[{j}]", f.path("content")), block)?;
        let kind = b.req_str("type")?;
        match (role, kind) {
            (_, "text") => {
                b.only(&["type", "text", "cache_control", "citations"])?;
                out.push(ContentBlock::Text(b.req_str("text")?.to_string()));
            }
            (Role::User, "image") => {
                b.only(&["type", "source", "cache_control"])?;
                let source = b.req_object("source")?;
                if source.req_str("type")? != "base64" {
                    return Err(ApiError::invalid(format!("`{}` must be \"base64\"", source.path("type"))));
                }
                source.only(&["type", "media_type", "data"])?;
                out.push(ContentBlock::Image(Image {
                    media_type: source.req_str("media_type")?.to_string(),
                    data: source.req_str("data")?.to_string(),
                }));
            }
            (Role::Assistant, "tool_use") => {
                b.only(&["type", "id", "name", "input", "cache_control"])?;
                let input = b.json_object("input", "an object")?.unwrap_or_else(|| json!({}));
                out.push(ContentBlock::ToolUse(ToolUse {
                    id: b.req_str("id")?.to_string(),
                    name: b.req_str("name")?.to_string(),
                    arguments: input.to_string(),
                }));
            }
            (Role::User, "tool_result") => {
                b.only(&["type", "tool_use_id", "content", "is_error", "cache_control"])?;
                let content = match b.get("content") {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => {
                        let mut text = Vec::new();
                        for (k, part) in parts.iter().enumerate() {
                            let p = Fields::new(format!("{}[{k}]", b.path("content")), part)?;
                            p.only(&["type", "text", "cache_control", "citations"])?;
                            if p.req_str("type")? != "text" {
                                return Err(ApiError::invalid(format!(
                                    "`{}`: tool results may hold text only",
                                    p.path("type")
                                )));
                            }
                            text.push(p.req_str("text")?);
                        }
                        text.join("\n")
                    }
                    Some(_) => {
                        return Err(ApiError::invalid(format!(
                            "`{}` must be a string or text blocks",
                            b.path("content")
                        )))
                    }
                };
                out.push(ContentBlock::ToolResult(ToolResult {
                    tool_use_id: b.req_str("tool_use_id")?.to_string(),
                    content,
                    is_error: b.bool("is_error")?.unwrap_or(false),
                }));
            }
            // Earlier turns' reasoning, echoed back: arcllm's request has no place for it,
            // and vendors do not need it to continue (documented).
            (Role::Assistant, "thinking" | "redacted_thinking") => {}
            (_, other) => {
                return Err(ApiError::invalid(format!(
                    "`{}`: block type `{other}` is not supported in a {} message",
                    b.path("type"),
                    if role == Role::User { "user" } else { "assistant" }
                )))
            }
        }
    }
    let only_results = !out.is_empty() && out.iter().all(|b| matches!(b, ContentBlock::ToolResult(_)));
    Ok(Message { role: if only_results { Role::Tool } else { role }, content: Content::Blocks(out) })
}

fn tool(f: &Fields) -> Result<ToolDefinition, ApiError> {
    f.only(&["type", "name", "description", "input_schema", "cache_control"])?;
    if f.str("type")?.is_some_and(|t| t != "custom") {
        return Err(ApiError::invalid(format!(
            "`{}`: only client tools (type custom) are supported",
            f.path("type")
        )));
    }
    let schema = f.json_object("input_schema", "a JSON Schema object")?;
    f.tool_definition(
        schema.ok_or_else(|| ApiError::invalid(format!("missing field `{}`", f.path("input_schema"))))?,
    )
}

fn stop_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ContentFilter | StopReason::Refusal => "refusal",
        StopReason::PauseTurn => "pause_turn",
        StopReason::ContextWindowExceeded => "model_context_window_exceeded",
    }
}

fn usage(usage: &Usage) -> Value {
    let cached = usage.cache_read_tokens.unwrap_or(0).saturating_add(usage.cache_write_tokens.unwrap_or(0));
    json!({
        // Anthropic counts input without the cached tokens, which it reports apart.
        "input_tokens": crate::input_tokens_including_cache(usage).saturating_sub(cached),
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
    })
}

/// Tool-call arguments (JSON text) as the `input` object Anthropic's clients expect.
fn tool_input(id: &str, arguments: &str) -> Result<Value, ApiError> {
    match serde_json::from_str::<Value>(if arguments.trim().is_empty() { "{}" } else { arguments }) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(ApiError::Internal(format!(
            "the arguments of tool call `{id}` from the vendor are not a JSON object"
        ))),
    }
}

/// A complete response as a `message`.
pub fn encode(response: &Response, id: &str) -> Result<Value, ApiError> {
    let mut content = Vec::new();
    if let Some(thinking) = &response.thinking {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
    }
    if let Some(text) = &response.content {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in &response.tool_calls {
        let input = tool_input(&call.id, &call.arguments)?;
        content.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    Ok(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": stop_reason(response.stop_reason),
        "stop_sequence": null,
        "usage": usage(&response.usage),
    }))
}

/// What kind of content block is open.
#[derive(Clone, Copy, PartialEq)]
enum Open {
    Text,
    Thinking,
    Tool(u32),
}

/// Encodes a stream of events as Anthropic's server-sent events.
pub struct EventEncoder {
    id: String,
    /// The open block and its index.
    open: Option<(Open, u32)>,
    next_index: u32,
    /// Tool-call index → block index, for argument pieces.
    tools: Vec<(u32, u32)>,
    usage: Option<Usage>,
}

impl EventEncoder {
    /// An encoder for one streamed answer.
    pub fn new(id: String) -> Self {
        EventEncoder { id, open: None, next_index: 0, tools: Vec::new(), usage: None }
    }

    /// Closes the open block, if any.
    fn close(&mut self, frames: &mut Vec<String>) {
        if let Some((_, index)) = self.open.take() {
            frames.push(frame("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
        }
    }

    /// The index of a block of `kind`, opening one (with `start`) unless it is open.
    fn block(&mut self, kind: Open, start: Value, frames: &mut Vec<String>) -> u32 {
        if let Some((open, index)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close(frames);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, index));
        frames.push(frame(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        index
    }

    fn delta(index: u32, delta: Value) -> String {
        frame("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}))
    }

    /// The frames for one event.
    pub fn event(&mut self, event: StreamEvent) -> Vec<String> {
        let mut frames = Vec::new();
        match event {
            StreamEvent::MessageStart { model } => frames.push(frame(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": self.id, "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                }}),
            )),
            StreamEvent::TextDelta(text) => {
                let index = self.block(Open::Text, json!({"type": "text", "text": ""}), &mut frames);
                frames.push(Self::delta(index, json!({"type": "text_delta", "text": text})));
            }
            StreamEvent::ThinkingDelta(text) => {
                let start = json!({"type": "thinking", "thinking": "", "signature": ""});
                let index = self.block(Open::Thinking, start, &mut frames);
                frames.push(Self::delta(index, json!({"type": "thinking_delta", "thinking": text})));
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.close(&mut frames);
                let start = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                let block = self.block(Open::Tool(index), start, &mut frames);
                self.tools.push((index, block));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let block = match self.tools.iter().find(|(tool, _)| *tool == index) {
                    Some((_, block)) => *block,
                    // A piece for a call that never started: open it without a name.
                    None => {
                        let start = json!({"type": "tool_use", "id": "", "name": "", "input": {}});
                        let block = self.block(Open::Tool(index), start, &mut frames);
                        self.tools.push((index, block));
                        block
                    }
                };
                frames
                    .push(Self::delta(block, json!({"type": "input_json_delta", "partial_json": arguments})));
            }
            StreamEvent::Usage(usage) => self.usage = Some(usage),
            StreamEvent::Stop { reason, .. } => {
                self.close(&mut frames);
                let usage = self.usage.as_ref().map(usage).unwrap_or_else(|| json!({"output_tokens": 0}));
                frames.push(frame(
                    "message_delta",
                    &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(reason), "stop_sequence": null}, "usage": usage}),
                ));
                frames.push(frame("message_stop", &json!({"type": "message_stop"})));
            }
        }
        frames
    }

    /// The frame for a failure after the stream began: an `error` event, as Anthropic sends.
    pub fn error(&self, error: &ApiError) -> String {
        frame("error", &error.body(Front::Anthropic))
    }
}

fn frame(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;
