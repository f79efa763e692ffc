//! OpenAI Chat Completions streams: chunks of `choices[0].delta` (content, refusal, reasoning, tool calls by index),
//! a `finish_reason`, then (asked for with `stream_options.include_usage`) a usage chunk with
//! no choices, then `data: [DONE]`. The stop is held back until the end so that it comes
//! once, after the usage. A stream that fails after a chunk reported usage (some compatible
//! servers report the counts so far in every chunk) delivers it just before its error.

use std::collections::VecDeque;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::{stop_reason, usage, ChatUsage};
use crate::adapters::http::HttpClient;
use crate::adapters::sse::{EventMapper, Flow, SseError, SseEvent};
use crate::adapters::Endpoint;
use crate::stream::StreamEvent;
use crate::types::{Error, ErrorKind, Usage};

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
    pub(super) fn new(endpoint: &Endpoint, headers: &HeaderMap) -> Self {
        OpenAiEvents {
            http: endpoint.http.clone(),
            model: endpoint.model.clone(),
            metadata: endpoint.header_metadata(headers),
            started: false,
            finish_reason: None,
            refused: false,
            usage: None,
            tools: Vec::new(),
        }
    }

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

    fn cut_short(&self) -> Error {
        self.http.error(
            ErrorKind::Connection,
            "the stream ended before the answer was complete (no finish_reason, no [DONE])",
        )
    }

    /// Usage a compatible server reported before the failure (vLLM's
    /// `continuous_usage_stats` puts the counts so far in every chunk): no later report will
    /// come. OpenAI itself reports usage only in its last chunk, so there is none to give.
    fn before_failure(&mut self, out: &mut VecDeque<StreamEvent>) {
        if let Some(usage) = self.usage.take() {
            out.push_back(StreamEvent::Usage(usage));
        }
    }

    /// A finish reason means the answer is whole.
    fn whole(&mut self, out: &mut VecDeque<StreamEvent>) -> bool {
        if self.finish_reason.is_none() {
            return false;
        }
        self.complete(out);
        true
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
