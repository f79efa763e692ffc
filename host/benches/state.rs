//! Shared state for modules (docs/benchmarks.md, "Shared state"): what one operation costs
//! on each backend, in one run: the in-process store (the target: at most 1 µs added per
//! call) and a real `redis-server` on loopback (started here on a free port when
//! `$ARCLLM_REDIS_SERVER` or `redis-server` on the PATH is found; otherwise its rows are
//! skipped, and the summary says so).
//!
//! The operations are the ones the built-in policies make per call: a token-bucket take
//! (rate limit), a value read (the breaker's gate on a closed breaker) and a sliding
//! counter increment (a retry budget's request count, a breaker's failure count).
//!
//! Then the modules themselves, one layer around the in-process test adapter at 1 KiB, on
//! each backend, beside the plain stacks of the same shape in the same run: `rate_limit` and
//! `circuit_breaker` against `passthrough`, retry with a budget against retry without.
//! Every stack shares state (`share_state`), so that a call reuses its instances and what
//! is measured is the module's work, not instantiation.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use arcllm::runtime::{RandomSource, Stack};
use arcllm::state::{
    Bucket, Clock as StateClock, RedisSettings, Slot, StateKey, StateStore, Window, WindowKind,
};
use arcllm::Provider;
use common::{bench_async, estimate, us, verdict, Canned, Clock};
use criterion::BenchmarkId;
use serde_json::json;

const GROUP: &str = "state";
const MODULES: &str = "state_modules";
const CLOCKS: [Clock; 2] = [Clock::Wall, Clock::ThreadCpu];

fn main() {
    let started = SystemTime::now();
    let load_before = common::machine_load();
    let mut criterion = common::criterion();
    let rt = common::tokio_current_thread();
    let redis = RedisProcess::start();
    let mut stores = vec![("memory", StateStore::memory(StateClock::default(), 100_000))];
    if let Some(server) = &redis {
        let store = rt.block_on(async {
            StateStore::redis(RedisSettings {
                url: format!("redis://127.0.0.1:{}/", server.port),
                key_prefix: "bench".into(),
                timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
            })
            .expect("a Redis store")
        });
        stores.push(("redis", store));
    }
    // Effectively unlimited, so that every take is granted (the common case measured).
    let bucket = Bucket { capacity: 1e12, refill_per_second: 1e9 };
    let window = Window { length: Duration::from_secs(10), kind: WindowKind::Sliding };
    let take = StateKey { module: "rate_limit", slot: Slot::Bucket, key: b"rpm:openai" };
    let get = StateKey { module: "circuit_breaker", slot: Slot::Value, key: b"state:openai" };
    let incr = StateKey { module: "retry", slot: Slot::Counter, key: b"budget.requests:openai" };
    for (name, store) in &stores {
        rt.block_on(async {
            assert!(store.take(take, bucket, 1.0).await.expect("take").granted, "{name}");
            store.get(get).await.expect("get");
            store.incr(incr, window, 1).await.expect("incr");
        });
    }

    for clock in CLOCKS {
        let mut group = criterion.benchmark_group(clock.group(GROUP));
        for (name, store) in &stores {
            bench_async(&mut group, BenchmarkId::new("take", name), &rt, clock, || {
                store.take(take, bucket, 1.0)
            });
            bench_async(&mut group, BenchmarkId::new("get", name), &rt, clock, || store.get(get));
            bench_async(&mut group, BenchmarkId::new("incr", name), &rt, clock, || {
                store.incr(incr, window, 1)
            });
        }
        group.finish();
    }

    // The modules, per call, beside the plain stacks.
    let runtime = common::runtime(true, 4096, true);
    let adapter: std::sync::Arc<dyn Provider> = Canned::new();
    let request = common::request_of_size(1 << 10, "bench");
    let mut stacks: Vec<(String, Stack)> = Vec::new();
    rt.block_on(async {
        let layer = |name: &'static str, config: serde_json::Value, store: StateStore| {
            let (runtime, adapter) = (runtime.clone(), adapter.clone());
            async move {
                let module = common::builtin(&runtime, name, config).await.with_share_state(true);
                Stack::new(runtime, vec![module], adapter)
                    .with_state(store)
                    .with_random(RandomSource::repeating(vec![0]))
            }
        };
        let plain = stores[0].1.clone();
        stacks.push(("passthrough".into(), layer("passthrough", json!({}), plain.clone()).await));
        stacks.push(("retry".into(), layer("retry", json!({}), plain).await));
        for (backend, store) in &stores {
            let limit = json!({"requests_per_minute": 6e10, "burst_capacity": 1e9});
            stacks.push((format!("rate_limit_{backend}"), layer("rate_limit", limit, store.clone()).await));
            let breaker = layer("circuit_breaker", json!({}), store.clone()).await;
            stacks.push((format!("circuit_breaker_{backend}"), breaker));
            let budget = json!({"budget_percent": 20});
            stacks.push((format!("retry_budget_{backend}"), layer("retry", budget, store.clone()).await));
        }
        for (name, stack) in &stacks {
            stack.invoke(request.clone()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    });
    for clock in CLOCKS {
        let mut group = criterion.benchmark_group(clock.group(MODULES));
        for (name, stack) in &stacks {
            let id = BenchmarkId::new(name.as_str(), "1KiB");
            bench_async(&mut group, id, &rt, clock, || stack.invoke(request.clone()));
        }
        group.finish();
    }

    println!("\n=== shared state: one operation (median; {load_before} before the run) ===");
    println!("{:<8} {:<6} {:>12} {:>12}", "backend", "op", "wall µs", "CPU µs");
    let mut memory_max: f64 = 0.0;
    for (name, _) in &stores {
        for op in ["take", "get", "incr"] {
            let wall = estimate(started, GROUP, op, Some(name));
            let cpu = estimate(started, &Clock::ThreadCpu.group(GROUP), op, Some(name));
            if *name == "memory" {
                memory_max = memory_max.max(wall.map_or(f64::MAX, |e| e.us()));
            }
            let show = |e: Option<common::Estimate>| e.map_or("-".to_string(), |e| us(e.us()));
            println!("{name:<8} {op:<6} {:>12} {:>12}", show(wall), show(cpu));
        }
    }
    println!(
        "in-process operation ≤ 1 µs (a module makes one or two per call): {} (slowest {} µs)",
        verdict(memory_max <= 1.0),
        us(memory_max)
    );
    println!("\n=== shared-state modules: one 1 KiB call, one layer (median; same run) ===");
    println!("{:<26} {:>10} {:>10} {:>14} {:>8}", "stack", "wall µs", "CPU µs", "added CPU µs", "ratio");
    let cpu_of =
        |name: &str| estimate(started, &Clock::ThreadCpu.group(MODULES), name, Some("1KiB")).map(|e| e.us());
    let mut memory_added: f64 = 0.0;
    for (name, _) in &stacks {
        let wall = estimate(started, MODULES, name, Some("1KiB")).map(|e| e.us());
        let cpu = cpu_of(name);
        let base = if name.starts_with("retry") { cpu_of("retry") } else { cpu_of("passthrough") };
        let added = cpu.zip(base).map(|(c, b)| c - b);
        if name.ends_with("_memory") {
            memory_added = memory_added.max(added.unwrap_or(f64::MAX));
        }
        let show = |v: Option<f64>| v.map_or("-".to_string(), us);
        let ratio = cpu.zip(base).map_or("-".to_string(), |(c, b)| format!("{:.2}x", c / b));
        println!("{name:<26} {:>10} {:>10} {:>14} {:>8}", show(wall), show(cpu), show(added), ratio);
    }
    println!(
        "in-process module adds ≤ 1 µs per call (CPU, against the plain stack of the same shape): {} (most {} µs)",
        verdict(memory_added <= 1.0),
        us(memory_added)
    );
    if redis.is_none() {
        println!("redis rows skipped: no redis-server (set ARCLLM_REDIS_SERVER or put it on the PATH)");
    }
    println!("machine after the run: {}", common::machine_load());
}

/// A `redis-server` on a free loopback port, without persistence, killed on drop.
struct RedisProcess {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisProcess {
    fn start() -> Option<RedisProcess> {
        let binary = std::env::var_os("ARCLLM_REDIS_SERVER").filter(|p| !p.is_empty()).or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file()).map(Into::into)
        })?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let dir = tempfile::tempdir().ok()?;
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let process = RedisProcess { child, port, _dir: dir };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(process);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
