//! A fast mock vendor for gateway benchmarks: answers OpenAI Chat Completions
//! (`POST …/chat/completions`), whole or streamed, after a fixed service time.
//!
//! The service time comes from the path, so one mock serves every variant a benchmark needs
//! and a gateway names each as its own upstream: `POST /ms/20/v1/chat/completions` answers
//! after 20 ms, `POST /v1/chat/completions` at once. A streamed answer (`"stream": true`)
//! waits the service time, then sends `--chunks` content chunks `--chunk-delay-ms` apart,
//! the stop chunk, a usage chunk when `stream_options.include_usage` asks for it, and
//! `data: [DONE]`. The address it listens on is printed as the first line on stdout.
//!
//! Waits are timed by [`precise::sleep`], not tokio's timer: tokio fires a timer on the
//! millisecond tick after its deadline, so a request that reaches the mock a few hundred
//! microseconds later than another (one that went through a gateway) could wait a whole
//! millisecond longer, and the gateway would be charged for the mock's rounding.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use clap::Parser;
use serde_json::{json, Value};

mod precise;

#[derive(Parser, Debug, Clone)]
#[command(about = "Mock OpenAI Chat Completions vendor for gateway benchmarks")]
struct Args {
    /// Address to listen on (port 0: any free port; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Content chunks in a streamed answer.
    #[arg(long, default_value_t = 20)]
    chunks: u32,
    /// Delay between two streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 5)]
    chunk_delay_ms: u64,
}

/// The answer's text: `chunks` words, each streamed as one chunk.
fn words(chunks: u32) -> Vec<String> {
    (0..chunks).map(|i| format!("word{i} ")).collect()
}

#[derive(Clone)]
struct Mock {
    words: std::sync::Arc<Vec<String>>,
    chunk_delay: Duration,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    // One thread: the benchmark pins the mock to one core beside the load generator.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let mock = Mock {
        words: std::sync::Arc::new(words(args.chunks)),
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(instant))
        .route("/ms/{ms}/v1/chat/completions", post(delayed))
        .route("/v1/models", get(models))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("{}", listener.local_addr()?);
    // No Nagle: a streamed chunk leaves when written, not when the previous one is acked
    // (with the client's delayed ACK, chunks would arrive in 40 ms bursts).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("mock vendor: TCP_NODELAY not set: {e}");
        }
    });
    axum::serve(listener, app).await
}

async fn models() -> Response {
    axum::Json(json!({"object": "list", "data": [{"id": "mock-model", "object": "model"}]})).into_response()
}

async fn instant(State(mock): State<Mock>, body: Bytes) -> Response {
    answer(&mock, 0, &body).await
}

async fn delayed(State(mock): State<Mock>, Path(ms): Path<u64>, body: Bytes) -> Response {
    answer(&mock, ms, &body).await
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error"}});
    (status, axum::Json(body)).into_response()
}

async fn answer(mock: &Mock, service_ms: u64, body: &[u8]) -> Response {
    let request: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}")),
    };
    if !request.get("messages").is_some_and(Value::is_array) {
        return error(StatusCode::BAD_REQUEST, "`messages` must be an array");
    }
    let model = request["model"].as_str().unwrap_or("mock-model").to_owned();
    let stream = request["stream"].as_bool().unwrap_or(false);
    let include_usage = request["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    if service_ms > 0 {
        precise::sleep(Duration::from_millis(service_ms)).await;
    }
    let usage = json!({"prompt_tokens": 12, "completion_tokens": mock.words.len(),
        "total_tokens": 12 + mock.words.len()});
    if !stream {
        let body = json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": mock.words.concat()}}],
            "usage": usage,
        });
        return axum::Json(body).into_response();
    }
    let chunk = move |delta: Value, finish: Value| {
        let event = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        event
    };
    let mut events: Vec<String> = Vec::with_capacity(mock.words.len() + 3);
    for (i, word) in mock.words.iter().enumerate() {
        let delta =
            if i == 0 { json!({"role": "assistant", "content": word}) } else { json!({"content": word}) };
        events.push(format!("data: {}\n\n", chunk(delta, Value::Null)));
    }
    let mut tail = format!("data: {}\n\n", chunk(json!({}), json!("stop")));
    if include_usage {
        let usage_chunk = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": request["model"], "choices": [],
            "usage": usage});
        tail.push_str(&format!("data: {usage_chunk}\n\n"));
    }
    tail.push_str("data: [DONE]\n\n");
    events.push(tail);
    let delay = mock.chunk_delay;
    let stream =
        futures_util::stream::unfold((events.into_iter(), true), move |(mut rest, first)| async move {
            let event = rest.next()?;
            if !first && !delay.is_zero() {
                precise::sleep(delay).await;
            }
            Some((Ok::<_, Infallible>(Bytes::from(event)), (rest, false)))
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("static headers are valid")
}
