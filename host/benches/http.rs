//! Benchmark 4 (docs/benchmarks.md): the chain's share of a loopback HTTP round trip.
//!
//! A stub OpenAI-compatible server (axum, 127.0.0.1, its own thread and runtime) answers
//! every POST with the same chat completion. Against it, in the same run:
//! - `reqwest_raw`: a bare reqwest POST of the very bytes the adapter sends (recorded from
//!   an adapter call), reading the whole answer: the network floor;
//! - `adapter_direct`: the native OpenAI adapter (`arcllm::adapters::build`), which also
//!   encodes the request and decodes the answer;
//! - `retry_fallback`: the production chain `retry(fallback(adapter))` around that adapter.

mod common;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arcllm::providers::{ConfigSource, ProviderConfig};
use arcllm::Provider;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use common::{estimate, us, verdict};

const GROUP: &str = "http";
const SIZES: [(&str, usize); 2] = [("1KiB", 1 << 10), ("64KiB", 64 << 10)];
const VARIANTS: [&str; 3] = ["reqwest_raw", "adapter_direct", "retry_fallback"];

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"The answer is 42."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18}}"#;

/// The last request body the stub received.
type LastBody = Arc<Mutex<Option<Bytes>>>;

async fn complete(State(last): State<LastBody>, body: Bytes) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
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
    let runtime = common::runtime(true, 4096);
    let chain = rt.block_on(common::retry_fallback_chain(&runtime, adapter.clone()));

    let mut group = criterion.benchmark_group(GROUP);
    for (label, bytes) in SIZES {
        let request = common::request_of_size(bytes, "bench");
        // One adapter call records the exact body the raw baseline re-sends.
        let answer = rt.block_on(adapter.invoke(request.clone())).expect("adapter call");
        assert_eq!(answer.content.as_deref(), Some("The answer is 42."));
        let body = last_body.lock().unwrap().clone().expect("recorded body");
        let answer = rt.block_on(chain.invoke(request.clone())).expect("chain call");
        assert_eq!(answer.content.as_deref(), Some("The answer is 42."));

        let (raw, endpoint, body) = (&raw, endpoint.as_str(), &body);
        group.bench_function(criterion::BenchmarkId::new("reqwest_raw", label), |b| {
            b.to_async(&rt).iter(|| async move {
                let response = raw
                    .post(endpoint)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("send");
                assert!(response.status().is_success());
                response.bytes().await.expect("body")
            })
        });
        let (adapter, chain, request) = (&adapter, &chain, &request);
        group.bench_function(criterion::BenchmarkId::new("adapter_direct", label), |b| {
            b.to_async(&rt).iter(|| async move { adapter.invoke(request.clone()).await.expect("adapter") })
        });
        group.bench_function(criterion::BenchmarkId::new("retry_fallback", label), |b| {
            b.to_async(&rt).iter(|| async move { chain.invoke(request.clone()).await.expect("chain") })
        });
    }
    group.finish();
    criterion.final_summary();
    summary(started);
}

fn summary(started: SystemTime) {
    println!("\n## Benchmark 4: loopback HTTP round trip (same-run medians)\n");
    println!("| request | variant | µs/call (95% CI of median) | × reqwest_raw | × adapter_direct |");
    println!("|---|---|---|---|---|");
    let mut shares = Vec::new();
    for (label, _) in SIZES {
        let get = |v: &str| estimate(started, GROUP, v, Some(label));
        let (raw, direct) = (get("reqwest_raw"), get("adapter_direct"));
        for variant in VARIANTS {
            let Some(e) = get(variant) else { continue };
            let ratio = |base: Option<common::Estimate>| {
                base.map(|b| format!("{:.3}×", e.median_ns / b.median_ns)).unwrap_or_else(|| "–".into())
            };
            println!(
                "| {label} | {variant} | {} ({}–{}) | {} | {} |",
                us(e.us()),
                us(e.low_ns / 1e3),
                us(e.high_ns / 1e3),
                ratio(raw),
                ratio(direct)
            );
        }
        if let (Some(direct), Some(chain)) = (direct, get("retry_fallback")) {
            let extra = chain.us() - direct.us();
            shares.push((label, extra, 100.0 * extra / chain.us()));
        }
    }
    println!("\nThe chain's share of the round trip, (retry_fallback − adapter_direct) / retry_fallback:");
    for (label, extra, share) in &shares {
        println!("- {label}: +{} µs, {share:.1}%", us(*extra));
    }
    if let Some((_, _, share)) = shares.iter().find(|(l, _, _)| *l == "1KiB") {
        println!(
            "\nTarget: the full retry(fallback) chain ≤ 2% of a loopback round trip (1 KiB): {share:.1}% → {}",
            verdict(*share <= 2.0)
        );
    }
}
