//! Benchmark 4 (docs/benchmarks.md): the stack's share of a loopback HTTP round trip.
//!
//! A stub OpenAI-compatible server (axum, 127.0.0.1, its own thread and runtime) answers
//! every POST with the same chat completion. Against it, in the same run:
//! - `reqwest_raw`: a bare reqwest POST of the very bytes the adapter sends (recorded from
//!   an adapter call), reading the whole answer: the network floor;
//! - `adapter_direct`: the native OpenAI adapter (`arcllm::adapters::build`), which also
//!   encodes the request and decodes the answer;
//! - `retry_fallback`: the production stack `retry(fallback(adapter))` around that adapter.
//!
//! Measured in wall time (group `http`) and in the whole process's CPU time (group
//! `http_cpu`: client, stub server and kernel networking together, i.e. all the work of a
//! round trip), since a machine shared with other jobs inflates wall time.

mod common;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arcllm::providers::{ConfigSource, ProviderConfig};
use arcllm::Provider;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use common::{bench_async, estimate, us, verdict, Clock};
use criterion::BenchmarkId;

const GROUP: &str = "http";
const SIZES: [(&str, usize); 2] = [("1KiB", 1 << 10), ("64KiB", 64 << 10)];
const VARIANTS: [&str; 3] = ["reqwest_raw", "adapter_direct", "retry_fallback"];
const CLOCKS: [Clock; 2] = [Clock::Wall, Clock::ProcessCpu];

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"The answer is 42."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18}}"#;

/// The last request body the stub received.
type LastBody = Arc<Mutex<Option<Bytes>>>;

async fn complete(
    State(last): State<LastBody>,
    body: Bytes,
) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    *last.lock().unwrap() = Some(body);
    ([(CONTENT_TYPE, "application/json")], COMPLETION)
}

/// Starts the stub on its own thread; returns its base URL and where it records bodies.
fn start_stub() -> (String, LastBody) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let last = LastBody::default();
    let state = last.clone();
    std::thread::Builder::new()
        .name("stub-server".into())
        .spawn(move || {
            let rt = common::tokio_current_thread();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new()
                    .route("/v1/chat/completions", axum::routing::post(complete))
                    .with_state(state);
                axum::serve(listener, app).await.expect("serve");
            })
        })
        .expect("server thread");
    (url, last)
}

fn main() {
    let started = SystemTime::now();
    let load_before = common::machine_load();
    let mut criterion = common::criterion();
    let (url, last_body) = start_stub();
    let config = ProviderConfig::parse(
        "stub",
        &format!(
            "[provider]\napi_format = \"openai-chat\"\nbase_url = \"{url}\"\napi_key_required = false\ndefault_model = \"m\"\n"
        ),
        ConfigSource::Inline("bench".into()),
    )
    .expect("provider config");
    // Building the adapter also installs rustls' crypto provider, which the raw client needs.
    let adapter = arcllm::adapters::build(&config, None).expect("adapter");
    let raw = reqwest::Client::builder().build().expect("client");
    let endpoint = format!("{url}/v1/chat/completions");
    let rt = common::tokio_current_thread();
    let runtime = common::runtime(true, 4096, true);
    let stack = rt.block_on(common::retry_fallback_chain(&runtime, adapter.clone(), false));
    let cases: Vec<_> = SIZES
        .iter()
        .map(|&(label, bytes)| {
            let request = common::request_of_size(bytes, "bench");
            // One adapter call records the exact body the raw baseline re-sends.
            let answer = rt.block_on(adapter.invoke(request.clone())).expect("adapter call");
            assert_eq!(answer.content.as_deref(), Some("The answer is 42."));
            let body = last_body.lock().unwrap().clone().expect("recorded body");
            let answer = rt.block_on(stack.invoke(request.clone())).expect("stack call");
            assert_eq!(answer.content.as_deref(), Some("The answer is 42."));
            (label, request, body)
        })
        .collect();

    for clock in CLOCKS {
        let mut group = criterion.benchmark_group(clock.group(GROUP));
        for (label, request, body) in &cases {
            let (raw, endpoint) = (&raw, endpoint.as_str());
            bench_async(&mut group, BenchmarkId::new("reqwest_raw", label), &rt, clock, || async move {
                let response = raw
                    .post(endpoint)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("send");
                assert!(response.status().is_success());
                response.bytes().await.expect("body")
            });
            let (adapter, stack) = (&adapter, &stack);
            bench_async(&mut group, BenchmarkId::new("adapter_direct", label), &rt, clock, || async move {
                adapter.invoke(request.clone()).await.expect("adapter")
            });
            bench_async(&mut group, BenchmarkId::new("retry_fallback", label), &rt, clock, || async move {
                stack.invoke(request.clone()).await.expect("stack")
            });
        }
        group.finish();
    }
    criterion.final_summary();
    summary(started, &load_before);
}

fn summary(started: SystemTime, load_before: &str) {
    let get = |clock: Clock, v: &str, label: &str| estimate(started, &clock.group(GROUP), v, Some(label));
    println!("\n## Benchmark 4: loopback HTTP round trip (same-run medians)\n");
    println!("Machine: {load_before} at the start, {} at the end.\n", common::machine_load());
    println!("| request | variant | wall µs/call | × reqwest_raw (wall) | × adapter_direct (wall) | process CPU µs/call | × adapter_direct (CPU) |");
    println!("|---|---|---|---|---|---|---|");
    let mut shares = Vec::new();
    for (label, _) in SIZES {
        let ratio = |e: Option<common::Estimate>, base: Option<common::Estimate>| match (e, base) {
            (Some(e), Some(b)) => format!("{:.3}×", e.median_ns / b.median_ns),
            _ => "–".into(),
        };
        let show = |e: Option<common::Estimate>| e.map(|e| us(e.us())).unwrap_or_else(|| "–".into());
        for variant in VARIANTS {
            let (wall, cpu) = (get(Clock::Wall, variant, label), get(Clock::ProcessCpu, variant, label));
            println!(
                "| {label} | {variant} | {} | {} | {} | {} | {} |",
                show(wall),
                ratio(wall, get(Clock::Wall, "reqwest_raw", label)),
                ratio(wall, get(Clock::Wall, "adapter_direct", label)),
                show(cpu),
                ratio(cpu, get(Clock::ProcessCpu, "adapter_direct", label)),
            );
        }
        for clock in CLOCKS {
            if let (Some(direct), Some(stack)) =
                (get(clock, "adapter_direct", label), get(clock, "retry_fallback", label))
            {
                let extra = stack.us() - direct.us();
                shares.push((clock, label, extra, 100.0 * extra / stack.us()));
            }
        }
    }
    println!("\nThe stack's share of the round trip, (retry_fallback − adapter_direct) / retry_fallback:");
    for (clock, label, extra, share) in &shares {
        println!("- {label}, {clock:?}: +{} µs, {share:.1}%", us(*extra));
    }
    for (clock, label, _, share) in &shares {
        if *label == "1KiB" {
            println!(
                "\nTarget: the full retry(fallback) stack ≤ 2% of a loopback round trip (1 KiB, {clock:?}): {share:.1}% → {}",
                verdict(*share <= 2.0)
            );
        }
    }
}
