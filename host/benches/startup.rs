//! Cold start, in process: `load_model(...).build()` with retry and fallback, first in a
//! fresh process and warm; and a third-party module's first load (compiled, stored in the
//! disk cache) and its load in the next process (read from the cache).
//!
//! Every "first" sample is a fresh child process (this binary re-run with
//! `ARCLLM_STARTUP_CHILD`), so nothing compiled or created earlier helps it. Prints
//! medians. `cargo bench -p arcllm --bench startup`; the whole-process figures are
//! `bench/startup.sh`'s. Results: docs/benchmarks.md, "Cold start".

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use arcllm::config::Config;
use arcllm::runtime::{ModuleSource, Runtime};
use arcllm::{load_model, Setting};

const CHILD: &str = "ARCLLM_STARTUP_CHILD";
const RUNS: usize = 15;

fn main() {
    if let Ok(mode) = std::env::var(CHILD) {
        return child(&mode);
    }
    let cache = tempfile::tempdir().unwrap();
    // Interleaved with the same build on a runtime sized for the previous default pool
    // (1,024 instances), so their ratio holds on a noisy machine.
    let (mut first_build, mut first_build_1024) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        first_build.push(run_child("build", cache.path()));
        first_build_1024.push(run_child("build-1024", cache.path()));
    }
    let (first_build, first_build_1024) = (median(first_build), median(first_build_1024));
    let warm_build = median((0..3).map(|_| run_child("warm-build", cache.path())));
    let mut first_load = Vec::new();
    let mut cached_load = Vec::new();
    for _ in 0..RUNS {
        std::fs::remove_dir_all(cache.path().join("arcllm")).ok();
        first_load.push(run_child("load", cache.path()));
        cached_load.push(run_child("load", cache.path()));
    }
    println!("median of {RUNS} runs each");
    println!("load_model().build(), retry+fallback, first in process  {}", ms(first_build));
    println!("  the same with a pool of 1,024 instances (interleaved)   {}", ms(first_build_1024));
    println!("load_model().build(), retry+fallback, warm              {}", ms(warm_build));
    println!("third-party module load, first (compile, cache store)   {}", ms(median(first_load)));
    println!("third-party module load, next process (cache hit)       {}", ms(median(cached_load)));
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1000.0)
}

fn median(samples: impl IntoIterator<Item = Duration>) -> Duration {
    let mut samples: Vec<Duration> = samples.into_iter().collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// Runs this binary in `mode` and reads the duration it prints (nanoseconds).
fn run_child(mode: &str, cache: &Path) -> Duration {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, mode)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("ARCLLM_CACHE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
    Duration::from_nanos(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

fn child(mode: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let elapsed = rt.block_on(async {
        match mode {
            "build" => time_build().await,
            "build-1024" => {
                Runtime::configure_shared(Runtime::builder().max_instances(1024)).unwrap();
                time_build().await
            }
            "warm-build" => {
                time_build().await;
                let mut samples = Vec::with_capacity(RUNS);
                for _ in 0..RUNS {
                    samples.push(time_build().await);
                }
                median(samples)
            }
            "load" => {
                let runtime = Runtime::shared().unwrap();
                let bytes = third_party();
                let start = Instant::now();
                runtime
                    .load_module("third", ModuleSource::Bytes, bytes, &serde_json::json!({}))
                    .await
                    .unwrap();
                start.elapsed()
            }
            other => panic!("unknown mode {other}"),
        }
    });
    println!("{}", elapsed.as_nanos());
}

async fn time_build() -> Duration {
    let config = Config::from_toml(
        "[defaults]\nprovider = \"ollama\"\n[modules.fallback]\nchain = [\"ollama/other\"]\n",
        Path::new("bench.toml"),
    )
    .unwrap();
    let start = Instant::now();
    let model =
        load_model("ollama").config(config).retry(Setting::On).fallback(Setting::On).build().await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(model.stack_names(), ["retry", "fallback"]);
    elapsed
}

/// The passthrough module with a custom section appended: the same code under another
/// SHA-256, so it is treated as a third-party module (not precompiled into the binary).
fn third_party() -> Vec<u8> {
    let mut bytes = arcllm::builtin::PASSTHROUGH.to_vec();
    let name = b"arcllm-bench";
    let payload = b"not built in";
    bytes.push(0); // custom section
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}
