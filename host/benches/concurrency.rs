//! Benchmark 5 (docs/benchmarks.md): 1,000 concurrent invokes, each failing twice and
//! retried with real backoff sleeps, on a tokio multi-thread runtime with one worker per
//! core.
//!
//! The stack is `retry(adapter)` (and then `retry(fallback(adapter))`) with
//! `backoff_base_seconds = 0.05` and a zero random source, so each call waits exactly
//! 0.05 s then 0.10 s: the ideal wall time of the whole batch is 0.15 s. The adapter fails
//! the first two attempts of every request (keyed by a tag in the request) with a
//! retryable HTTP 503, then answers. Measured per round: wall time against that ideal, and
//! peak resident memory (`VmHWM`, reset before the round) above the resident size just
//! before it, divided by the calls in flight.
//!
//! Not a criterion bench (one round is a 1,000-call batch, not a sample of a fast
//! operation): it prints its figures. `cargo bench` runs it with the others.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcllm::runtime::{RandomSource, Runtime, Stack};
use arcllm::types::{Content, Error, Request, Response};
use arcllm::Provider;
use async_trait::async_trait;
use common::{us, verdict, Clock};

const CALLS: usize = 1000;
const BASE_SECONDS: f64 = 0.05;
const FAILURES: u32 = 2;
const ROUNDS: usize = 5;
const MIB: f64 = (1 << 20) as f64;

/// Fails the first `FAILURES` attempts of each request with a retryable 503, then answers.
struct Flaky {
    attempts: Mutex<HashMap<String, u32>>,
    response: Response,
}

#[async_trait]
impl Provider for Flaky {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        let key = match &request.messages[1].content {
            Content::Text(text) => text.split('|').next().unwrap_or_default().to_string(),
            Content::Blocks(_) => String::new(),
        };
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        if attempt <= FAILURES {
            Err(Error::api("flaky", 503, "HTTP 503 Service Unavailable: overloaded"))
        } else {
            Ok(self.response.clone())
        }
    }
    fn name(&self) -> &str {
        "flaky"
    }
    fn model_name(&self) -> &str {
        "flaky-model"
    }
}

struct RoundResult {
    wall: Duration,
    /// CPU time the whole process used during the round.
    cpu: Duration,
    ok: usize,
    errors: Vec<Error>,
    p50: Duration,
    max: Duration,
    baseline_rss: u64,
    peak_rss: u64,
}

/// Sends `CALLS` distinct 1 KiB requests through `stack` at once and waits for all.
async fn round(stack: &Stack, tag: &str) -> RoundResult {
    let requests: Vec<Request> =
        (0..CALLS).map(|i| common::request_of_size(1 << 10, &format!("{tag}-{i}|"))).collect();
    common::reset_peak_rss();
    let baseline_rss = common::proc_status_bytes("VmRSS").unwrap_or(0);
    let cpu_started = Clock::ProcessCpu.now();
    let started = Instant::now();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let stack = stack.clone();
            tokio::spawn(async move {
                let result = stack.invoke(request).await;
                (result, started.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(CALLS);
    let (mut ok, mut errors) = (0, Vec::new());
    for task in tasks {
        let (result, latency) = task.await.expect("task");
        latencies.push(latency);
        match result {
            Ok(response) => {
                assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("3"));
                ok += 1;
            }
            Err(e) => errors.push(e),
        }
    }
    let wall = started.elapsed();
    let cpu = Clock::ProcessCpu.now() - cpu_started;
    let peak_rss = common::proc_status_bytes("VmHWM").unwrap_or(0);
    latencies.sort();
    RoundResult {
        wall,
        cpu,
        ok,
        errors,
        p50: latencies[CALLS / 2],
        max: latencies[CALLS - 1],
        baseline_rss,
        peak_rss,
    }
}

async fn stack(runtime: &Runtime, fallback: bool, adapter: Arc<dyn Provider>) -> Stack {
    let retry_table = serde_json::json!({ "backoff_base_seconds": BASE_SECONDS, "max_retries": 3 });
    let mut modules = vec![common::builtin(runtime, "retry", retry_table).await];
    if fallback {
        modules.push(common::builtin(runtime, "fallback", serde_json::json!({ "chain": [] })).await);
    }
    Stack::new(runtime.clone(), modules, adapter).with_random(RandomSource::repeating(vec![0]))
}

fn flaky() -> Arc<dyn Provider> {
    Arc::new(Flaky { attempts: Mutex::new(HashMap::new()), response: common::canned_response() })
}

fn main() {
    // `cargo bench -- <filter>` passes the filter to every bench binary: honour it.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "concurrency".contains(f.as_str())) {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("tokio");
    let ideal = Duration::from_secs_f64(BASE_SECONDS * (1.0 + 2.0));
    let peak_resettable = common::reset_peak_rss();
    println!(
        "\n## Benchmark 5: {CALLS} concurrent invokes, {FAILURES} retries each ({cores} tokio workers)\n"
    );
    println!("Machine: {} at the start.\n", common::machine_load());
    println!("ideal wall time (the longest backoff path, 0.05 s + 0.10 s): {:.3} s", ideal.as_secs_f64());
    if !peak_resettable {
        println!("warning: /proc/self/clear_refs is not writable; VmHWM is the process's lifetime peak");
    }

    let runtime = common::runtime(true, 4096, true);
    let mut worst: Vec<(&str, f64, f64, usize)> = Vec::new();
    for (name, fallback) in [("retry(adapter)", false), ("retry(fallback(adapter))", true)] {
        let stack = rt.block_on(stack(&runtime, fallback, flaky()));
        println!("\n### {name}\n");
        println!("| round | wall s | × ideal | process CPU s | CPU µs/call | p50 latency s | max latency s | ok | errors | RSS before MiB | peak RSS MiB | MiB per in-flight call |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        let (mut worst_ratio, mut worst_mib, mut total_errors) = (0f64, 0f64, 0);
        for r in 0..ROUNDS {
            let result = rt.block_on(round(&stack, &format!("{}-{r}", if fallback { "rf" } else { "r" })));
            let ratio = result.wall.as_secs_f64() / ideal.as_secs_f64();
            let per_call = result.peak_rss.saturating_sub(result.baseline_rss) as f64 / MIB / CALLS as f64;
            worst_ratio = worst_ratio.max(ratio);
            worst_mib = worst_mib.max(per_call);
            total_errors += result.errors.len();
            println!(
                "| {}{} | {:.3} | {ratio:.2}× | {:.3} | {:.0} | {:.3} | {:.3} | {} | {} | {:.1} | {:.1} | {per_call:.3} |",
                r + 1,
                if r == 0 { " (first)" } else { "" },
                result.wall.as_secs_f64(),
                result.cpu.as_secs_f64(),
                result.cpu.as_secs_f64() * 1e6 / CALLS as f64,
                result.p50.as_secs_f64(),
                result.max.as_secs_f64(),
                result.ok,
                result.errors.len(),
                result.baseline_rss as f64 / MIB,
                result.peak_rss as f64 / MIB,
            );
            if let Some(e) = result.errors.first() {
                println!("  first error: {}", e.summary());
            }
        }
        worst.push((name, worst_ratio, worst_mib, total_errors));
    }

    // What happens when in-flight calls need more instances than the pool holds: the
    // calls beyond it wait for a slot (first come, first served) instead of failing.
    let small = common::runtime(true, 256, true);
    let stack = rt.block_on(stack(&small, false, flaky()));
    let result = rt.block_on(round(&stack, "pool"));
    println!(
        "\n### Pool capacity probe: retry(adapter), {CALLS} concurrent calls, max_instances = 256 (the calls beyond it queue)\n"
    );
    println!(
        "wall {:.3} s, ok {}, errors {}{}",
        result.wall.as_secs_f64(),
        result.ok,
        result.errors.len(),
        result.errors.first().map(|e| format!("; first error: {}", e.summary())).unwrap_or_default()
    );

    println!("\nMachine: {} at the end.", common::machine_load());
    println!("\nTargets ({CALLS} concurrent retrying invokes, worst of {ROUNDS} rounds):");
    for (name, ratio, mib, errors) in worst {
        println!(
            "- {name}: wall ≤ 1.5× ideal: {ratio:.2}× → {}; ≤ 1 MiB resident per in-flight call: {mib:.3} MiB ({} KiB) → {}; errors: {errors}",
            verdict(ratio <= 1.5),
            us(mib * 1024.0),
            verdict(mib <= 1.0)
        );
    }
}
