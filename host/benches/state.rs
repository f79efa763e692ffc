//! Shared state for modules (docs/benchmarks.md, "Shared state"): what one operation costs
//! on each backend, in one run: the in-process store (the target: at most 1 µs added per
//! call) and a real `redis-server` on loopback (started here on a free port when
//! `$ARCLLM_REDIS_SERVER` or `redis-server` on the PATH is found; otherwise its rows are
//! skipped, and the summary says so).
//!
//! The operations are the ones the built-in policies make per call: a token-bucket take
//! (rate limit), a value read (the breaker's gate on a closed breaker) and a sliding
//! counter increment (a retry budget's request count, a breaker's failure count).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use arcllm::state::{
    Bucket, Clock as StateClock, RedisSettings, Slot, StateKey, StateStore, Window, WindowKind,
};
use common::{bench_async, estimate, us, verdict, Clock};
use criterion::BenchmarkId;

const GROUP: &str = "state";
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
