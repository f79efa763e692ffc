//! Benchmark 3 (docs/benchmarks.md): what a call pays to get fresh instances of its
//! stack (the default), with and without the pooling allocator, and what it pays instead
//! when its modules share state and it reuses an idle store.
//!
//! Without reuse (`max_idle_instances(0)`), every `Stack` call creates a store,
//! instantiates every layer from its `InstancePre`, calls each layer's `configure` with its
//! table, makes the call, and drops the store (returning the instances' memories and
//! stacks). The cheapest call through the public API is `Stack::validate_config`: no
//! payload crosses, and each layer only forwards it. So "instantiation" here is
//! `stack.validate_config()` — an upper bound on the start-up cost that includes one
//! payload-free call through each layer — against the direct adapter's `validate_config`
//! as the same-run baseline. Measured in wall time (group `instantiate`) and in the
//! benchmarking thread's CPU time (group `instantiate_cpu`).

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use arcllm::runtime::Stack;
use arcllm::Provider;
use common::{bench_async, estimate, us, verdict, Canned, Clock};
use criterion::BenchmarkId;

const GROUP: &str = "instantiate";
const CLOCKS: [Clock; 2] = [Clock::Wall, Clock::ThreadCpu];
const STACKS: [(&str, usize); 3] = [("passthrough_x1", 1), ("passthrough_x3", 3), ("retry_fallback", 2)];
/// (name, pooling allocator, reuse idle stores).
const VARIANTS: [(&str, bool, bool); 3] =
    [("pooling", true, false), ("on_demand", false, false), ("reused", true, true)];

fn main() {
    let started = SystemTime::now();
    let load_before = common::machine_load();
    let mut criterion = common::criterion();
    let rt = common::tokio_current_thread();
    let adapter: Arc<dyn Provider> = Canned::new();
    let runtimes: Vec<(&str, Vec<(&str, Stack)>)> = VARIANTS
        .iter()
        .map(|&(allocator, pooling, reuse)| {
            let runtime = common::runtime(pooling, 4096, reuse);
            let stacks = rt.block_on(async {
                let mut stacks = Vec::new();
                for (name, layers) in STACKS {
                    let stack = if name == "retry_fallback" {
                        common::retry_fallback_chain(&runtime, adapter.clone(), reuse).await
                    } else {
                        common::passthrough_chain(&runtime, layers, adapter.clone(), reuse).await
                    };
                    stack.validate_config().await.unwrap_or_else(|e| panic!("{name}: {e}"));
                    stacks.push((name, stack));
                }
                stacks
            });
            (allocator, stacks)
        })
        .collect();

    for clock in CLOCKS {
        let mut group = criterion.benchmark_group(clock.group(GROUP));
        let direct = &adapter;
        bench_async(&mut group, BenchmarkId::new("direct", "adapter"), &rt, clock, || async move {
            direct.validate_config().await.expect("direct")
        });
        for (allocator, stacks) in &runtimes {
            for (name, stack) in stacks {
                bench_async(&mut group, BenchmarkId::new(*allocator, name), &rt, clock, || async move {
                    stack.validate_config().await.expect("stack")
                });
            }
        }
        group.finish();
    }
    criterion.final_summary();
    summary(started, &load_before);
}

fn summary(started: SystemTime, load_before: &str) {
    let get = |clock: Clock, function: &str, value: &str| {
        estimate(started, &clock.group(GROUP), function, Some(value))
    };
    println!("\n## Benchmark 3: stack instantiation, `validate_config` (same-run medians)\n");
    println!("Machine: {load_before} at the start, {} at the end.\n", common::machine_load());
    if let (Some(w), Some(c)) =
        (get(Clock::Wall, "direct", "adapter"), get(Clock::ThreadCpu, "direct", "adapter"))
    {
        println!("direct adapter `validate_config`: {} µs wall, {} µs CPU\n", us(w.us()), us(c.us()));
    }
    println!("| variant | stack | wall µs/call | CPU µs/call | CPU µs/layer | × pooling (CPU) |");
    println!("|---|---|---|---|---|---|");
    let mut targets = Vec::new();
    for (allocator, _, _) in VARIANTS {
        for (name, layers) in STACKS {
            let (Some(wall), Some(cpu)) =
                (get(Clock::Wall, allocator, name), get(Clock::ThreadCpu, allocator, name))
            else {
                continue;
            };
            let vs_pooling = get(Clock::ThreadCpu, "pooling", name)
                .map(|p| format!("{:.2}×", cpu.median_ns / p.median_ns))
                .unwrap_or_else(|| "–".into());
            println!(
                "| {allocator} | {name} | {} | {} | {} | {vs_pooling} |",
                us(wall.us()),
                us(cpu.us()),
                us(cpu.us() / layers as f64),
            );
            if allocator == "pooling" && name == "retry_fallback" {
                targets.push(("wall", wall.us()));
                targets.push(("CPU", cpu.us()));
            }
        }
    }
    for (clock, t) in targets {
        println!(
            "\nTarget: stack instantiation ≤ 50 µs median with pooling, retry(fallback) ({clock}): {} µs → {}",
            us(t),
            verdict(t <= 50.0)
        );
    }
}
