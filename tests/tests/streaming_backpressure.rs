//! Backpressure through a stack: a consumer that stops reading holds the vendor back, so
//! the host never buffers more of a stream than the sockets between them hold.
//!
//! A loopback vendor writes a long OpenAI-format answer as fast as its socket takes it,
//! through `retry(fallback(adapter))` of the built-in modules. The consumer reads the first
//! event and then nothing for a while: the vendor's writes must stall at about the size of
//! the sockets' buffers (far below the answer's size), and afterwards every event must
//! arrive, in order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arcllm::runtime::{Runtime, Stack};
use arcllm::stream::StreamEvent;
use arcllm::types::{Message, Request};
use arcllm::Provider;
use arcllm_tests::http::provider_at;
use arcllm_tests::sse::{event_stream, openai_chunk, serve};
use arcllm_tests::*;
use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use serde_json::json;

/// Text bytes per event.
const PIECE: usize = 32 << 10;

/// The text of event `i`: its number, then padding.
fn piece(i: usize) -> String {
    let mut text = format!("{i:08}");
    text.extend(std::iter::repeat_n('x', PIECE - text.len()));
    text
}

/// The most a Linux TCP connection's two sockets hold (the receiver's `tcp_rmem` and the
/// sender's `tcp_wmem` maxima), as the kernel says.
fn socket_buffers_max() -> Option<usize> {
    let max = |path: &str| -> Option<usize> {
        std::fs::read_to_string(path).ok()?.split_whitespace().nth(2)?.parse().ok()
    };
    Some(max("/proc/sys/net/ipv4/tcp_rmem")? + max("/proc/sys/net/ipv4/tcp_wmem")?)
}

/// A vendor streaming `events` text events as fast as its socket takes them; `written`
/// counts the bytes its body handed the server (each piece is made only when asked for).
async fn firehose(events: usize, written: Arc<AtomicUsize>) -> String {
    let handler = move || {
        let written = written.clone();
        async move {
            let chunk = |delta, finish| Bytes::from(openai_chunk(delta, finish));
            let start = chunk(json!({"role": "assistant", "content": ""}), serde_json::Value::Null);
            let body = futures_util::stream::unfold(0usize, move |i| {
                let written = written.clone();
                let start = start.clone();
                async move {
                    let bytes = match i {
                        0 => start,
                        i if i <= events => chunk(json!({"content": piece(i - 1)}), serde_json::Value::Null),
                        i if i == events + 1 => chunk(json!({}), json!("stop")),
                        i if i == events + 2 => Bytes::from_static(b"data: [DONE]\n\n"),
                        _ => return None,
                    };
                    written.fetch_add(bytes.len(), Ordering::SeqCst);
                    Some((Ok::<_, std::io::Error>(bytes), i + 1))
                }
            });
            event_stream(Body::from_stream(body))
        }
    };
    serve(handler).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_stalls_the_vendor_at_the_socket_buffers() {
    let Some(buffers) = socket_buffers_max() else {
        eprintln!(
            "SKIPPED: /proc/sys/net/ipv4/tcp_{{r,w}}mem unreadable: not Linux, no bound to compare with"
        );
        return;
    };
    // What may sit between the vendor and the caller: both sockets, and the HTTP layers'
    // read and write buffers (a few pieces).
    let bound = buffers + 8 * PIECE;
    // An answer four times that, so that buffering it whole could not pass for a stall.
    let events = (4 * bound).div_ceil(PIECE);
    let written = Arc::new(AtomicUsize::new(0));
    let url = firehose(events, written.clone()).await;
    let rt = Runtime::builder().build().expect("runtime");
    let modules = vec![
        builtin(&rt, "retry", json!({"max_retries": 1})).await,
        builtin(&rt, "fallback", json!({})).await,
    ];
    let stack = Stack::new(rt, modules, provider_at("openai-chat", &url, ""));
    let mut stream = stack.invoke_stream(Request::new(vec![Message::user("hi")])).await.expect("the stream");
    // The commit point: retry and fallback have handed the stream on.
    loop {
        match stream.next().await.expect("an event").expect("no error") {
            StreamEvent::TextDelta(text) => {
                assert_eq!(text, piece(0));
                break;
            }
            StreamEvent::MessageStart { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The consumer reads nothing for a while; the vendor writes until the sockets are full.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let early = written.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = written.load(Ordering::SeqCst);
    let total = events * PIECE;
    assert!(
        stalled <= bound,
        "the vendor wrote {stalled} bytes of {total} while nobody read: more than the {bound} bytes the \
         sockets and HTTP buffers hold, so the host buffered the stream"
    );
    assert_eq!(early, stalled, "the vendor's writes did not stall (wrote {early}, then {stalled} bytes)");
    eprintln!("the vendor stalled after {stalled} bytes of {total} (bound {bound})");
    // Then every event arrives, in order.
    let mut next = 1;
    let mut stopped = false;
    while let Some(item) = stream.next().await {
        match item.expect("no error") {
            StreamEvent::TextDelta(text) => {
                assert!(text == piece(next), "event {next} out of order or damaged");
                next += 1;
            }
            StreamEvent::Stop { .. } => stopped = true,
            StreamEvent::Usage(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(stopped);
    assert_eq!(next, events, "every event arrived");
}
