//! Streaming through the native adapters: both vendors' server-sent events (transcripts as
//! their documentation shows them) against loopback servers that stream with scripted
//! timing and faults, normalized to `StreamEvent`s and collected into the same `Response`
//! a non-streaming call gives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcllm::adapters::SseReplay;
use arcllm::providers::{ConfigSource, ProviderConfig};
use arcllm::stream::{self, Collector, EventStream, StreamEvent};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::http::*;
use arcllm_tests::{sample_response, ScriptedProvider};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const OPENAI: &str = "openai-chat";
const ANTHROPIC: &str = "anthropic-messages";

// ---------------------------------------------------------------------------------------
// Transcripts, as the vendors document them.

/// OpenAI Chat Completions, a text answer with `stream_options.include_usage`.
const OPENAI_TEXT: &str = r#"data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":" How can I assist you today?"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

"#;

/// The same answer, not streamed.
fn openai_text_buffered() -> Value {
    json!({
        "id": "chatcmpl-123", "object": "chat.completion", "created": 1694268190, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "logprobs": null, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": null}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
            "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
    })
}

/// OpenAI function calling, streamed: the call's id and name first, then its arguments in
/// pieces.
const OPENAI_TOOLS: &str = r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"location"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":\""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"Paris"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":","}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":" France"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":20,"total_tokens":70}}

data: [DONE]

"#;

fn openai_tools_buffered() -> Value {
    json!({
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
        "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}}]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
    })
}

/// Anthropic Messages, a text answer (with a ping).
const ANTHROPIC_TEXT: &str = r#"event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-6", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"#;

fn anthropic_text_buffered() -> Value {
    json!({
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant",
        "content": [{"type": "text", "text": "Hello!"}], "model": "claude-opus-4-6",
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 25, "output_tokens": 15}
    })
}

/// Anthropic tool use, streamed: text, then a tool call whose input arrives as JSON pieces.
const ANTHROPIC_TOOLS: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-6","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" let's check the weather for San Francisco, CA:"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"unit\": \"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

fn anthropic_tools_buffered() -> Value {
    json!({
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant", "model": "claude-opus-4-6",
        "content": [
            {"type": "text", "text": "Okay, let's check the weather for San Francisco, CA:"},
            {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                "input": {"location": "San Francisco, CA", "unit": "fahrenheit"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 472, "output_tokens": 89}
    })
}

/// Anthropic extended thinking, streamed: a thinking block (with its signature) then text.
const ANTHROPIC_THINKING: &str = r#"event: message_start
data: {"type": "message_start", "message": {"id": "msg_01T", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-6", "stop_reason": null, "stop_sequence": null}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n1071 = 2 × 462 + 147"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\n462 = 3 × 147 + 21\n147 = 7 × 21 + 0\n\nSo GCD(1071, 462) = 21"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: content_block_start
data: {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "The greatest common divisor of 1071 and 462 is **21**."}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 1}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}}

event: message_stop
data: {"type": "message_stop"}

"#;

// ---------------------------------------------------------------------------------------
// A vendor that streams on a script.

/// What the scripted vendor does after the response head.
#[derive(Clone)]
enum Act {
    /// Writes these bytes as one HTTP chunk.
    Send(Vec<u8>),
    Wait(Duration),
    /// Drops the connection without ending the body.
    Die,
    /// Writes keep-alive comments until the client goes away, then notes that it did.
    UntilClosed,
}

/// `text` as one `Send` per `size` bytes.
fn pieces(text: &str, size: usize) -> Vec<Act> {
    text.as_bytes().chunks(size).map(|c| Act::Send(c.to_vec())).collect()
}

struct Vendor {
    url: String,
    /// The JSON bodies received.
    bodies: Arc<Mutex<Vec<Value>>>,
    /// The request heads received, as text.
    heads: Arc<Mutex<Vec<String>>>,
    /// Set when the client closed the connection during `UntilClosed`.
    client_left: Arc<AtomicBool>,
}

impl Vendor {
    /// Answers every connection with 200 `text/event-stream`, chunked, then plays `acts`.
    async fn start(acts: Vec<Act>) -> Vendor {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let vendor = Vendor {
            url,
            bodies: Arc::default(),
            heads: Arc::default(),
            client_left: Arc::new(AtomicBool::new(false)),
        };
        let (bodies, heads, client_left) =
            (vendor.bodies.clone(), vendor.heads.clone(), vendor.client_left.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                let (head, body) = read_request(&mut socket).await;
                heads.lock().unwrap().push(head);
                bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                let acts = acts.clone();
                let client_left = client_left.clone();
                tokio::spawn(async move { play(socket, acts, client_left).await });
            }
        });
        vendor
    }

    fn only_body(&self) -> Value {
        let bodies = self.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 1, "expected one request");
        bodies[0].clone()
    }
}

async fn read_request(socket: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = socket.read(&mut chunk).await.expect("read request");
        assert!(n > 0, "the client closed before sending a request");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0usize);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "the client closed mid-request");
        buf.extend_from_slice(&chunk[..n]);
    }
    (head, buf[head_end..head_end + length].to_vec())
}

async fn play(mut socket: TcpStream, acts: Vec<Act>, client_left: Arc<AtomicBool>) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for act in acts {
        match act {
            Act::Send(bytes) => {
                let mut frame = format!("{:x}\r\n", bytes.len()).into_bytes();
                frame.extend_from_slice(&bytes);
                frame.extend_from_slice(b"\r\n");
                if socket.write_all(&frame).await.is_err() {
                    return;
                }
            }
            Act::Wait(duration) => tokio::time::sleep(duration).await,
            Act::Die => return,
            Act::UntilClosed => {
                let deadline = Instant::now() + Duration::from_secs(10);
                let frame = b"d\r\n: keep-alive\n\r\n";
                while Instant::now() < deadline {
                    if socket.write_all(frame).await.is_err() {
                        client_left.store(true, Ordering::SeqCst);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return;
            }
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let _ = socket.flush().await;
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn hi() -> Request {
    Request::new(vec![Message::user("hi")])
}

/// Every item of `stream`: its events, and the error that ended it, if one did.
async fn drain(mut stream: EventStream) -> (Vec<StreamEvent>, Option<Error>) {
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => {
                assert!(stream.next().await.is_none(), "nothing may follow the error");
                return (events, Some(error));
            }
        }
    }
    (events, None)
}

/// Streams `transcript` from a vendor double in `size`-byte chunks: the events.
async fn stream_events(format: &str, transcript: &str, size: usize) -> Vec<StreamEvent> {
    let vendor = Vendor::start(pieces(transcript, size)).await;
    let stream = provider_at(format, &vendor.url, "").invoke_stream(hi()).await.expect("invoke_stream");
    let (events, error) = drain(stream).await;
    assert!(error.is_none(), "the stream failed: {error:?}");
    events
}

/// The response the same content gives without streaming.
async fn buffered(format: &str, body: Value) -> Response {
    let server = MockServer::start(Canned::json(body)).await;
    provider_at(format, &server.url, "").invoke(hi()).await.expect("invoke")
}

fn collect(events: &[StreamEvent]) -> Response {
    let mut collector = Collector::new();
    for event in events {
        collector.push(event.clone());
    }
    assert!(collector.is_complete(), "no stop in {events:#?}");
    collector.finish()
}

/// The two responses are the same; tool-call arguments compared as JSON values (a stream
/// carries the vendor's JSON text as written, a buffered Anthropic answer re-encodes it).
fn assert_same_response(streamed: &Response, buffered: &Response) {
    let arguments = |r: &Response| -> Vec<Value> {
        r.tool_calls.iter().map(|c| serde_json::from_str(&c.arguments).expect("arguments are JSON")).collect()
    };
    assert_eq!(arguments(streamed), arguments(buffered));
    let without_arguments = |r: &Response| {
        let mut r = r.clone();
        r.tool_calls.iter_mut().for_each(|c| c.arguments.clear());
        r
    };
    assert_eq!(without_arguments(streamed), without_arguments(buffered));
}

fn replay(format: &str, extra: &str) -> SseReplay {
    let toml = provider_toml(format, "http://127.0.0.1:9", extra);
    let config =
        ProviderConfig::parse("testvendor", &toml, ConfigSource::Inline("test".into())).expect("config");
    SseReplay::new(&config, None).expect("replay")
}

/// `transcript` replayed in memory in `size`-byte chunks: its events, and its error.
fn replay_in(format: &str, transcript: &[u8], size: usize) -> (Vec<StreamEvent>, Option<Error>) {
    let mut events = Vec::new();
    for item in replay(format, "").replay(transcript.chunks(size)) {
        match item {
            Ok(event) => events.push(event),
            Err(error) => return (events, Some(error)),
        }
    }
    (events, None)
}

fn text(t: &str) -> StreamEvent {
    StreamEvent::TextDelta(t.into())
}

fn usage(input: u64, output: u64, total: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: total,
        cache_read_tokens: None,
        cache_write_tokens: None,
        reasoning_tokens: None,
    }
}

fn stop(reason: StopReason) -> StreamEvent {
    StreamEvent::Stop { reason, metadata: vec![] }
}

// ---------------------------------------------------------------------------------------
// Transcripts normalize, and collect to the non-streaming answer.

#[tokio::test]
async fn openai_text_stream_normalizes_and_collects_to_the_buffered_answer() {
    let events = stream_events(OPENAI, OPENAI_TEXT, 4096).await;
    let expected = vec![
        StreamEvent::MessageStart { model: "gpt-4o-mini".into() },
        text("Hello"),
        text("!"),
        text(" How can I assist you today?"),
        StreamEvent::Usage(Usage {
            cache_read_tokens: Some(0),
            reasoning_tokens: Some(0),
            ..usage(9, 12, 21)
        }),
        stop(StopReason::EndTurn),
    ];
    assert_eq!(events, expected);
    assert_eq!(collect(&events), buffered(OPENAI, openai_text_buffered()).await);
}

#[tokio::test]
async fn openai_tool_call_stream_normalizes_and_collects_to_the_buffered_answer() {
    let events = stream_events(OPENAI, OPENAI_TOOLS, 4096).await;
    let mut expected = vec![
        StreamEvent::MessageStart { model: "gpt-4.1".into() },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_DdmO9pD3xa9XTPNJ32zg2hcA".into(),
            name: "get_weather".into(),
        },
    ];
    for piece in ["{\"", "location", "\":\"", "Paris", ",", " France", "\"}"] {
        expected.push(StreamEvent::ToolCallDelta { index: 0, arguments: piece.into() });
    }
    expected.push(StreamEvent::Usage(usage(50, 20, 70)));
    expected.push(stop(StopReason::ToolUse));
    assert_eq!(events, expected);
    // OpenAI's buffered arguments are the same JSON text, byte for byte.
    assert_eq!(collect(&events), buffered(OPENAI, openai_tools_buffered()).await);
}

#[tokio::test]
async fn anthropic_text_stream_normalizes_and_collects_to_the_buffered_answer() {
    let events = stream_events(ANTHROPIC, ANTHROPIC_TEXT, 4096).await;
    let expected = vec![
        StreamEvent::MessageStart { model: "claude-opus-4-6".into() },
        text("Hello"),
        text("!"),
        StreamEvent::Usage(usage(25, 15, 40)),
        stop(StopReason::EndTurn),
    ];
    assert_eq!(events, expected);
    assert_eq!(collect(&events), buffered(ANTHROPIC, anthropic_text_buffered()).await);
}

#[tokio::test]
async fn anthropic_tool_use_stream_normalizes_and_collects_to_the_buffered_answer() {
    let events = stream_events(ANTHROPIC, ANTHROPIC_TOOLS, 4096).await;
    let mut expected = vec![
        StreamEvent::MessageStart { model: "claude-opus-4-6".into() },
        text("Okay"),
        text(","),
        text(" let's check the weather for San Francisco, CA:"),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
            name: "get_weather".into(),
        },
    ];
    for piece in
        ["{\"location\":", " \"San", " Francisc", "o,", " CA\"", ", ", "\"unit\": \"fah", "renheit\"}"]
    {
        expected.push(StreamEvent::ToolCallDelta { index: 0, arguments: piece.into() });
    }
    expected.push(StreamEvent::Usage(usage(472, 89, 561)));
    expected.push(stop(StopReason::ToolUse));
    assert_eq!(events, expected);
    assert_same_response(&collect(&events), &buffered(ANTHROPIC, anthropic_tools_buffered()).await);
}

#[tokio::test]
async fn anthropic_thinking_stream_normalizes_and_ignores_signatures() {
    let (events, error) = replay_in(ANTHROPIC, ANTHROPIC_THINKING.as_bytes(), usize::MAX);
    assert!(error.is_none(), "{error:?}");
    let expected = vec![
        StreamEvent::MessageStart { model: "claude-opus-4-6".into() },
        StreamEvent::ThinkingDelta(
            "I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n1071 = 2 × 462 + 147"
                .into(),
        ),
        StreamEvent::ThinkingDelta("\n462 = 3 × 147 + 21\n147 = 7 × 21 + 0\n\nSo GCD(1071, 462) = 21".into()),
        text("The greatest common divisor of 1071 and 462 is **21**."),
        StreamEvent::Usage(usage(0, 0, 0)),
        stop(StopReason::EndTurn),
    ];
    assert_eq!(events, expected);
    let response = collect(&events);
    assert!(response.thinking.unwrap().ends_with("So GCD(1071, 462) = 21"));
}

#[tokio::test]
async fn both_vendors_normalize_the_same_answer_to_the_same_events() {
    // One answer ("Hello!", end of turn), as each vendor streams it: the same content events.
    let openai = replay_in(OPENAI, OPENAI_TEXT.replace(" How can I assist you today?", "").as_bytes(), 64).0;
    let anthropic = replay_in(ANTHROPIC, ANTHROPIC_TEXT.as_bytes(), 64).0;
    let content = |events: &[StreamEvent]| -> Vec<StreamEvent> {
        events
            .iter()
            .filter(|e| e.carries_content() || matches!(e, StreamEvent::Stop { .. }))
            .cloned()
            .collect()
    };
    assert_eq!(content(&openai), vec![text("Hello"), text("!"), stop(StopReason::EndTurn)]);
    assert_eq!(content(&openai), content(&anthropic));
}

// ---------------------------------------------------------------------------------------
// Framing: split reads, multi-byte characters, CRLF, comments.

#[tokio::test]
async fn one_byte_reads_give_the_same_events() {
    for (format, transcript) in [
        (OPENAI, OPENAI_TEXT),
        (OPENAI, OPENAI_TOOLS),
        (ANTHROPIC, ANTHROPIC_TEXT),
        (ANTHROPIC, ANTHROPIC_TOOLS),
    ] {
        let whole = replay_in(format, transcript.as_bytes(), usize::MAX);
        assert!(whole.1.is_none());
        assert_eq!(replay_in(format, transcript.as_bytes(), 1), whole, "{format}, in memory");
        // Over the wire, one byte per HTTP chunk.
        assert_eq!(stream_events(format, transcript, 1).await, whole.0, "{format}, over the wire");
    }
}

#[tokio::test]
async fn multi_byte_characters_split_across_reads_arrive_whole() {
    let words = "héllo, 世界 🦀 — ünïcødé ✓";
    let transcript = OPENAI_TEXT.replace("Hello", words);
    for size in [1, 2, 3, 5, 7] {
        let (events, error) = replay_in(OPENAI, transcript.as_bytes(), size);
        assert!(error.is_none());
        assert_eq!(events[1], text(words), "in {size}-byte reads");
    }
    assert_eq!(stream_events(OPENAI, &transcript, 3).await[1], text(words));
}

#[tokio::test]
async fn crlf_and_cr_line_ends_give_the_same_events() {
    for (format, transcript) in [(OPENAI, OPENAI_TOOLS), (ANTHROPIC, ANTHROPIC_TOOLS)] {
        let whole = replay_in(format, transcript.as_bytes(), usize::MAX).0;
        let crlf = transcript.replace('\n', "\r\n");
        let cr = transcript.replace('\n', "\r");
        for size in [1, 2, 1000] {
            assert_eq!(
                replay_in(format, crlf.as_bytes(), size).0,
                whole,
                "{format} CRLF in {size}-byte reads"
            );
            assert_eq!(replay_in(format, cr.as_bytes(), size).0, whole, "{format} CR in {size}-byte reads");
        }
        assert_eq!(stream_events(format, &crlf, 7).await, whole);
    }
}

#[tokio::test]
async fn comments_and_keep_alives_are_ignored() {
    for (format, transcript) in [(OPENAI, OPENAI_TEXT), (ANTHROPIC, ANTHROPIC_TEXT)] {
        let whole = replay_in(format, transcript.as_bytes(), usize::MAX).0;
        let chatty =
            format!(": OPENROUTER PROCESSING\n\n{}", transcript.replace("\n\n", "\n\n: keep-alive\n\n"));
        assert_eq!(replay_in(format, chatty.as_bytes(), 5).0, whole, "{format}");
    }
}

// ---------------------------------------------------------------------------------------
// The request.

#[tokio::test]
async fn the_request_asks_for_a_stream() {
    let vendor = Vendor::start(pieces(OPENAI_TEXT, 4096)).await;
    drain(provider_at(OPENAI, &vendor.url, "").invoke_stream(hi()).await.unwrap()).await;
    let body = vendor.only_body();
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
    let head = vendor.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.contains("accept: text/event-stream"), "{head}");
    assert!(head.contains(&format!("authorization: bearer {}", TEST_KEY.to_ascii_lowercase())));

    let vendor = Vendor::start(pieces(ANTHROPIC_TEXT, 4096)).await;
    drain(provider_at(ANTHROPIC, &vendor.url, "").invoke_stream(hi()).await.unwrap()).await;
    let body = vendor.only_body();
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body.get("stream_options"), None);
}

// ---------------------------------------------------------------------------------------
// Timing, faults, cancellation.

#[tokio::test]
async fn the_first_event_arrives_before_the_vendor_finishes() {
    // The vendor sends its first chunk, waits 300 ms, then sends the rest.
    let (first, rest) = OPENAI_TEXT.split_at(OPENAI_TEXT.find("\n\n").unwrap() + 2);
    let (second, rest) = rest.split_at(rest.find("\n\n").unwrap() + 2);
    let head = format!("{first}{second}");
    let vendor = Vendor::start(vec![
        Act::Send(head.into()),
        Act::Wait(Duration::from_millis(300)),
        Act::Send(rest.into()),
    ])
    .await;
    let started = Instant::now();
    let mut stream = provider_at(OPENAI, &vendor.url, "").invoke_stream(hi()).await.expect("invoke_stream");
    let mut first_content = None;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.expect("event");
        if event.carries_content() && first_content.is_none() {
            first_content = Some(started.elapsed());
        }
        events.push(event);
    }
    let done = started.elapsed();
    let first_content = first_content.expect("a content event");
    assert_eq!(events[1], text("Hello"));
    assert!(first_content < Duration::from_millis(300), "first content after {first_content:?}");
    assert!(
        done - first_content >= Duration::from_millis(250),
        "the first event waited for the rest: first at {first_content:?}, end at {done:?}"
    );
}

#[tokio::test]
async fn a_stream_that_dies_after_three_events_gives_them_then_a_connection_error() {
    // OpenAI: the connection drops mid-body.
    let three = OPENAI_TEXT.split("\n\n").take(3).map(|e| format!("{e}\n\n")).collect::<String>();
    let vendor = Vendor::start(vec![Act::Send(three.into()), Act::Die]).await;
    let (events, error) =
        drain(provider_at(OPENAI, &vendor.url, "").invoke_stream(hi()).await.unwrap()).await;
    assert_eq!(
        events,
        vec![StreamEvent::MessageStart { model: "gpt-4o-mini".into() }, text("Hello"), text("!")]
    );
    let error = error.expect("an error after the three events");
    assert_eq!(error.kind, ErrorKind::Connection, "{error:?}");
    assert_no_key(&error);

    // Anthropic: the body ends cleanly, but before message_stop. The usage message_start
    // reported comes before the error: no later report will.
    let cut = ANTHROPIC_TEXT.split("event: content_block_stop").next().unwrap().to_string();
    let vendor = Vendor::start(vec![Act::Send(cut.into())]).await;
    let (events, error) =
        drain(provider_at(ANTHROPIC, &vendor.url, "").invoke_stream(hi()).await.unwrap()).await;
    assert_eq!(
        events,
        vec![
            StreamEvent::MessageStart { model: "claude-opus-4-6".into() },
            text("Hello"),
            text("!"),
            StreamEvent::Usage(usage(25, 1, 26))
        ]
    );
    let error = error.expect("an error after the three events");
    assert_eq!(error.kind, ErrorKind::Connection);
    assert!(error.message.contains("ended before"), "{}", error.message);
}

#[test]
fn a_stream_that_fails_delivers_the_usage_its_vendor_reported_before_the_error() {
    // OpenAI reports usage only in its last chunk: a stream cut before it reports none.
    let cut = OPENAI_TEXT.split("\n\n").take(3).map(|e| format!("{e}\n\n")).collect::<String>();
    let (events, error) = replay_in(OPENAI, cut.as_bytes(), 7);
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::Usage(_))), "{events:?}");
    assert_eq!(error.expect("cut short").kind, ErrorKind::Connection);
    // A compatible server that reports the counts so far in every chunk (vLLM's
    // continuous_usage_stats): the last of them comes before the error, once.
    let chunk = |content: &str, completion: u64| {
        let usage =
            json!({"prompt_tokens": 9, "completion_tokens": completion, "total_tokens": 9 + completion});
        let body = json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}], "usage": usage});
        format!("data: {body}\n\n")
    };
    let transcript = chunk("Hel", 1) + &chunk("lo", 2);
    let (events, error) = replay_in(OPENAI, transcript.as_bytes(), 7);
    assert_eq!(
        events,
        vec![
            StreamEvent::MessageStart { model: "m".into() },
            text("Hel"),
            text("lo"),
            StreamEvent::Usage(usage(9, 2, 11))
        ]
    );
    assert_eq!(error.expect("cut short").kind, ErrorKind::Connection);
    // The same for Anthropic's message_start counts, after an error event.
    let transcript = format!(
        "{}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"api_error\", \"message\": \"m\"}}}}\n\n",
        ANTHROPIC_TEXT.split("event: content_block_stop").next().unwrap()
    );
    let (events, error) = replay_in(ANTHROPIC, transcript.as_bytes(), 7);
    assert_eq!(events.last(), Some(&StreamEvent::Usage(usage(25, 1, 26))), "{events:?}");
    assert_eq!(events.iter().filter(|e| matches!(e, StreamEvent::Usage(_))).count(), 1);
    assert_eq!(error.expect("the error event").status, Some(500));
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection_to_the_vendor() {
    let (first, _) = OPENAI_TEXT.split_at(OPENAI_TEXT.find("\n\n").unwrap() + 2);
    let vendor = Vendor::start(vec![Act::Send(first.into()), Act::UntilClosed]).await;
    let mut stream = provider_at(OPENAI, &vendor.url, "").invoke_stream(hi()).await.unwrap();
    assert!(matches!(stream.next().await, Some(Ok(StreamEvent::MessageStart { .. }))));
    assert!(!vendor.client_left.load(Ordering::SeqCst));
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !vendor.client_left.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the vendor still streams to a dropped consumer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_vendor_that_falls_silent_times_out() {
    let (first, _) = OPENAI_TEXT.split_at(OPENAI_TEXT.find("\n\n").unwrap() + 2);
    let vendor = Vendor::start(vec![Act::Send(first.into()), Act::Wait(Duration::from_secs(5))]).await;
    let provider = provider_at(OPENAI, &vendor.url, "timeout_seconds = 0.3");
    let started = Instant::now();
    let (events, error) = drain(provider.invoke_stream(hi()).await.unwrap()).await;
    assert_eq!(events, vec![StreamEvent::MessageStart { model: "gpt-4o-mini".into() }]);
    let error = error.expect("a timeout");
    assert_eq!(error.kind, ErrorKind::Timeout, "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_429_before_the_stream_is_the_typed_api_error_with_retry_after() {
    let body = json!({"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}}).to_string();
    let server = MockServer::start(Canned::status(429, body).header("retry-after", "7")).await;
    let provider = provider_at(OPENAI, &server.url, "");
    let error = match provider.invoke_stream(hi()).await {
        Ok(_) => panic!("a 429 must fail the call before any event"),
        Err(error) => error,
    };
    assert_eq!(error.kind, ErrorKind::Api);
    assert_eq!(error.status, Some(429));
    assert_eq!(error.retry_after_ms, Some(7000));
    assert!(error.message.contains("Rate limit reached"), "{}", error.message);
    // The very error the non-streaming call gives.
    assert_eq!(provider.invoke(hi()).await.unwrap_err(), error);
}

#[tokio::test]
async fn an_anthropic_error_event_ends_the_stream_with_the_api_error() {
    let transcript = format!(
        "{}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}}}\n\n",
        ANTHROPIC_TEXT.split("event: content_block_start").next().unwrap()
    );
    let vendor = Vendor::start(pieces(&transcript, 4096)).await;
    let (events, error) =
        drain(provider_at(ANTHROPIC, &vendor.url, "").invoke_stream(hi()).await.unwrap()).await;
    assert_eq!(
        events,
        vec![
            StreamEvent::MessageStart { model: "claude-opus-4-6".into() },
            StreamEvent::Usage(usage(25, 1, 26))
        ]
    );
    let error = error.expect("the error event");
    assert_eq!(error.kind, ErrorKind::Api);
    assert_eq!(error.status, Some(529));
    assert!(error.message.contains("Overloaded"), "{}", error.message);

    for (kind, status) in [("rate_limit_error", 429), ("api_error", 500), ("overloaded_error", 529)] {
        let data = format!("event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"m\"}}}}\n\n");
        let (_, error) = replay_in(ANTHROPIC, data.as_bytes(), 100);
        let error = error.expect("an error");
        assert_eq!((error.kind, error.status), (ErrorKind::Api, Some(status)), "{kind}");
    }
}

#[tokio::test]
async fn a_malformed_data_line_is_a_parse_error_that_says_what_was_wrong() {
    let broken = OPENAI_TEXT.replacen("{\"content\":\"Hello\"}", "{\"content\":\"Hello\"", 1);
    let (events, error) = replay_in(OPENAI, broken.as_bytes(), 100);
    assert_eq!(events, vec![StreamEvent::MessageStart { model: "gpt-4o-mini".into() }]);
    let error = error.expect("a parse error");
    assert_eq!(error.kind, ErrorKind::Parse);
    assert!(error.message.contains("not a Chat Completions chunk"), "{}", error.message);
    assert!(error.body.as_deref().unwrap().contains("Hello"), "the body shows the event: {error:?}");

    let broken = ANTHROPIC_TEXT.replacen("\"index\": 0, \"delta\"", "\"index\": 7, \"delta\"", 1);
    let (_, error) = replay_in(ANTHROPIC, broken.as_bytes(), 100);
    let error = error.expect("a parse error");
    assert_eq!(error.kind, ErrorKind::Parse);
    assert!(error.message.contains("content block 7"), "{}", error.message);
}

#[tokio::test]
async fn an_event_over_max_response_bytes_is_an_error() {
    let big = "x".repeat(4096);
    let transcript = OPENAI_TEXT.replace("Hello", &big);
    let items = replay(OPENAI, "max_response_bytes = 1024").replay([transcript.as_bytes()]);
    let error = items.last().unwrap().as_ref().expect_err("an error");
    assert_eq!(error.kind, ErrorKind::Parse);
    assert!(
        error.message.contains("1024") && error.message.contains("max_response_bytes"),
        "{}",
        error.message
    );
}

// ---------------------------------------------------------------------------------------
// OpenAI specifics.

#[tokio::test]
async fn openai_refusals_reasoning_and_a_missing_done() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    // A refusal is text, and stops as a refusal even though the finish is `stop`.
    let transcript = [
        chunk(json!({"role": "assistant", "reasoning_content": "Thinking…"}), Value::Null),
        chunk(json!({"refusal": "I can't help with that."}), Value::Null),
        chunk(json!({}), json!("stop")),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let (events, error) = replay_in(OPENAI, transcript.as_bytes(), 9);
    assert!(error.is_none());
    assert_eq!(
        events,
        vec![
            StreamEvent::MessageStart { model: "m".into() },
            StreamEvent::ThinkingDelta("Thinking…".into()),
            text("I can't help with that."),
            stop(StopReason::Refusal),
        ]
    );

    // No `[DONE]` after a finish reason: complete (some compatible servers end that way).
    let transcript =
        [chunk(json!({"content": "ok"}), Value::Null), chunk(json!({}), json!("length"))].concat();
    let (events, error) = replay_in(OPENAI, transcript.as_bytes(), 9);
    assert!(error.is_none());
    assert_eq!(events.last(), Some(&stop(StopReason::MaxTokens)));

    // An unknown finish reason is kept raw, as without streaming.
    let transcript = [chunk(json!({"content": "ok"}), json!("eos")), "data: [DONE]\n\n".into()].concat();
    let (events, _) = replay_in(OPENAI, transcript.as_bytes(), 9);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Stop {
            reason: StopReason::EndTurn,
            metadata: vec![("adapter.stop_reason".into(), "eos".into())]
        })
    );
}

#[tokio::test]
async fn openai_parallel_tool_calls_keep_their_indexes() {
    let call = |index: u32, id: Option<&str>, name: Option<&str>, arguments: &str| {
        let mut tool = json!({"index": index, "function": {"arguments": arguments}});
        if let (Some(id), Some(name)) = (id, name) {
            tool["id"] = json!(id);
            tool["type"] = json!("function");
            tool["function"]["name"] = json!(name);
        }
        format!(
            "data: {}\n\n",
            json!({"model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [tool]}}]})
        )
    };
    let transcript = [
        call(0, Some("call_a"), Some("search"), ""),
        call(1, Some("call_b"), Some("fetch"), "{\"url\":"),
        call(0, None, None, "{\"q\":\"rust\"}"),
        call(1, None, None, "\"x\"}"),
        "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n".into(),
        "data: [DONE]\n\n".into(),
    ]
    .concat();
    let (events, error) = replay_in(OPENAI, transcript.as_bytes(), 13);
    assert!(error.is_none(), "{error:?}");
    let response = collect(&events);
    let calls: Vec<_> =
        response.tool_calls.iter().map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str())).collect();
    assert_eq!(calls, vec![("call_a", "search", "{\"q\":\"rust\"}"), ("call_b", "fetch", "{\"url\":\"x\"}")]);

    // Arguments for a call that never said its id and name.
    let (_, error) = replay_in(OPENAI, call(3, None, None, "{}").as_bytes(), 100);
    let error = error.expect("a parse error");
    assert_eq!(error.kind, ErrorKind::Parse);
    assert!(error.message.contains("tool call 3"), "{}", error.message);
}

// ---------------------------------------------------------------------------------------
// Keys, buffered servers, buffered providers.

#[tokio::test]
async fn an_echoed_key_is_scrubbed_from_streamed_text() {
    let transcript = OPENAI_TEXT.replace("Hello", &format!("your key is {TEST_KEY}"));
    let events = stream_events(OPENAI, &transcript, 4096).await;
    assert_eq!(events[1], text("your key is ***"));
}

#[tokio::test]
async fn a_server_that_answers_json_to_a_streaming_call_is_replayed() {
    for (format, body) in [(OPENAI, openai_text_buffered()), (ANTHROPIC, anthropic_tools_buffered())] {
        let server = MockServer::start(Canned::json(body.clone())).await;
        let stream = provider_at(format, &server.url, "").invoke_stream(hi()).await.expect("invoke_stream");
        let (events, error) = drain(stream).await;
        assert!(error.is_none());
        assert_eq!(collect(&events), buffered(format, body).await);
    }
}

#[tokio::test]
async fn a_provider_that_cannot_stream_streams_its_buffered_answer() {
    let provider = ScriptedProvider::ok("plain");
    let (events, error) = drain(provider.invoke_stream(hi()).await.unwrap()).await;
    assert!(error.is_none());
    assert!(matches!(events.first(), Some(StreamEvent::MessageStart { .. })));
    assert!(matches!(events.last(), Some(StreamEvent::Stop { .. })));
    assert_eq!(collect(&events), sample_response("plain"));
    assert_eq!(
        Collector::collect(stream::from_response(sample_response("x"))).await.unwrap(),
        sample_response("x")
    );

    let failing = ScriptedProvider::failing("down", arcllm_tests::api_error("down", 503));
    assert_eq!(failing.invoke_stream(hi()).await.err().map(|e| e.status), Some(Some(503)));
}
