//! Benchmarks 1 and 2 (docs/benchmarks.md): what one invoke through the wasm stack costs
//! against calling the same in-process test adapter directly, at 1 KiB, 64 KiB and 400 KiB
//! of message text.
//!
//! Every variant is timed as one whole `Provider::invoke`, starting from a borrowed request
//! (each iteration clones it, since `invoke` takes it by value): the baseline is
//! `adapter.invoke(request.clone())`, a stack is `stack.invoke(request.clone())`, which
//! creates the call's store, instantiates and configures every layer, passes the request
//! down and the response back up, and drops the store. Two native references are measured
//! alongside: the clone alone, and `serde_json::to_vec` of the request (what any real
//! adapter does to the request at least once).
//!
//! Each is measured twice: in wall time (group `invoke`) and in the benchmarking thread's
//! CPU time (group `invoke_cpu`), which a busy machine does not inflate.

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use arcllm::runtime::{Runtime, Stack};
use arcllm::Provider;
use common::{bench_async, bench_sync, estimate, us, verdict, Canned, Clock, SIZES};
use criterion::BenchmarkId;

const GROUP: &str = "invoke";
const CLOCKS: [Clock; 2] = [Clock::Wall, Clock::ThreadCpu];
/// Every stack gives each call fresh instances (the default), except `retry_fallback_shared`,
/// whose modules share state so that calls reuse idle stores: the pair is the per-call cost
/// of isolation; and `retry_fallback_unready`, the default stack on a runtime that makes no
/// stores ahead of calls (`ready_stores(0)`): the pair is what ready stores save a call.
const STACKS: [(&str, usize); 6] = [
    ("passthrough_x1", 1),
    ("passthrough_x2", 2),
    ("passthrough_x3", 3),
    ("retry_fallback", 2),
    ("retry_fallback_shared", 2),
    ("retry_fallback_unready", 2),
];

fn main() {
    let started = SystemTime::now();
    let load_before = common::machine_load();
    let mut criterion = common::criterion();
    let rt = common::tokio_current_thread();
    let runtime = common::runtime(true, 4096, true);
    let unready = Runtime::builder().max_instances(4096).ready_stores(0).build().expect("runtime");
    let adapter: Arc<dyn Provider> = Canned::new();
    let stacks: Vec<(&str, Stack)> = rt.block_on(async {
        let mut stacks = Vec::new();
        for (name, layers) in STACKS {
            let stack = match name {
                "retry_fallback" => common::retry_fallback_chain(&runtime, adapter.clone(), false).await,
                "retry_fallback_shared" => {
                    common::retry_fallback_chain(&runtime, adapter.clone(), true).await
                }
                "retry_fallback_unready" => {
                    common::retry_fallback_chain(&unready, adapter.clone(), false).await
                }
                _ => common::passthrough_chain(&runtime, layers, adapter.clone(), false).await,
            };
            stacks.push((name, stack));
        }
        stacks
    });
    let requests: Vec<_> = SIZES
        .iter()
        .map(|&(label, bytes)| {
            let request = common::request_of_size(bytes, "bench");
            assert_eq!(common::text_bytes(&request), bytes);
            // Every stack must answer what the adapter answers (a failing stack would be
            // measured as a fast error).
            for (name, stack) in &stacks {
                let answer =
                    rt.block_on(stack.invoke(request.clone())).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(answer.content, common::canned_response().content, "{name}");
            }
            (label, request)
        })
        .collect();

    for clock in CLOCKS {
        let mut group = criterion.benchmark_group(clock.group(GROUP));
        for (label, request) in &requests {
            let id = |name: &str| BenchmarkId::new(name, label);
            bench_sync(&mut group, id("clone_only"), clock, || request.clone());
            bench_sync(&mut group, id("json_encode"), clock, || serde_json::to_vec(request).expect("json"));
            let direct = &adapter;
            bench_async(&mut group, id("direct"), &rt, clock, || async move {
                direct.invoke(request.clone()).await.expect("direct")
            });
            for (name, stack) in &stacks {
                bench_async(&mut group, id(name), &rt, clock, || async move {
                    stack.invoke(request.clone()).await.expect("stack")
                });
            }
        }
        group.finish();
    }
    criterion.final_summary();
    summary(started, &load_before);
}

/// Prints this run's figures as the tables of docs/benchmarks.md, ratios against the
/// direct call measured in the same run.
fn summary(started: SystemTime, load_before: &str) {
    let get = |clock: Clock, function: &str, label: &str| {
        estimate(started, &clock.group(GROUP), function, Some(label))
    };
    println!("\n## Benchmarks 1 and 2: per-invoke overhead (same-run medians)\n");
    println!("Machine: {load_before} at the start, {} at the end.\n", common::machine_load());
    println!("| request | variant | wall µs/call | × direct (wall) | CPU µs/call | × direct (CPU) | + CPU µs/call | CPU µs/layer (all-in) |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut per_layer_1k: Vec<(Clock, &str, f64)> = Vec::new();
    let mut ratio_400k: Vec<(Clock, &str, f64)> = Vec::new();
    let mut marginal: Vec<(Clock, &str, f64)> = Vec::new();
    for (label, _) in SIZES {
        let (Some(direct_wall), Some(direct_cpu)) =
            (get(Clock::Wall, "direct", label), get(Clock::ThreadCpu, "direct", label))
        else {
            println!("| {label} | (direct not run in this run: no ratios) | | | | | | |");
            continue;
        };
        let mut row = |name: &'static str, layers: Option<usize>| {
            let (Some(wall), Some(cpu)) = (get(Clock::Wall, name, label), get(Clock::ThreadCpu, name, label))
            else {
                return;
            };
            let extra_cpu = cpu.us() - direct_cpu.us();
            let per_layer = layers.map(|n| us(extra_cpu / n as f64)).unwrap_or_else(|| "–".into());
            println!(
                "| {label} | {name} | {} | {:.2}× | {} | {:.2}× | {:+.2} | {per_layer} |",
                us(wall.us()),
                wall.median_ns / direct_wall.median_ns,
                us(cpu.us()),
                cpu.median_ns / direct_cpu.median_ns,
                extra_cpu,
            );
            if let Some(n) = layers {
                for (clock, e, d) in [(Clock::Wall, wall, direct_wall), (Clock::ThreadCpu, cpu, direct_cpu)] {
                    if label == "1KiB" {
                        per_layer_1k.push((clock, name, (e.us() - d.us()) / n as f64));
                    }
                    if label == "400KiB" && n == 2 {
                        ratio_400k.push((clock, name, e.median_ns / d.median_ns));
                    }
                }
            }
        };
        row("clone_only", None);
        row("json_encode", None);
        row("direct", None);
        for (name, layers) in STACKS {
            row(name, Some(layers));
        }
        for clock in CLOCKS {
            if let (Some(one), Some(three)) =
                (get(clock, "passthrough_x1", label), get(clock, "passthrough_x3", label))
            {
                marginal.push((clock, label, (three.us() - one.us()) / 2.0));
            }
        }
    }
    println!("\nMarginal cost of one more passthrough layer, (×3 − ×1) / 2:");
    for clock in CLOCKS {
        let line: Vec<String> =
            marginal.iter().filter(|m| m.0 == clock).map(|(_, l, v)| format!("{l}: {} µs", us(*v))).collect();
        println!("- {clock:?}: {}", line.join(", "));
        let at = |l: &str| marginal.iter().find(|m| m.0 == clock && m.1 == l).map(|m| m.2);
        if let (Some(small), Some(big)) = (at("1KiB"), at("400KiB")) {
            println!("  size-dependent part: {:.3} µs per KiB per layer", (big - small) / 399.0);
        }
    }
    println!("\nCost of isolation (fresh instances per call) against shared state, retry(fallback):");
    for (label, _) in SIZES {
        for clock in CLOCKS {
            if let (Some(fresh), Some(shared)) =
                (get(clock, "retry_fallback", label), get(clock, "retry_fallback_shared", label))
            {
                println!(
                    "- {label} ({clock:?}): {} µs against {} µs, {:.1}×, +{} µs per call",
                    us(fresh.us()),
                    us(shared.us()),
                    fresh.median_ns / shared.median_ns,
                    us(fresh.us() - shared.us())
                );
            }
        }
    }
    println!("\nReady stores (made ahead of calls) against none, retry(fallback), fresh instances:");
    for (label, _) in SIZES {
        for clock in CLOCKS {
            if let (Some(ready), Some(unready)) =
                (get(clock, "retry_fallback", label), get(clock, "retry_fallback_unready", label))
            {
                println!(
                    "- {label} ({clock:?}): {} µs against {} µs, {:.2}×",
                    us(ready.us()),
                    us(unready.us()),
                    ready.median_ns / unready.median_ns
                );
            }
        }
    }
    println!("\nTargets:");
    for (clock, name, per_layer) in &per_layer_1k {
        println!(
            "- ≤ 10 µs per module layer at 1 KiB, {name} ({clock:?}): {} µs/layer → {}",
            us(*per_layer),
            verdict(*per_layer <= 10.0)
        );
    }
    for (clock, name, ratio) in &ratio_400k {
        println!(
            "- 400 KiB through two layers ≤ 5× direct, {name} ({clock:?}): {ratio:.1}× → {}",
            verdict(*ratio <= 5.0)
        );
    }
}
