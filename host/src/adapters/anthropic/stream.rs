//! Anthropic Messages streams: `message_start` (model, input usage), then per content block
//! `content_block_start`/`_delta`/`_stop` (text, thinking, and tool use whose input arrives
//! as pieces of JSON text), `message_delta` (stop reason, output usage) and `message_stop`;
//! `ping` keeps the connection alive and `error` ends the stream with the vendor's error.
//! A stream that fails after `message_start` delivers the usage that event reported just
//! before its error, since no later report will come.

use std::collections::VecDeque;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::{stop_reason, usage, MessagesUsage, OutputDetails};
use crate::adapters::http::HttpClient;
use crate::adapters::sse::{EventMapper, Flow, SseError, SseEvent};
use crate::adapters::Endpoint;
use crate::stream::StreamEvent;
use crate::types::{Error, ErrorKind, Usage};

/// The HTTP status an error event stands for, by its `type`, so that retry and fallback
/// treat it as they would the same error answered before the stream began.
fn error_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// One streamed Messages answer, read event by event.
pub(crate) struct AnthropicEvents {
    http: HttpClient,
    /// The model asked for, in case the stream does not name one.
    model: String,
    metadata: Vec<(String, String)>,
    started: bool,
    /// The content blocks started so far, by their index.
    blocks: Vec<(u32, Block)>,
    /// Tool calls started so far (the next tool call's index).
    tool_calls: u32,
    thinking_blocks: u32,
    stop_reason: Option<String>,
    usage: StreamUsage,
}

enum Block {
    Text,
    Thinking,
    Tool {
        index: u32,
        has_input: bool,
    },
    /// Redacted thinking, server tools and newer kinds: their deltas carry nothing to map.
    Other,
}

impl AnthropicEvents {
    pub(super) fn new(endpoint: &Endpoint, headers: &HeaderMap) -> Self {
        AnthropicEvents {
            http: endpoint.http.clone(),
            model: endpoint.model.clone(),
            metadata: endpoint.header_metadata(headers),
            started: false,
            blocks: Vec::new(),
            tool_calls: 0,
            thinking_blocks: 0,
            stop_reason: None,
            usage: StreamUsage::default(),
        }
    }

    fn start(&mut self, model: Option<String>, out: &mut VecDeque<StreamEvent>) {
        if !self.started {
            self.started = true;
            let model = model.filter(|m| !m.is_empty()).unwrap_or_else(|| self.model.clone());
            out.push_back(StreamEvent::MessageStart { model });
        }
    }

    fn block(&mut self, index: u32, data: &str) -> Result<&mut Block, Error> {
        match self.blocks.iter().rposition(|(i, _)| *i == index) {
            Some(position) => Ok(&mut self.blocks[position].1),
            None => Err(self.http.parse_error(
                format!("an event names content block {index}, which never started"),
                data.as_bytes(),
            )),
        }
    }

    fn block_start(&mut self, index: u32, block: StartedBlock, out: &mut VecDeque<StreamEvent>) {
        self.start(None, out);
        let block = match block {
            StartedBlock::Text { text } => {
                if !text.is_empty() {
                    out.push_back(StreamEvent::TextDelta(self.http.scrub(text)));
                }
                Block::Text
            }
            StartedBlock::Thinking { thinking } => {
                // Thinking blocks join as a buffered answer joins them.
                if self.thinking_blocks > 0 {
                    out.push_back(StreamEvent::ThinkingDelta("\n\n".into()));
                }
                self.thinking_blocks += 1;
                if !thinking.is_empty() {
                    out.push_back(StreamEvent::ThinkingDelta(self.http.scrub(thinking)));
                }
                Block::Thinking
            }
            StartedBlock::ToolUse { id, name, input } => {
                let tool = self.tool_calls;
                self.tool_calls += 1;
                out.push_back(StreamEvent::ToolCallStart { index: tool, id, name });
                // The input normally streams as JSON pieces after an empty `{}` here.
                let has_input = matches!(&input, Value::Object(fields) if !fields.is_empty());
                if has_input {
                    out.push_back(StreamEvent::ToolCallDelta { index: tool, arguments: input.to_string() });
                }
                Block::Tool { index: tool, has_input }
            }
            StartedBlock::Other => Block::Other,
        };
        self.blocks.push((index, block));
    }

    fn block_delta(
        &mut self,
        index: u32,
        delta: BlockDelta,
        data: &str,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), Error> {
        let block = self.block(index, data)?;
        match (delta, block) {
            (BlockDelta::TextDelta { text }, _) => {
                if !text.is_empty() {
                    out.push_back(StreamEvent::TextDelta(self.http.scrub(text)));
                }
            }
            (BlockDelta::ThinkingDelta { thinking }, _) => {
                if !thinking.is_empty() {
                    out.push_back(StreamEvent::ThinkingDelta(self.http.scrub(thinking)));
                }
            }
            (BlockDelta::InputJsonDelta { partial_json }, Block::Tool { index, has_input }) => {
                if !partial_json.is_empty() {
                    *has_input = true;
                    let index = *index;
                    out.push_back(StreamEvent::ToolCallDelta {
                        index,
                        arguments: self.http.scrub(partial_json),
                    });
                }
            }
            (BlockDelta::InputJsonDelta { .. }, Block::Other) => {}
            (BlockDelta::InputJsonDelta { .. }, _) => {
                return Err(self.http.parse_error(
                    format!("an input_json_delta for content block {index}, which is not a tool_use block"),
                    data.as_bytes(),
                ))
            }
            (BlockDelta::SignatureDelta | BlockDelta::Other, _) => {}
        }
        Ok(())
    }

    /// The end of the answer: the usage, then the stop.
    fn complete(&mut self, out: &mut VecDeque<StreamEvent>) {
        self.start(None, out);
        out.push_back(StreamEvent::Usage(self.usage.usage()));
        let mut metadata = std::mem::take(&mut self.metadata);
        let reason = stop_reason(self.stop_reason.as_deref(), &mut metadata);
        out.push_back(StreamEvent::Stop { reason, metadata });
    }

    fn error_event(&self, error: ErrorBody, data: &str) -> Error {
        let kind = error.kind.as_deref().unwrap_or("error");
        let message = error.message.as_deref().unwrap_or("the stream reported an error");
        Error {
            kind: ErrorKind::Api,
            status: Some(error_status(kind)),
            ..self.http.parse_error(format!("error event in the stream ({kind}): {message}"), data.as_bytes())
        }
    }
}

impl EventMapper for AnthropicEvents {
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<StreamEvent>) -> Result<Flow, Error> {
        let data = event.data.as_str();
        let parsed: StreamedEvent = serde_json::from_str(data).map_err(|err| {
            self.http.parse_error(
                format!("a streamed event is not a Messages stream event: {err}"),
                data.as_bytes(),
            )
        })?;
        match parsed {
            StreamedEvent::MessageStart { message } => {
                self.start(message.model, out);
                if let Some(usage) = message.usage {
                    self.usage.update(usage);
                }
            }
            StreamedEvent::ContentBlockStart { index, content_block } => {
                self.block_start(index, content_block, out)
            }
            StreamedEvent::ContentBlockDelta { index, delta } => self.block_delta(index, delta, data, out)?,
            StreamedEvent::ContentBlockStop { index } => {
                if let Block::Tool { index: tool, has_input: false } = self.block(index, data)? {
                    // A tool called without input: `{}`, as a buffered answer reads it.
                    let index = *tool;
                    out.push_back(StreamEvent::ToolCallDelta { index, arguments: "{}".into() });
                }
            }
            StreamedEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = usage {
                    self.usage.update(usage);
                }
            }
            StreamedEvent::MessageStop => {
                self.complete(out);
                return Ok(Flow::Done);
            }
            StreamedEvent::Error { error } => return Err(self.error_event(error, data)),
            StreamedEvent::Ping | StreamedEvent::Other => {}
        }
        Ok(Flow::Continue)
    }

    fn cut_short(&self) -> Error {
        self.http
            .error(ErrorKind::Connection, "the stream ended before the answer was complete (no message_stop)")
    }

    /// `message_delta`'s stop reason means the answer is whole.
    fn whole(&mut self, out: &mut VecDeque<StreamEvent>) -> bool {
        if self.stop_reason.is_none() {
            return false;
        }
        self.complete(out);
        true
    }

    /// The tokens `message_start` reported (the input side, and the output count at that
    /// moment): a stream that fails has no later report, and these were consumed all the
    /// same. A resumed answer adds them to its continuation's.
    fn before_failure(&mut self, out: &mut VecDeque<StreamEvent>) {
        if self.started && self.usage.input_tokens.is_some() {
            out.push_back(StreamEvent::Usage(self.usage.usage()));
        }
    }

    fn framing_error(&self, error: SseError) -> Error {
        self.http.error(ErrorKind::Parse, format!("{error} (max_response_bytes)"))
    }
}

/// A Messages stream event; unknown types are skipped, as the API asks of clients.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamedEvent {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: StartedBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<StreamUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartedMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<StreamUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartedBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// Verifies the thinking block when sent back; arcllm does not send thinking back.
    SignatureDelta,
    /// Citations and newer kinds.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Token counts as a stream reports them: `message_start` has the input side, each
/// `message_delta` the output so far (newer API versions repeat the others there).
#[derive(Deserialize, Default)]
struct StreamUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

impl StreamUsage {
    /// Takes the counts `later` has; keeps the others.
    fn update(&mut self, later: StreamUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = later.cache_read_input_tokens.or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens =
            later.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        if later.output_tokens_details.is_some() {
            self.output_tokens_details = later.output_tokens_details;
        }
    }

    fn usage(&self) -> Usage {
        usage(&MessagesUsage {
            input_tokens: self.input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_read_input_tokens: self.cache_read_input_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            output_tokens_details: self
                .output_tokens_details
                .as_ref()
                .map(|d| OutputDetails { thinking_tokens: d.thinking_tokens }),
        })
    }
}
