//! What the gateway tests share: loopback fake vendors (one per wire format) that answer
//! as the vendor would, buffered or streamed, or fail as scripted; the real `arcllm serve`
//! process in front of them; and the Python SDK runner.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// The vendor key the gateway's provider files name; clients never see it.
pub const VENDOR_KEY: &str = "sk-vendor-SECRET";
/// The gateway key clients use.
pub const GATEWAY_KEY: &str = "gw-test-key-1";

/// A failure the vendor answers instead of an answer.
#[derive(Clone, Copy, Debug)]
pub struct Fail(pub u16);

/// How a scripted streamed answer ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum End {
    /// Finish reason, usage and the vendor's terminal event.
    Finish,
    /// The connection breaks after the last piece.
    Cut,
    /// The vendor's error event (Anthropic `overloaded_error`, OpenAI an `error` chunk).
    ErrorEvent,
}

/// A scripted streamed answer: these pieces of text, each in its own event, then `end`.
#[derive(Clone, Debug)]
pub struct Leg {
    pub pieces: Vec<&'static str>,
    pub end: End,
}

/// A fake vendor speaking `format` (`openai` or `anthropic`).
pub struct Vendor {
    pub url: String,
    pub format: &'static str,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Fail>>,
    /// Answers for the next streamed requests, in order.
    legs: Mutex<VecDeque<Leg>>,
    always: Mutex<Option<Fail>>,
    delay: Mutex<Duration>,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
}

impl Vendor {
    pub async fn start(format: &'static str) -> Self {
        let state = Arc::new(State::default());
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = shared.clone();
            async move { answer(format, &state, headers, &body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Vendor { url, format, state, task }
    }

    /// Fails the next requests with these statuses, in order.
    pub fn script(&self, fails: &[u16]) {
        self.state.script.lock().unwrap().extend(fails.iter().map(|s| Fail(*s)));
    }

    /// Answers the next streamed requests with `legs`, one each, in order (then as usual).
    pub fn stream_legs(&self, legs: &[Leg]) {
        self.state.legs.lock().unwrap().extend(legs.iter().cloned());
    }

    /// Fails every request with `status` (None: answer again).
    pub fn always(&self, status: Option<u16>) {
        *self.state.always.lock().unwrap() = status.map(Fail);
    }

    /// Waits this long before each answer.
    pub fn delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// The bodies of the requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().iter().map(|(_, body)| body.clone()).collect()
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn reset(&self) {
        self.state.requests.lock().unwrap().clear();
        self.state.script.lock().unwrap().clear();
        self.state.legs.lock().unwrap().clear();
        *self.state.always.lock().unwrap() = None;
    }

    /// The provider file for this vendor.
    pub fn provider_toml(&self) -> String {
        let format = if self.format == "openai" { "openai-chat" } else { "anthropic-messages" };
        format!(
            "[provider]\napi_format = \"{format}\"\nbase_url = \"{}\"\napi_key_env = \"ARCLLM_TEST_VENDOR_KEY\"\ndefault_model = \"{}-model\"\ntimeout_seconds = 30\n",
            self.url, self.format
        )
    }
}

impl Drop for Vendor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The last user text of a request, in either format.
fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for message in messages.iter().rev() {
        match &message["content"] {
            Value::String(s) if message["role"] == "user" => return s.clone(),
            Value::Array(parts) if message["role"] == "user" => {
                if let Some(text) = parts.iter().rev().find_map(|p| p["text"].as_str()) {
                    return text.to_string();
                }
            }
            _ => {}
        }
    }
    String::new()
}

/// Whether the request's last message is a tool result (then the model answers in text).
fn after_tool_result(body: &Value) -> bool {
    let Some(last) = body["messages"].as_array().and_then(|m| m.last()) else { return false };
    last["role"] == "tool"
        || last["content"].as_array().is_some_and(|parts| parts.iter().any(|p| p["type"] == "tool_result"))
}

async fn answer(format: &'static str, state: &State, headers: HeaderMap, body: &[u8]) -> Response {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push((headers.clone(), body.clone()));
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let fail = state.script.lock().unwrap().pop_front().or(*state.always.lock().unwrap());
    if let Some(Fail(status)) = fail {
        let error = if format == "openai" {
            json!({"error": {"message": format!("vendor says {status}"), "type": "rate_limit_error", "code": null}})
        } else {
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": format!("vendor says {status}")}})
        };
        return Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(error.to_string()))
            .unwrap();
    }
    let leg = if body["stream"] == true { state.legs.lock().unwrap().pop_front() } else { None };
    if let Some(leg) = leg {
        return scripted_stream(format, &leg);
    }
    let wants_tool = body["tools"].as_array().is_some_and(|t| !t.is_empty()) && !after_tool_result(&body);
    let text = format!("{format} heard: {}", last_user_text(&body));
    let tool = body["tools"][0].clone();
    let tool_name = tool["name"].as_str().or(tool["function"]["name"].as_str()).unwrap_or("").to_string();
    let stream = body["stream"] == true;
    let (content_type, payload) = match (format, stream) {
        ("openai", false) => ("application/json", openai_json(&text, wants_tool.then_some(&tool_name))),
        ("openai", true) => ("text/event-stream", openai_sse(&text, wants_tool.then_some(&tool_name))),
        (_, false) => ("application/json", anthropic_json(&text, wants_tool.then_some(&tool_name))),
        (_, true) => ("text/event-stream", anthropic_sse(&text, wants_tool.then_some(&tool_name))),
    };
    Response::builder().header("content-type", content_type).body(Body::from(payload)).unwrap()
}

/// The text of the request's final message when it is the assistant's (a prefill, or the
/// text a resumed answer continues), in either format.
pub fn assistant_prefix(body: &Value) -> Option<String> {
    let last = body["messages"].as_array()?.last()?;
    if last["role"] != "assistant" {
        return None;
    }
    match &last["content"] {
        Value::String(text) => Some(text.clone()),
        Value::Array(blocks) => Some(blocks.iter().filter_map(|b| b["text"].as_str()).collect()),
        _ => None,
    }
}

/// `leg` streamed in `format`, one event per body chunk a few milliseconds apart (so each
/// reaches the gateway on its own), ending as the leg says.
fn scripted_stream(format: &'static str, leg: &Leg) -> Response {
    let mut frames = Vec::new();
    let words = leg.pieces.len();
    if format == "openai" {
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "openai-model",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        frames.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
        frames.extend(leg.pieces.iter().map(|piece| chunk(json!({"content": piece}), Value::Null)));
        match leg.end {
            End::Finish => {
                frames.push(chunk(json!({}), json!("stop")));
                frames.push(format!(
                    "data: {}\n\n",
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "openai-model",
                    "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": words, "total_tokens": 11 + words}})
                ));
                frames.push("data: [DONE]\n\n".into());
            }
            End::ErrorEvent => frames.push(format!(
                "data: {}\n\n",
                json!({"error": {"message": "the server had an error", "type": "server_error", "code": null}})
            )),
            End::Cut => {}
        }
    } else {
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        frames.push(event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_v", "type": "message", "role": "assistant",
            "model": "anthropic-model", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 11, "output_tokens": 1}}}),
        ));
        frames.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ));
        frames.extend(leg.pieces.iter().map(|piece| {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            )
        }));
        match leg.end {
            End::Finish => {
                frames.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
                frames.push(event(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": words}}),
                ));
                frames.push(event("message_stop", json!({"type": "message_stop"})));
            }
            End::ErrorEvent => frames.push(event(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            )),
            End::Cut => {}
        }
    }
    let cut = leg.end == End::Cut;
    let body = futures_util::stream::unfold((frames.into_iter(), cut), |(mut frames, cut)| async move {
        match frames.next() {
            Some(frame) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((Ok(axum::body::Bytes::from(frame)), (frames, cut)))
            }
            None if cut => {
                // Let the last piece reach the gateway before the connection breaks.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Err(std::io::Error::other("connection cut")), (frames, false)))
            }
            None => None,
        }
    });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(body)).unwrap()
}

const ARGS: &str = r#"{"city":"Paris"}"#;

fn openai_json(text: &str, tool: Option<&String>) -> String {
    let message = match tool {
        Some(name) => json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_v1", "type": "function", "function": {"name": name, "arguments": ARGS}}]}),
        None => json!({"role": "assistant", "content": text}),
    };
    json!({"id": "chatcmpl-v", "object": "chat.completion", "created": 1, "model": "openai-model",
        "choices": [{"index": 0, "message": message, "finish_reason": if tool.is_some() { "tool_calls" } else { "stop" }}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
    .to_string()
}

fn openai_sse(text: &str, tool: Option<&String>) -> String {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "openai-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut out = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    match tool {
        Some(name) => {
            out += &chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_v1", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            );
            out +=
                &chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": ARGS}}]}), Value::Null);
            out += &chunk(json!({}), json!("tool_calls"));
        }
        None => {
            let (a, b) = text.split_at(text.len() / 2);
            out += &chunk(json!({"content": a}), Value::Null);
            out += &chunk(json!({"content": b}), Value::Null);
            out += &chunk(json!({}), json!("stop"));
        }
    }
    out += &format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "openai-model", "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
    );
    out + "data: [DONE]\n\n"
}

fn anthropic_json(text: &str, tool: Option<&String>) -> String {
    let content = match tool {
        Some(name) => {
            json!([{"type": "tool_use", "id": "toolu_v1", "name": name, "input": {"city": "Paris"}}])
        }
        None => json!([{"type": "text", "text": text}]),
    };
    json!({"id": "msg_v", "type": "message", "role": "assistant", "model": "anthropic-model", "content": content,
        "stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" }, "stop_sequence": null,
        "usage": {"input_tokens": 11, "output_tokens": 7}})
    .to_string()
}

fn anthropic_sse(text: &str, tool: Option<&String>) -> String {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_v", "type": "message", "role": "assistant",
        "model": "anthropic-model", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 11, "output_tokens": 1}}}),
    );
    out += &event("ping", json!({"type": "ping"}));
    match tool {
        Some(name) => {
            out += &event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_v1", "name": name, "input": {}}}),
            );
            out += &event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ARGS}}),
            );
        }
        None => {
            let (a, b) = text.split_at(text.len() / 2);
            out += &event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            );
            out += &event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": a}}),
            );
            out += &event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": b}}),
            );
        }
    }
    out += &event("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    let reason = if tool.is_some() { "tool_use" } else { "end_turn" };
    out += &event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null}, "usage": {"output_tokens": 7}}),
    );
    out + &event("message_stop", json!({"type": "message_stop"}))
}

/// A running `arcllm serve`, killed when dropped.
pub struct Serve {
    pub url: String,
    pub dir: tempfile::TempDir,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Writes `config` (the `[server]` table gets `listen = 127.0.0.1:0` unless it names
    /// one) and a provider file per vendor (`vend_openai`, `vend_anthropic`), starts the
    /// binary with `env`, and waits until `/readyz` answers 200.
    pub fn start(config: &str, vendors: &[&Vendor], env: &[(&str, &str)]) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("providers")).unwrap();
        for vendor in vendors {
            let file = dir.path().join("providers").join(format!("vend_{}.toml", vendor.format));
            std::fs::write(file, vendor.provider_toml()).unwrap();
        }
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        Self::start_in(dir, env)
    }

    fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Serve {
        let mut command = Command::new(env!("CARGO_BIN_EXE_arcllm"));
        command
            .args(["serve", "--config"])
            .arg(dir.path().join("config.toml"))
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("ARCLLM_CONFIG")
            .env_remove("RUST_LOG")
            .env("ARCLLM_TEST_VENDOR_KEY", VENDOR_KEY)
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start arcllm serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or_default().to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("arcllm serve did not start:\n{}", log.lock().unwrap());
            }
        };
        let serve = Serve { url: format!("http://{addr}"), dir, child, log };
        serve.wait_ready();
        serve
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("{}/readyz", self.url)])
                .output()
                .map(|o| o.stdout == b"200")
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "never ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `HUP`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(started.elapsed() < within, "still running after {within:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The interpreter of the venv with the pinned SDKs, or None (and why) when unset.
pub fn python() -> Option<String> {
    match std::env::var("ARCLLM_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            eprintln!(
                "SKIPPED: ARCLLM_TEST_PYTHON is not set (a Python with tests/gateway/requirements.txt installed; .ci/run makes one)"
            );
            None
        }
    }
}

/// Runs scenario `name` of tests/gateway/sdk_clients.py against `serve`; its JSON output.
pub fn sdk(python: &str, serve: &Serve, name: &str, key: &str) -> Value {
    sdk_with(python, serve, name, key, &[])
}

/// [`sdk`] with more arguments for the scenario (after the gateway key).
pub fn sdk_with(python: &str, serve: &Serve, name: &str, key: &str, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/gateway/sdk_clients.py");
    let out = Command::new(python)
        .arg(script)
        .args([name, &serve.url, key])
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scenario {name} failed:\n{stdout}\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve.log()
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("scenario {name} printed no JSON ({e}):\n{stdout}"))
}
