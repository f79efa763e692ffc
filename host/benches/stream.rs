//! The cost of reading a streamed answer: a 1,000-event SSE body, held in memory and fed in
//! 4 KiB reads (as a socket delivers it), through each adapter's SSE framing and mapping
//! (`arcllm::adapters::SseReplay`) into `StreamEvent`s. No network: this is the adapter's
//! own per-event cost, the floor under any streaming stack.
//!
//! Criterion reports the time per 1,000-event body and the throughput in events per
//! second; per-event cost is the former divided by 1,000.
//!
//! Group `stream_stack` puts the same parsing under the production stack: an in-process
//! provider whose `invoke_stream` parses the body (in 4 KiB reads, as the adapter reads a
//! socket) and yields its events, called bare (`native_*`) and through
//! `retry(fallback(provider))` (`retry_fallback_*`), in the same run. `*_1000` reads the
//! whole stream; `*_first` is the time to the first event (`invoke_stream`, one `next`) of
//! a provider that hands out events parsed beforehand (so parsing the body does not hide
//! the stack's part),
//! the stack's part of which is instantiating both layers, their `invoke-stream` calls and
//! the pull up to the commit point (`retry_fallback_shared_first`: the same with
//! `share_state`, where a call reuses an idle store). `*_first` times each call from
//! `invoke_stream` to its first event, as the caller waits for it; dropping the call's
//! instances, which the stack leaves to a task of its own, runs between calls untimed.
//! `retry_fallback_first_call` times calls back to back with that teardown included: what
//! a call costs in CPU rather than in waiting. The difference per event, and at the first event, is
//! what the stack adds; the summary printed at the end gives both against the targets
//! (≤ 2 µs per event, ≤ 100 µs to the first event).

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arcllm::adapters::SseReplay;
use arcllm::providers::{ConfigSource, ProviderConfig};
use arcllm::stream::{EventStream, StreamEvent};
use arcllm::types::{Error, Request, Response};
use arcllm::Provider;
use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;

const EVENTS: usize = 1000;
const READ: usize = 4 << 10;

/// A Chat Completions stream of `EVENTS` chunks: role, text deltas, finish, usage, `[DONE]`.
fn openai_body() -> Vec<u8> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\"model\":\"gpt-4.1-2025-04-14\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
        )
    };
    let mut body = chunk(r#"{"role":"assistant","content":"","refusal":null}"#, "null");
    for i in 0..EVENTS - 4 {
        body.push_str(&chunk(&format!(r#"{{"content":" token{i}"}}"#), "null"));
    }
    body.push_str(&chunk("{}", "\"stop\""));
    body.push_str("data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":996,\"total_tokens\":1015}}\n\n");
    body.push_str("data: [DONE]\n\n");
    body.into_bytes()
}

/// A Messages stream of `EVENTS` events: start, one text block of deltas (a ping among
/// them), delta, stop.
fn anthropic_body() -> Vec<u8> {
    let mut body = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":19,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
         event: ping\ndata: {\"type\": \"ping\"}\n\n",
    );
    for i in 0..EVENTS - 6 {
        body.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" token{i}\"}}}}\n\n"
        ));
    }
    body.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":994}}\n\n\
         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    body.into_bytes()
}

fn replay(format: &str) -> SseReplay {
    let toml = format!(
        "[provider]\napi_format = \"{format}\"\nbase_url = \"http://127.0.0.1:9\"\ndefault_model = \"bench-model\"\napi_key_required = false\n"
    );
    let config =
        ProviderConfig::parse("bench", &toml, ConfigSource::Inline("bench".into())).expect("provider file");
    SseReplay::new(&config, None).expect("replay")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_parse");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (name, format, body) in [
        ("openai_1000", "openai-chat", openai_body()),
        ("anthropic_1000", "anthropic-messages", anthropic_body()),
    ] {
        let replay = replay(format);
        // Every event maps, none fails.
        let items = replay.replay(body.chunks(READ));
        assert!(items.iter().all(Result::is_ok), "{name}: {:?}", items.iter().find(|i| i.is_err()));
        assert!(items.len() >= EVENTS - 6, "{name}: {} events", items.len());
        group.bench_function(name, |b| b.iter(|| black_box(replay.replay(black_box(&body).chunks(READ)))));
    }
    group.finish();
}

/// A provider that streams a body held in memory through an adapter's SSE reading
/// (`parsed: None`), or yields events parsed beforehand, one clone per event as the caller
/// pulls it (`parsed: Some`), so that the time to the first event is not the time to parse
/// the whole body.
struct ReplayProvider {
    replay: SseReplay,
    body: Vec<u8>,
    parsed: Option<Arc<Vec<Result<StreamEvent, Error>>>>,
}

#[async_trait]
impl Provider for ReplayProvider {
    async fn invoke(&self, _request: Request) -> Result<Response, Error> {
        unreachable!("the stream bench calls invoke_stream only")
    }
    async fn invoke_stream(&self, _request: Request) -> Result<EventStream, Error> {
        if let Some(parsed) = &self.parsed {
            let parsed = parsed.clone();
            return Ok(Box::pin(futures_util::stream::iter(
                (0..parsed.len()).map(move |i| parsed[i].clone()),
            )));
        }
        let items = self.replay.replay(self.body.chunks(READ));
        Ok(Box::pin(futures_util::stream::iter(items)))
    }
    fn name(&self) -> &str {
        "bench"
    }
    fn model_name(&self) -> &str {
        "bench-model"
    }
}

async fn drain(provider: &dyn Provider) -> usize {
    let mut stream = provider.invoke_stream(Request::new(vec![])).await.expect("stream");
    let mut count = 0;
    while let Some(item) = stream.next().await {
        item.expect("event");
        count += 1;
    }
    count
}

async fn first(provider: &dyn Provider) {
    let mut stream = provider.invoke_stream(Request::new(vec![])).await.expect("stream");
    black_box(stream.next().await.expect("an event").expect("event"));
}

/// The time to the first event as a caller sees it, `iters` calls one after another: from
/// `invoke_stream` to the first event. What the stack defers past that point (dropping the
/// call's instances, in a task of its own) runs between calls, outside the timed part;
/// `first` times it too.
async fn first_latency(provider: &dyn Provider, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let mut stream = provider.invoke_stream(Request::new(vec![])).await.expect("stream");
        black_box(stream.next().await.expect("an event").expect("event"));
        total += start.elapsed();
        drop(stream);
        tokio::task::yield_now().await;
    }
    total
}

fn bench_stack(c: &mut Criterion) {
    let started = SystemTime::now();
    let rt = common::tokio_current_thread();
    let parsing: Arc<dyn Provider> =
        Arc::new(ReplayProvider { replay: replay("openai-chat"), body: openai_body(), parsed: None });
    let parsed = Arc::new(replay("openai-chat").replay(openai_body().chunks(READ)));
    let lazy: Arc<dyn Provider> =
        Arc::new(ReplayProvider { replay: replay("openai-chat"), body: Vec::new(), parsed: Some(parsed) });
    // Fresh instances for every call; and, for the `share_state` stack, a runtime that keeps
    // idle stores (without one, `share_state` has nothing to reuse).
    let (runtime, reusing) = (common::runtime(true, 100, false), common::runtime(true, 100, true));
    let stack = |inner: &Arc<dyn Provider>, share: bool| -> Arc<dyn Provider> {
        let runtime = if share { &reusing } else { &runtime };
        Arc::new(rt.block_on(common::retry_fallback_chain(runtime, inner.clone(), share)))
    };
    let (parsing_stack, lazy_stack) = (stack(&parsing, false), stack(&lazy, false));
    let shared_stack = stack(&lazy, true);
    let events = rt.block_on(drain(&*parsing));
    assert_eq!(rt.block_on(drain(&*parsing_stack)), events, "the stack hands on every event");
    let mut group = c.benchmark_group("stream_stack");
    for (name, whole, lazy) in [("native", &parsing, &lazy), ("retry_fallback", &parsing_stack, &lazy_stack)]
    {
        group.throughput(Throughput::Elements(events as u64));
        group.bench_function(format!("{name}_1000"), |b| b.to_async(&rt).iter(|| drain(&**whole)));
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}_first"), |b| {
            b.to_async(&rt).iter_custom(|iters| first_latency(&**lazy, iters))
        });
    }
    // The whole call to the first event, teardown of its instances included: its CPU cost.
    group.bench_function("retry_fallback_first_call", |b| b.to_async(&rt).iter(|| first(&*lazy_stack)));
    // With share_state, a call reuses an idle store instead of instantiating both layers.
    group.bench_function("retry_fallback_shared_first", |b| {
        b.to_async(&rt).iter_custom(|iters| first_latency(&*shared_stack, iters))
    });
    group.finish();
    let get = |function: &str| common::estimate(started, "stream_stack", function, None).map(|e| e.us());
    if let (Some(native_all), Some(stack_all), Some(native_first), Some(stack_first)) =
        (get("native_1000"), get("retry_fallback_1000"), get("native_first"), get("retry_fallback_first"))
    {
        // Per event: what the stack adds to a whole stream, minus what it adds before the
        // first event, spread over the events.
        let per_event = ((stack_all - native_all) - (stack_first - native_first)) / events as f64;
        let ttfe = stack_first - native_first;
        println!("\nstream through retry(fallback(adapter)), {events} events ({}):", common::machine_load());
        println!(
            "  whole stream: native {} us, stack {} us ({:.2}x); per event added: {:.3} us (target <= 2 us: {})",
            common::us(native_all),
            common::us(stack_all),
            stack_all / native_all,
            per_event,
            common::verdict(per_event <= 2.0)
        );
        println!(
            "  first event: native {} us, stack {} us; added: {} us (target <= 100 us: {})",
            common::us(native_first),
            common::us(stack_first),
            common::us(ttfe),
            common::verdict(ttfe <= 100.0)
        );
        if let Some(call) = get("retry_fallback_first_call") {
            println!(
                "  whole call to the first event, teardown of its instances included (CPU per call): stack {} us",
                common::us(call)
            );
        }
        if let Some(shared_first) = get("retry_fallback_shared_first") {
            println!(
                "  first event with share_state (idle stores reused): stack {} us; added: {} us (target <= 100 us: {})",
                common::us(shared_first),
                common::us(shared_first - native_first),
                common::verdict(shared_first - native_first <= 100.0)
            );
        }
    }
}

criterion_group! {
    name = stack;
    config = common::criterion();
    targets = bench_stack
}
criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches, stack);
