//! Scripted streaming vendors for the streaming tests: loopback servers whose SSE bodies are
//! written chunk by chunk with scripted timing, and end cleanly or with a broken
//! connection; and the two vendors' event frames.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::handler::Handler;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Serves `handler` for every request on a loopback port, until the test's runtime ends;
/// the base URL.
pub async fn serve<H, T>(handler: H) -> String
where
    H: Handler<T, ()>,
    T: 'static,
{
    let app = axum::Router::new().fallback(handler);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// A `text/event-stream` answer with `body`.
pub fn event_stream(body: Body) -> Response {
    Response::builder().header("content-type", "text/event-stream").body(body).unwrap()
}

/// An OpenAI Chat Completions chunk frame with one choice.
pub fn openai_chunk(delta: Value, finish: Value) -> String {
    let body = json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {body}\n\n")
}

/// An Anthropic Messages event frame.
pub fn anthropic_event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// What the scripted bodies of one vendor did, over all its requests.
#[derive(Clone, Default)]
pub struct Tally {
    /// Chunks written.
    pub sent: Arc<AtomicUsize>,
    /// Bodies dropped by the server (finished, or the client went away).
    pub dropped: Arc<AtomicUsize>,
    /// When the last chunk was written.
    pub last_sent: Arc<Mutex<Option<Instant>>>,
}

impl Tally {
    /// Notes that a chunk was written now.
    pub fn sent_one(&self) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        *self.last_sent.lock().unwrap() = Some(Instant::now());
    }
}

/// Counts a body as dropped when it is.
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// An SSE answer that writes each chunk after its delay, noting it in `tally`; with `cut`,
/// the connection then breaks (50 ms after the last chunk, so that it reaches the client
/// first) instead of the body ending.
pub fn paced(chunks: Vec<(Duration, String)>, cut: bool, tally: Tally) -> Response {
    let guard = DropGuard(tally.dropped.clone());
    let state = (chunks.into_iter(), cut, tally, guard);
    let body = futures_util::stream::unfold(state, |(mut chunks, cut, tally, guard)| async move {
        match chunks.next() {
            Some((delay, chunk)) => {
                tokio::time::sleep(delay).await;
                tally.sent_one();
                Some((Ok(Bytes::from(chunk)), (chunks, cut, tally, guard)))
            }
            None if cut => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Err(std::io::Error::other("connection cut")), (chunks, false, tally, guard)))
            }
            None => None,
        }
    });
    event_stream(Body::from_stream(body))
}
