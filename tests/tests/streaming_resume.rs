//! Resuming streamed answers (`resume = true` in retry's and fallback's tables): an answer
//! that fails after its commit point is re-sent with the text delivered so far as an
//! assistant prefix and continued in the same stream. The built-in modules run over real
//! adapters against loopback vendors (OpenAI and Anthropic formats) that check the prefix
//! of every continued request and answer only the rest.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcllm::runtime::{LazyRegistry, Runtime, Stack};
use arcllm::stream::{Collector, EventStream, StreamEvent};
use arcllm::types::{Error, ErrorKind, Message, Request};
use arcllm::Provider;
use arcllm_tests::http::provider_at;
use arcllm_tests::sse::{anthropic_event, openai_chunk, paced, serve, Tally};
use arcllm_tests::*;
use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    OpenAi,
    Anthropic,
}

impl Format {
    fn api_format(self) -> &'static str {
        match self {
            Format::OpenAi => "openai-chat",
            Format::Anthropic => "anthropic-messages",
        }
    }
}

/// How a leg of an answer ends.
#[derive(Clone, Copy, Debug)]
enum End {
    /// The answer completes.
    Finish,
    /// The connection breaks after the last word.
    Cut,
    /// The vendor sends its error event (Anthropic `overloaded_error`, OpenAI an error chunk).
    ErrorEvent,
    /// The answer's stop (OpenAI: the finish chunk and the usage chunk; Anthropic:
    /// `message_delta`) arrives, then the connection breaks before the stream's last frame.
    StopThenCut,
}

/// One request's answer: the assistant prefix the request must end with (`None`: no
/// assistant message at the end), the words streamed, and how the stream ends.
#[derive(Clone)]
struct Leg {
    prefix: Option<&'static str>,
    /// Reasoning streamed before the words (Anthropic format only).
    thinking: Option<&'static str>,
    words: Vec<&'static str>,
    end: End,
}

fn leg(prefix: Option<&'static str>, words: &[&'static str], end: End) -> Leg {
    Leg { prefix, thinking: None, words: words.to_vec(), end }
}

/// A loopback vendor answering request n with leg n, recording every request body.
struct Vendor {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Vendor {
    fn requests(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }
    fn body(&self, n: usize) -> Value {
        self.bodies.lock().unwrap()[n].clone()
    }
}

/// The text of the request's final message when it is the assistant's.
fn assistant_prefix(body: &Value) -> Option<String> {
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

async fn vendor(format: Format, legs: Vec<Leg>) -> Vendor {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let recorded = bodies.clone();
    let count = Arc::new(AtomicUsize::new(0));
    let handler = move |body: Bytes| {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        recorded.lock().unwrap().push(body.clone());
        let n = count.fetch_add(1, Ordering::SeqCst);
        let leg = legs[n.min(legs.len() - 1)].clone();
        async move {
            let found = assistant_prefix(&body);
            if found.as_deref() != leg.prefix {
                // The mock's own assertion: a continued request must carry exactly the text
                // delivered so far (a 400 is never retried, so the test sees it).
                let message =
                    format!("request {n}: expected assistant prefix {:?}, got {found:?}", leg.prefix);
                return axum::response::Response::builder()
                    .status(400)
                    .header("content-type", "application/json")
                    .body(Body::from(json!({"error": {"message": message}}).to_string()))
                    .unwrap();
            }
            let chunks =
                sse(format, &leg).into_iter().map(|chunk| (Duration::from_millis(5), chunk)).collect();
            paced(chunks, matches!(leg.end, End::Cut | End::StopThenCut), Tally::default())
        }
    };
    Vendor { url: serve(handler).await, bodies }
}

/// The SSE chunks of `leg` in the vendor's format.
fn sse(format: Format, leg: &Leg) -> Vec<String> {
    let mut out = Vec::new();
    match format {
        Format::OpenAi => {
            let chunk = openai_chunk;
            out.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            for word in &leg.words {
                out.push(chunk(json!({"content": word}), Value::Null));
            }
            match leg.end {
                End::Finish | End::StopThenCut => {
                    out.push(chunk(json!({}), json!("stop")));
                    let usage = json!({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [],
                        "usage": {"prompt_tokens": 10, "completion_tokens": leg.words.len(),
                                  "total_tokens": 10 + leg.words.len()}});
                    out.push(format!("data: {usage}\n\n"));
                    if matches!(leg.end, End::Finish) {
                        out.push("data: [DONE]\n\n".into());
                    }
                }
                End::ErrorEvent => out.push(format!(
                    "data: {}\n\n",
                    json!({"error": {"message": "the server had an error", "type": "server_error", "code": 500}})
                )),
                End::Cut => {}
            }
        }
        Format::Anthropic => {
            let event = anthropic_event;
            out.push(event(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                    "model": "claude-test", "content": [], "stop_reason": null,
                    "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            ));
            let mut index = 0;
            if let Some(thinking) = leg.thinking {
                out.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                           "content_block": {"type": "thinking", "thinking": ""}}),
                ));
                out.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "thinking_delta", "thinking": thinking}}),
                ));
                out.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
                index = 1;
            }
            out.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                       "content_block": {"type": "text", "text": ""}}),
            ));
            for word in &leg.words {
                out.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "text_delta", "text": word}}),
                ));
            }
            match leg.end {
                End::Finish | End::StopThenCut => {
                    out.push(event(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": index}),
                    ));
                    out.push(event(
                        "message_delta",
                        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                               "usage": {"output_tokens": leg.words.len()}}),
                    ));
                    if matches!(leg.end, End::Finish) {
                        out.push(event("message_stop", json!({"type": "message_stop"})));
                    }
                }
                End::ErrorEvent => out.push(event(
                    "error",
                    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                )),
                End::Cut => {}
            }
        }
    }
    out
}

const FAST: &str = r#""backoff_base_seconds": 0.01, "max_wait_seconds": 0.02"#;

/// `retry(fallback(adapter))` with these tables over the vendor at `primary`; `backup`
/// (format, url) is the provider fallback's chain names `backup`.
async fn make_stack(
    format: Format,
    primary: &str,
    retry: &str,
    fallback: Value,
    backup: Option<(Format, &str)>,
) -> Stack {
    let rt = Runtime::builder().build().expect("runtime");
    let modules = vec![
        builtin(&rt, "retry", serde_json::from_str(retry).unwrap()).await,
        builtin(&rt, "fallback", fallback).await,
    ];
    let stack = Stack::new(rt, modules, provider_at(format.api_format(), primary, ""));
    match backup {
        Some((format, url)) => {
            let url = url.to_string();
            stack.with_registry(Arc::new(LazyRegistry::new(move |_, _| {
                Ok(provider_at(format.api_format(), &url, ""))
            })))
        }
        None => stack,
    }
}

fn question() -> Request {
    Request::new(vec![Message::user("Say the sentence about the fox.")])
}

async fn drain(mut stream: EventStream) -> Vec<Result<StreamEvent, Error>> {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    items
}

fn text(items: &[Result<StreamEvent, Error>]) -> String {
    items
        .iter()
        .filter_map(|item| match item {
            Ok(StreamEvent::TextDelta(text)) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The answer the caller assembles; panics on an error in the stream.
fn collect(items: Vec<Result<StreamEvent, Error>>) -> arcllm::types::Response {
    let mut collector = Collector::new();
    let starts = items.iter().filter(|item| matches!(item, Ok(StreamEvent::MessageStart { .. }))).count();
    assert_eq!(starts, 1, "one message-start, however many legs: {items:?}");
    for item in items {
        collector.push(item.unwrap_or_else(|error| panic!("no error in the stream: {error:?}")));
    }
    assert!(collector.is_complete());
    collector.finish()
}

const SENTENCE: &str = "The quick brown fox jumps over the lazy dog.";
const HEAD: [&str; 3] = ["The", " quick", " brown"];
const TAIL: [&str; 6] = [" fox", " jumps", " over", " the", " lazy", " dog."];

/// The first leg breaks after three words (`end`); the continued request must carry them as
/// the assistant prefix, and its answer is the rest of the sentence.
fn broken_then_continued(end: End) -> Vec<Leg> {
    vec![leg(None, &HEAD, end), leg(Some("The quick brown"), &TAIL, End::Finish)]
}

async fn retry_resumes_the_answer_seamlessly(format: Format, end: End) {
    let server = vendor(format, broken_then_continued(end)).await;
    let retry = format!(r#"{{"max_retries": 2, {FAST}, "resume": true}}"#);
    let stack = make_stack(format, &server.url, &retry, json!({}), None).await;
    let items = drain(stack.invoke_stream(question()).await.expect("the stream starts")).await;
    assert_eq!(text(&items), SENTENCE, "{format:?} {end:?}: no duplicate, no gap");
    assert_eq!(server.requests(), 2);
    // The continued request is the original plus the delivered text as an assistant turn.
    let second = server.body(1);
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{second}");
    assert_eq!(assistant_prefix(&second).as_deref(), Some("The quick brown"));
    assert_eq!(assistant_prefix(&server.body(0)), None);
    let response = collect(items);
    assert_eq!(response.content.as_deref(), Some(SENTENCE));
    assert_eq!(response.metadata_value("arcllm.retry.resumed"), Some("1"));
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("2"));
    // The usage is the continuation's (10 in, one out per word) plus what the broken leg
    // had reported: an OpenAI stream reports nothing before its end, an Anthropic one its
    // input tokens and first output count in `message_start`.
    let tail = TAIL.len() as u64;
    let (input, output) = match format {
        Format::OpenAi => (10, tail),
        Format::Anthropic => (20, 1 + tail),
    };
    assert_eq!((response.usage.input_tokens, response.usage.output_tokens), (input, output), "{format:?}");
    assert_eq!(response.usage.total_tokens, input + output);
}

#[tokio::test]
async fn retry_resumes_an_openai_answer_cut_after_three_events() {
    retry_resumes_the_answer_seamlessly(Format::OpenAi, End::Cut).await;
}

#[tokio::test]
async fn retry_resumes_an_anthropic_answer_cut_after_three_events() {
    retry_resumes_the_answer_seamlessly(Format::Anthropic, End::Cut).await;
}

#[tokio::test]
async fn retry_resumes_after_a_terminal_error_event_from_either_vendor() {
    retry_resumes_the_answer_seamlessly(Format::Anthropic, End::ErrorEvent).await;
    retry_resumes_the_answer_seamlessly(Format::OpenAi, End::ErrorEvent).await;
}

#[tokio::test]
async fn without_resume_the_failure_ends_the_stream_after_the_three_events_and_nothing_is_resent() {
    for format in [Format::OpenAi, Format::Anthropic] {
        let server = vendor(format, broken_then_continued(End::Cut)).await;
        let retry = format!(r#"{{"max_retries": 2, {FAST}}}"#);
        let stack = make_stack(format, &server.url, &retry, json!({"resume": false}), None).await;
        let items = drain(stack.invoke_stream(question()).await.unwrap()).await;
        assert_eq!(text(&items), "The quick brown", "{format:?}");
        let error = items.last().unwrap().as_ref().expect_err("the stream ends with the failure");
        assert_eq!(error.kind, ErrorKind::Connection, "{format:?}: {error:?}");
        assert_eq!(items.iter().filter(|item| item.is_err()).count(), 1);
        assert_eq!(server.requests(), 1, "{format:?}: no second request without resume");
    }
}

#[tokio::test]
async fn fallback_resumes_the_answer_on_the_next_target_of_its_chain() {
    // The primary speaks Anthropic, the backup OpenAI: the prefix crosses vendors.
    let primary = vendor(Format::Anthropic, vec![leg(None, &HEAD, End::Cut)]).await;
    let backup = vendor(Format::OpenAi, vec![leg(Some("The quick brown"), &TAIL, End::Finish)]).await;
    let retry = format!(r#"{{"max_retries": 0, {FAST}}}"#);
    let fallback = json!({"chain": ["backup"], "resume": true});
    let stack =
        make_stack(Format::Anthropic, &primary.url, &retry, fallback, Some((Format::OpenAi, &backup.url)))
            .await;
    let items = drain(stack.invoke_stream(question()).await.unwrap()).await;
    assert_eq!(text(&items), SENTENCE);
    assert_eq!((primary.requests(), backup.requests()), (1, 1));
    let response = collect(items);
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("backup"));
    assert_eq!(response.metadata_value("arcllm.fallback.resumed"), Some("1"));
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("1"));
    // The backup's counts plus the primary's `message_start` report, across vendors.
    let tail = TAIL.len() as u64;
    assert_eq!((response.usage.input_tokens, response.usage.output_tokens), (20, 1 + tail));
}

#[tokio::test]
async fn resuming_is_bounded_by_max_retries_and_what_was_delivered_is_never_repeated() {
    let legs = vec![
        leg(None, &HEAD, End::Cut),
        leg(Some("The quick brown"), &[" fox", " jumps"], End::Cut),
        leg(Some("The quick brown fox jumps"), &[" over", " the", " lazy", " dog."], End::Finish),
    ];
    let server = vendor(Format::Anthropic, legs).await;
    // Two attempts in all: the second break is the answer's end.
    let retry = format!(r#"{{"max_retries": 1, {FAST}, "resume": true}}"#);
    let stack = make_stack(Format::Anthropic, &server.url, &retry, json!({}), None).await;
    let items = drain(stack.invoke_stream(question()).await.unwrap()).await;
    assert_eq!(text(&items), "The quick brown fox jumps");
    assert!(items.last().unwrap().is_err());
    assert_eq!(server.requests(), 2);
    // With a third attempt allowed, the second resumption finishes the sentence.
    let server = vendor(
        Format::Anthropic,
        vec![
            leg(None, &HEAD, End::Cut),
            leg(Some("The quick brown"), &[" fox", " jumps"], End::Cut),
            leg(Some("The quick brown fox jumps"), &[" over", " the", " lazy", " dog."], End::Finish),
        ],
    )
    .await;
    let retry = format!(r#"{{"max_retries": 2, {FAST}, "resume": true}}"#);
    let longer = make_stack(Format::Anthropic, &server.url, &retry, json!({}), None).await;
    let response = collect(drain(longer.invoke_stream(question()).await.unwrap()).await);
    assert_eq!(response.content.as_deref(), Some(SENTENCE));
    assert_eq!(response.metadata_value("arcllm.retry.resumed"), Some("2"));
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("3"));
    assert_eq!(server.requests(), 3);
    // Each broken leg's `message_start` report, then the last leg's own counts.
    assert_eq!((response.usage.input_tokens, response.usage.output_tokens), (30, 1 + 1 + 4));
}

#[tokio::test]
async fn trailing_whitespace_is_held_back_from_the_prefix_and_not_repeated() {
    // Anthropic rejects a final assistant message that ends in whitespace.
    let legs = vec![
        leg(None, &["First", " line.\n\n"], End::Cut),
        leg(Some("First line."), &["\n\nSecond", " line."], End::Finish),
    ];
    let server = vendor(Format::Anthropic, legs).await;
    let retry = format!(r#"{{"max_retries": 2, {FAST}, "resume": true}}"#);
    let stack = make_stack(Format::Anthropic, &server.url, &retry, json!({}), None).await;
    let items = drain(stack.invoke_stream(question()).await.unwrap()).await;
    assert_eq!(text(&items), "First line.\n\nSecond line.");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_caller_prefill_is_extended_not_duplicated() {
    let legs = vec![
        leg(Some("Sure:"), &[" The", " quick", " brown"], End::Cut),
        leg(Some("Sure: The quick brown"), &TAIL, End::Finish),
    ];
    let server = vendor(Format::Anthropic, legs).await;
    let retry = format!(r#"{{"max_retries": 2, {FAST}, "resume": true}}"#);
    let stack = make_stack(Format::Anthropic, &server.url, &retry, json!({}), None).await;
    let mut request = question();
    request.messages.push(Message::assistant("Sure:"));
    let items = drain(stack.invoke_stream(request).await.unwrap()).await;
    assert_eq!(text(&items), " The quick brown fox jumps over the lazy dog.");
    assert_eq!(server.body(1)["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn resume_is_validated_like_every_other_key() {
    let rt = Runtime::builder().build().expect("runtime");
    for (module, table) in [("retry", json!({"resume": "yes"})), ("fallback", json!({"resume": 1}))] {
        let bytes = arcllm::builtin::get(module).unwrap();
        let error = rt
            .load_module(module, arcllm::runtime::ModuleSource::Builtin, bytes.to_vec(), &table)
            .await
            .expect_err("a non-boolean resume is refused");
        assert!(error.to_string().contains("resume must be true or false"), "{module}: {error}");
    }
}

#[tokio::test]
async fn an_answer_that_delivered_thinking_is_not_resumed() {
    // Reasoning cannot be continued by a prefix: the failure ends the stream.
    let mut first = leg(None, &HEAD, End::Cut);
    first.thinking = Some("Let me think.");
    let server =
        vendor(Format::Anthropic, vec![first, leg(Some("The quick brown"), &TAIL, End::Finish)]).await;
    let retry = format!(r#"{{"max_retries": 2, {FAST}, "resume": true}}"#);
    let stack = make_stack(Format::Anthropic, &server.url, &retry, json!({}), None).await;
    let items = drain(stack.invoke_stream(question()).await.unwrap()).await;
    assert!(items.iter().any(|item| matches!(item, Ok(StreamEvent::ThinkingDelta(_)))));
    assert_eq!(text(&items), "The quick brown");
    let error = items.last().unwrap().as_ref().expect_err("the stream ends with the failure");
    assert_eq!(error.kind, ErrorKind::Connection, "{error:?}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn an_answer_that_delivered_its_stop_is_not_resumed() {
    // Whole by the vendor's own account (it named the stop reason; only the stream's last
    // frame is missing): it ends normally, and a continuation could only add to it.
    for format in [Format::OpenAi, Format::Anthropic] {
        let server = vendor(
            format,
            vec![leg(None, &HEAD, End::StopThenCut), leg(Some("The quick brown"), &TAIL, End::Finish)],
        )
        .await;
        let retry = format!(r#"{{"max_retries": 2, {FAST}, "resume": true}}"#);
        let stack = make_stack(format, &server.url, &retry, json!({"resume": true}), None).await;
        let items = drain(stack.invoke_stream(question()).await.unwrap()).await;
        assert_eq!(text(&items), "The quick brown", "{format:?}");
        assert!(
            items.iter().any(|item| matches!(item, Ok(StreamEvent::Stop { .. }))),
            "{format:?}: the stop was delivered: {items:?}"
        );
        assert!(items.iter().all(Result::is_ok), "{format:?}: the answer is whole: {items:?}");
        assert_eq!(server.requests(), 1, "{format:?}: nothing resent after the stop");
    }
}
