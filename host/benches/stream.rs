//! The cost of reading a streamed answer: a 1,000-event SSE body, held in memory and fed in
//! 4 KiB reads (as a socket delivers it), through each adapter's SSE framing and mapping
//! (`arcllm::adapters::SseReplay`) into `StreamEvent`s. No network: this is the adapter's
//! own per-event cost, the floor under any streaming stack.
//!
//! Criterion reports the time per 1,000-event body and the throughput in events per
//! second; per-event cost is the former divided by 1,000.

use std::hint::black_box;
use std::time::Duration;

use arcllm::adapters::SseReplay;
use arcllm::providers::{ConfigSource, ProviderConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
