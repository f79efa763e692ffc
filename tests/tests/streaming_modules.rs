//! Streaming through module stacks: `retry(fallback(adapter))` of the built-in modules over a
//! real OpenAI-format adapter, against a loopback vendor that streams with scripted timing
//! and faults. Retry and fallback act only before the first content event (the commit
//! point); after it events flow host-side, and a failure ends the stream.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcllm::runtime::{LazyRegistry, Runtime, Stack};
use arcllm::stream::{Collector, EventStream, StreamEvent};
use arcllm::types::{Error, ErrorKind, Message, Request};
use arcllm::Provider;
use arcllm_tests::http::{provider_at, refused_port};
use arcllm_tests::sse::{openai_chunk, paced, serve, Tally};
use arcllm_tests::*;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// What the vendor answers one request with.
#[derive(Clone)]
enum Reply {
    /// A non-2xx status with a JSON error body.
    Status(u16),
    /// An SSE body: each chunk after its delay; then, with `cut`, the connection breaks
    /// instead of the body ending.
    Sse { chunks: Vec<(Duration, String)>, cut: bool },
}

/// A loopback vendor answering each request with the next reply of its script (the last
/// one repeats), recording what it did.
struct Vendor {
    url: String,
    requests: Arc<AtomicUsize>,
    tally: Tally,
}

async fn vendor(script: Vec<Reply>) -> Vendor {
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let requests = Arc::<AtomicUsize>::default();
    let tally = Tally::default();
    let (r, t) = (requests.clone(), tally.clone());
    let handler = move |body: Bytes| {
        let (script, tally) = (script.clone(), t.clone());
        r.fetch_add(1, Ordering::SeqCst);
        let streaming =
            serde_json::from_slice::<Value>(&body).is_ok_and(|body| body["stream"] == json!(true));
        async move {
            let reply = {
                let mut script = script.lock().unwrap();
                if script.len() > 1 {
                    script.pop_front().unwrap()
                } else {
                    script[0].clone()
                }
            };
            match reply {
                Reply::Status(status) => axum::response::Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .header("content-type", "application/json")
                    .body(Body::from(json!({"error": {"message": format!("status {status}")}}).to_string()))
                    .unwrap(),
                // A buffered call gets the same answer whole, once it would have finished.
                Reply::Sse { chunks, .. } if !streaming => {
                    let mut text = String::new();
                    for (delay, chunk) in &chunks {
                        tokio::time::sleep(*delay).await;
                        let data = chunk.strip_prefix("data: ").unwrap_or_default();
                        if let Ok(data) = serde_json::from_str::<Value>(data) {
                            text.push_str(
                                data["choices"][0]["delta"]["content"].as_str().unwrap_or_default(),
                            );
                        }
                    }
                    *tally.last_sent.lock().unwrap() = Some(Instant::now());
                    let answer = json!({"id": "c", "object": "chat.completion", "model": "m",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
                    axum::response::Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(answer.to_string()))
                        .unwrap()
                }
                Reply::Sse { chunks, cut } => paced(chunks, cut, tally),
            }
        }
    };
    Vendor { url: serve(handler).await, requests, tally }
}

/// The role chunk, then each word `gap` after the one before, then the finish and `[DONE]`.
fn answer(words: &[&str], first: Duration, gap: Duration) -> Reply {
    let mut chunks = vec![(first, openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null))];
    for word in words {
        chunks.push((gap, openai_chunk(json!({"content": word}), Value::Null)));
    }
    chunks.push((Duration::ZERO, openai_chunk(json!({}), json!("stop"))));
    chunks.push((Duration::ZERO, "data: [DONE]\n\n".into()));
    Reply::Sse { chunks, cut: false }
}

fn runtime() -> Runtime {
    Runtime::builder().build().expect("runtime")
}

const RETRY: &str = r#"{"max_retries": 2, "backoff_base_seconds": 0.01, "max_wait_seconds": 0.05}"#;

/// `retry(fallback(adapter))` over the vendor at `primary`, with `backup` (the provider at
/// `backup_url`) as fallback's chain when given.
async fn stack(primary: &str, retry: &str, backup_url: Option<&str>, middle: Option<&[u8]>) -> Stack {
    let rt = runtime();
    let chain: Vec<&str> = backup_url.iter().map(|_| "backup").collect();
    let mut modules = vec![builtin(&rt, "retry", serde_json::from_str(retry).unwrap()).await];
    if let Some(bytes) = middle {
        let old = rt
            .load_module("old", arcllm::runtime::ModuleSource::Bytes, bytes.to_vec(), &json!({}))
            .await
            .unwrap();
        modules.push(old);
    }
    modules.push(builtin(&rt, "fallback", json!({ "chain": chain })).await);
    let stack = Stack::new(rt, modules, provider_at("openai-chat", primary, ""));
    match backup_url {
        Some(url) => {
            let url = url.to_string();
            stack.with_registry(Arc::new(LazyRegistry::new(move |_, _| {
                Ok(provider_at("openai-chat", &url, ""))
            })))
        }
        None => stack,
    }
}

fn hi() -> Request {
    Request::new(vec![Message::user("hi")])
}

/// Every item of `stream`, each with the time it arrived.
async fn drain(mut stream: EventStream) -> Vec<(Result<StreamEvent, Error>, Instant)> {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push((item, Instant::now()));
    }
    items
}

fn texts(items: &[(Result<StreamEvent, Error>, Instant)]) -> Vec<String> {
    items
        .iter()
        .filter_map(|(item, _)| match item {
            Ok(StreamEvent::TextDelta(text)) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn collect(items: Vec<(Result<StreamEvent, Error>, Instant)>) -> arcllm::types::Response {
    let mut collector = Collector::new();
    for (item, _) in items {
        collector.push(item.expect("no error in the stream"));
    }
    assert!(collector.is_complete());
    collector.finish()
}

#[tokio::test]
async fn tokens_reach_the_caller_through_retry_and_fallback_before_the_vendor_finishes() {
    let words = ["one", " two", " three", " four", " five"];
    let server = vendor(vec![answer(&words, Duration::ZERO, Duration::from_millis(150))]).await;
    let stack = stack(&server.url, RETRY, None, None).await;
    let started = Instant::now();
    let items = drain(stack.invoke_stream(hi()).await.expect("the stream starts")).await;
    let first_text = items.iter().find(|(item, _)| matches!(item, Ok(StreamEvent::TextDelta(_)))).unwrap().1;
    let last_sent = server.tally.last_sent.lock().unwrap().unwrap();
    assert!(
        first_text + Duration::from_millis(400) < last_sent,
        "the first token arrived {:?} after the start, the vendor finished {:?} after it",
        first_text - started,
        last_sent - started
    );
    assert_eq!(texts(&items), words);
    let response = collect(items);
    assert_eq!(response.content.as_deref(), Some("one two three four five"));
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("testvendor"));
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("1"));
    // Annotations in the order a buffered call adds them: inner layer first.
    let keys: Vec<&str> = response.metadata.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["arcllm.fallback.provider", "arcllm.retry.attempts"]);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_503_before_the_stream_is_retried_and_the_second_attempt_streams() {
    let server = vendor(vec![Reply::Status(503), answer(&["ok"], Duration::ZERO, Duration::ZERO)]).await;
    let stack = stack(&server.url, RETRY, None, None).await;
    let response = collect(drain(stack.invoke_stream(hi()).await.unwrap()).await);
    assert_eq!(response.content.as_deref(), Some("ok"));
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("2"));
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_dead_primary_falls_back_to_a_streaming_target() {
    let dead = format!("http://127.0.0.1:{}", refused_port().await);
    let backup = vendor(vec![answer(&["from", " backup"], Duration::ZERO, Duration::from_millis(10))]).await;
    let stack = stack(&dead, r#"{"max_retries": 0}"#, Some(&backup.url), None).await;
    let items = drain(stack.invoke_stream(hi()).await.expect("the fallback streams")).await;
    assert_eq!(texts(&items), ["from", " backup"]);
    let response = collect(items);
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("backup"));
    assert_eq!(backup.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failure_after_three_events_ends_the_stream_after_them_and_is_not_retried() {
    let mut chunks =
        vec![(Duration::ZERO, openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null))];
    for word in ["a", "b", "c"] {
        chunks.push((Duration::from_millis(20), openai_chunk(json!({"content": word}), Value::Null)));
    }
    let server = vendor(vec![Reply::Sse { chunks, cut: true }]).await;
    let stack = stack(&server.url, RETRY, None, None).await;
    let items = drain(stack.invoke_stream(hi()).await.unwrap()).await;
    assert_eq!(texts(&items), ["a", "b", "c"], "delivered once each, never repeated");
    let (last, _) = items.last().unwrap();
    let error = last.as_ref().expect_err("the stream ends with the failure");
    assert_eq!(error.kind, ErrorKind::Connection, "{error:?}");
    assert_eq!(items.iter().filter(|(item, _)| item.is_err()).count(), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1, "no retry after the commit point");
}

#[tokio::test]
async fn an_attempt_without_content_within_the_first_token_timeout_is_retried() {
    let slow = answer(&["late"], Duration::from_secs(3), Duration::ZERO);
    let quick = answer(&["quick"], Duration::ZERO, Duration::ZERO);
    let server = vendor(vec![slow, quick]).await;
    let retry = r#"{"max_retries": 2, "backoff_base_seconds": 0.01, "max_wait_seconds": 0.05, "first_token_timeout_seconds": 0.3}"#;
    let stack = stack(&server.url, retry, None, None).await;
    let started = Instant::now();
    let response = collect(drain(stack.invoke_stream(hi()).await.expect("the retry streams")).await);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(response.content.as_deref(), Some("quick"));
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("2"));
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    // The abandoned attempt's connection was closed: the vendor stopped writing it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.tally.dropped.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn every_attempt_timing_out_fails_with_a_timeout_error() {
    let server = vendor(vec![answer(&["late"], Duration::from_secs(3), Duration::ZERO)]).await;
    let retry = r#"{"max_retries": 1, "backoff_base_seconds": 0.01, "first_token_timeout_seconds": 0.2}"#;
    let stack = stack(&server.url, retry, None, None).await;
    let error = match stack.invoke_stream(hi()).await {
        Err(error) => error,
        Ok(_) => panic!("no attempt delivered content in time"),
    };
    assert_eq!(error.kind, ErrorKind::Timeout, "{error:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection_to_the_vendor() {
    let words: Vec<String> = (0..100).map(|i| format!(" w{i}")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let server = vendor(vec![answer(&words, Duration::ZERO, Duration::from_millis(30))]).await;
    let stack = stack(&server.url, RETRY, None, None).await;
    let mut stream = stack.invoke_stream(hi()).await.unwrap();
    let mut seen = 0;
    while seen < 3 {
        if let Some(Ok(StreamEvent::TextDelta(_))) = stream.next().await {
            seen += 1;
        }
    }
    drop(stream);
    let dropped_at = Instant::now();
    while server.tally.dropped.load(Ordering::SeqCst) == 0 {
        assert!(dropped_at.elapsed() < Duration::from_secs(2), "the vendor never saw the caller go");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = server.tally.sent.load(Ordering::SeqCst);
    assert!(sent < 20, "the vendor wrote {sent} of 103 chunks");
}

#[tokio::test]
async fn a_0_2_layer_in_a_streaming_call_answers_whole_and_the_rest_still_streams_around_it() {
    let words = ["one", " two", " three"];
    let server = vendor(vec![answer(&words, Duration::ZERO, Duration::from_millis(150))]).await;
    let stack = stack(&server.url, RETRY, None, Some(fixtures::TAG_V0_2)).await;
    let items = drain(stack.invoke_stream(hi()).await.unwrap()).await;
    // Beneath the 0.2 layer the call is buffered: the first event comes only once the
    // vendor has finished, and the text as one piece.
    let last_sent = server.tally.last_sent.lock().unwrap().unwrap();
    assert!(items[0].1 >= last_sent);
    assert_eq!(texts(&items), ["one two three"]);
    let response = collect(items);
    assert_eq!(response.metadata_value("tag-v0-2"), Some("{}"));
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("testvendor"));
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("1"));
}

#[tokio::test]
async fn what_modules_hand_the_host_in_splices_is_bounded_per_call() {
    let rt = Runtime::builder().max_stream_splices_per_call(1000, 1 << 20).build().unwrap();
    let load = |config: Value| {
        let rt = rt.clone();
        async move {
            rt.load_module("flood", arcllm::runtime::ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config)
                .await
                .unwrap()
        }
    };
    let inner = ScriptedProvider::ok("anthropic");
    // 64 KiB events, 100 of them: 6.4 MiB held by the host for one call, without a bound.
    let module = load(json!({"mode": "splice-flood", "size": 64 << 10, "count": 100})).await;
    let stack = Stack::new(rt.clone(), vec![module], inner.clone());
    let error = match stack.invoke_stream(hi()).await {
        Err(error) => error,
        Ok(_) => panic!("the module is stopped"),
    };
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "flood"), "{error:?}");
    assert!(error.message.contains("stream events"), "{error:?}");
    // Within the bound, the spliced stream is the answer.
    let module = load(json!({"mode": "splice-flood", "size": 10, "count": 3})).await;
    let stack = Stack::new(rt.clone(), vec![module], inner);
    let items = drain(stack.invoke_stream(hi()).await.unwrap()).await;
    assert_eq!(texts(&items), ["xxxxxxxxxx"]);
}
