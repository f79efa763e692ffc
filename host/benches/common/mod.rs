//! What the benchmarks share: an in-process test adapter, requests of a given size, stack
//! builders, criterion's settings, and the same-run ratio tables printed after each bench.
//!
//! Every bench binary includes this module (`mod common;`); not all of them use all of it.
#![allow(dead_code)]

use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arcllm::runtime::{Module, ModuleSource, RandomSource, Runtime, Stack};
use arcllm::types::{Error, Message, Request, Response, StopReason, Usage};
use arcllm::Provider;
use async_trait::async_trait;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};

/// The in-process test adapter: answers a clone of a canned response, touching nothing of
/// the request (so every per-byte cost measured against it is the stack's own).
pub struct Canned {
    response: Response,
}

impl Canned {
    pub fn new() -> Arc<Self> {
        Arc::new(Canned { response: canned_response() })
    }
}

#[async_trait]
impl Provider for Canned {
    async fn invoke(&self, _request: Request) -> Result<Response, Error> {
        Ok(self.response.clone())
    }
    fn name(&self) -> &str {
        "canned"
    }
    fn model_name(&self) -> &str {
        "canned-model"
    }
}

/// A typical short answer.
pub fn canned_response() -> Response {
    Response {
        content: Some("The answer is 42.".into()),
        tool_calls: vec![],
        usage: Usage {
            input_tokens: 12,
            output_tokens: 6,
            total_tokens: 18,
            cache_read_tokens: None,
            cache_write_tokens: None,
            reasoning_tokens: None,
        },
        model: "canned-model".into(),
        stop_reason: StopReason::EndTurn,
        thinking: None,
        metadata: vec![],
    }
}

/// The payload sizes of benchmark 2, as (label, bytes of message text).
pub const SIZES: [(&str, usize); 3] = [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("400KiB", 400 << 10)];

/// A conversation whose message texts total `bytes`: a system prompt, then alternating
/// user/assistant turns of at most 2 KiB each (a long agent context is many such turns).
/// `tag` starts the first user turn, so requests can be told apart.
pub fn request_of_size(bytes: usize, tag: &str) -> Request {
    const TURN: usize = 2 << 10;
    let filler = "The quick brown fox jumps over the lazy dog; agents keep long contexts. ";
    let text = |n: usize, prefix: &str| {
        let mut s = String::with_capacity(n);
        s.push_str(&prefix[..prefix.len().min(n)]);
        while s.len() < n {
            let take = (n - s.len()).min(filler.len());
            s.push_str(&filler[..take]);
        }
        s
    };
    let system = bytes.min(256);
    let mut messages = vec![Message::system(text(system, "You are a careful assistant. "))];
    let mut left = bytes - system;
    let mut turn = 0;
    while left > 0 {
        let n = left.min(TURN);
        let prefix = if turn == 0 { tag } else { "" };
        messages.push(if turn % 2 == 0 {
            Message::user(text(n, prefix))
        } else {
            Message::assistant(text(n, prefix))
        });
        left -= n;
        turn += 1;
    }
    Request::new(messages)
}

/// Total bytes of message text in `request` (what `request_of_size` aimed at).
pub fn text_bytes(request: &Request) -> usize {
    use arcllm::types::Content;
    request
        .messages
        .iter()
        .map(|m| match &m.content {
            Content::Text(t) => t.len(),
            Content::Blocks(_) => 0,
        })
        .sum()
}

/// A runtime with the given allocator (and room for `max_instances` live instances).
/// Without `reuse`, every call instantiates and configures every layer afresh.
pub fn runtime(pooling: bool, max_instances: u32, reuse: bool) -> Runtime {
    let mut builder = Runtime::builder().pooling(pooling).max_instances(max_instances);
    if !reuse {
        builder = builder.max_idle_instances(0);
    }
    let runtime = builder.build().expect("runtime");
    assert_eq!(runtime.pooling(), pooling, "the pooling allocator is unavailable on this machine");
    runtime
}

/// Loads the built-in module `name` with `config`.
pub async fn builtin(runtime: &Runtime, name: &str, config: serde_json::Value) -> Arc<Module> {
    let bytes = arcllm::builtin::get(name).expect("built-in module");
    runtime
        .load_module(name, ModuleSource::Builtin, bytes.to_vec(), &config)
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// `passthrough` stacked `n` times around `inner`; with `share`, calls may reuse idle
/// stores (`share_state`), else every call gets fresh instances (the default).
pub async fn passthrough_chain(runtime: &Runtime, n: usize, inner: Arc<dyn Provider>, share: bool) -> Stack {
    let module = builtin(runtime, "passthrough", serde_json::json!({})).await.with_share_state(share);
    Stack::new(runtime.clone(), vec![module; n], inner).with_random(RandomSource::repeating(vec![0]))
}

/// The production shape `retry(fallback(inner))`, with retry's defaults and an empty
/// fallback stack (no failure happens, so neither acts); `share` as in [`passthrough_chain`].
pub async fn retry_fallback_chain(runtime: &Runtime, inner: Arc<dyn Provider>, share: bool) -> Stack {
    let retry = builtin(runtime, "retry", serde_json::json!({})).await.with_share_state(share);
    let fallback =
        builtin(runtime, "fallback", serde_json::json!({ "chain": [] })).await.with_share_state(share);
    Stack::new(runtime.clone(), vec![retry, fallback], inner).with_random(RandomSource::repeating(vec![0]))
}

/// A current-thread tokio runtime: the least noisy executor for sequential calls.
pub fn tokio_current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// Where criterion writes its results: `$CRITERION_HOME`, else `<target dir>/criterion`
/// (the bench executable lives in `<target dir>/<profile>/deps/`).
pub fn output_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors().nth(3).map(|target| target.join("criterion")).unwrap_or_else(|| "target/criterion".into())
}

/// Criterion as every bench here uses it: small samples so that the whole `cargo bench`
/// stays within minutes on a 2-core machine; command-line options still apply.
pub fn criterion() -> Criterion {
    Criterion::default()
        .output_directory(&output_dir())
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
        .configure_from_args()
}

/// A median read back from this run's criterion results.
#[derive(Clone, Copy, Debug)]
pub struct Estimate {
    /// Median time per iteration, in nanoseconds.
    pub median_ns: f64,
    /// The 95% confidence interval of the median.
    pub low_ns: f64,
    pub high_ns: f64,
}

impl Estimate {
    pub fn us(&self) -> f64 {
        self.median_ns / 1e3
    }
}

/// The median of `group/function/value` as criterion estimated it in this run (`None` when
/// that benchmark was filtered out, so a stale result from an earlier run is never used).
pub fn estimate(started: SystemTime, group: &str, function: &str, value: Option<&str>) -> Option<Estimate> {
    let mut path = output_dir().join(group).join(function);
    if let Some(value) = value {
        path.push(value);
    }
    path.push("new");
    path.push("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < started {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let median = &json["median"];
    Some(Estimate {
        median_ns: median["point_estimate"].as_f64()?,
        low_ns: median["confidence_interval"]["lower_bound"].as_f64()?,
        high_ns: median["confidence_interval"]["upper_bound"].as_f64()?,
    })
}

/// `value` formatted as µs with a precision that suits it.
pub fn us(value_us: f64) -> String {
    if value_us.abs() >= 100.0 {
        format!("{value_us:.0}")
    } else if value_us.abs() >= 10.0 {
        format!("{value_us:.1}")
    } else {
        format!("{value_us:.2}")
    }
}

/// "met" or "MISSED".
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// Reads `/proc/self/status` field `name` (e.g. `VmRSS`), in bytes.
pub fn proc_status_bytes(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))?;
    let kib: u64 = line[name.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Resets the process's peak resident size (`VmHWM`) to its current one (Linux ≥ 4.0).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// What a benchmark's time is measured with. Wall time is what a caller waits; CPU time is
/// what the work costs, and stays meaningful on a machine shared with other jobs (a
/// preempted thread accrues wall time, not CPU time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    Wall,
    /// CPU time of the benchmarking thread (user + kernel): every in-process call runs on
    /// it (a current-thread tokio runtime).
    ThreadCpu,
    /// CPU time of the whole process, all threads: for benchmarks whose work is spread
    /// over threads (the HTTP stub server runs on its own).
    ProcessCpu,
}

impl Clock {
    /// The criterion group a benchmark is filed under: `base` for wall time,
    /// `base_cpu` for CPU time.
    pub fn group(self, base: &str) -> String {
        match self {
            Clock::Wall => base.to_string(),
            Clock::ThreadCpu | Clock::ProcessCpu => format!("{base}_cpu"),
        }
    }

    /// Now, on this clock (CPU clocks only).
    pub fn now(self) -> Duration {
        let id = match self {
            Clock::ThreadCpu => libc::CLOCK_THREAD_CPUTIME_ID,
            Clock::ProcessCpu => libc::CLOCK_PROCESS_CPUTIME_ID,
            Clock::Wall => libc::CLOCK_MONOTONIC,
        };
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; the clock ids are constants.
        let rc = unsafe { libc::clock_gettime(id, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

/// Registers `id`, timing `f().await` on `clock`.
pub fn bench_async<F, Fut>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    rt: &tokio::runtime::Runtime,
    clock: Clock,
    f: F,
) where
    F: Fn() -> Fut,
    Fut: Future,
{
    let f = &f;
    group.bench_function(id, |b| match clock {
        Clock::Wall => b.to_async(rt).iter(f),
        cpu => b.to_async(rt).iter_custom(|iters| async move {
            let start = cpu.now();
            for _ in 0..iters {
                black_box(f().await);
            }
            cpu.now() - start
        }),
    });
}

/// Registers `id`, timing `f()` on `clock`.
pub fn bench_sync<O>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    clock: Clock,
    f: impl Fn() -> O,
) {
    group.bench_function(id, |b| match clock {
        Clock::Wall => b.iter(&f),
        cpu => b.iter_custom(|iters| {
            let start = cpu.now();
            for _ in 0..iters {
                black_box(f());
            }
            cpu.now() - start
        }),
    });
}

/// The 1-minute load average and the number of CPUs, to print beside the results: a
/// load above the CPU count means other jobs competed for the machine.
pub fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let one = load.split_whitespace().next().unwrap_or("?").to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} CPUs, 1-min load average {one}")
}
