//! Benchmarks 1 and 2 (docs/benchmarks.md): what one invoke through the wasm chain costs
//! against calling the same in-process test adapter directly, at 1 KiB, 64 KiB and 400 KiB
//! of message text.
//!
//! Every variant is timed as one whole `Provider::invoke`, starting from a borrowed request
//! (each iteration clones it, since `invoke` takes it by value): the baseline is
//! `adapter.invoke(request.clone())`, a chain is `chain.invoke(request.clone())`, which
//! creates the call's store, instantiates and configures every layer, passes the request
//! down and the response back up, and drops the store. Two native references are measured
//! alongside: the clone alone, and `serde_json::to_vec` of the request (what any real
//! adapter does to the request at least once).

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use arcllm::runtime::Chain;
use arcllm::Provider;
use common::{estimate, us, verdict, Canned, SIZES};

const GROUP: &str = "invoke";
const CHAINS: [(&str, usize); 4] =
    [("passthrough_x1", 1), ("passthrough_x2", 2), ("passthrough_x3", 3), ("retry_fallback", 2)];

fn main() {
    let started = SystemTime::now();
    let mut criterion = common::criterion();
    let rt = common::tokio_current_thread();
    let runtime = common::runtime(true, 4096);
    let adapter: Arc<dyn Provider> = Canned::new();
    let chains: Vec<(&str, Chain)> = rt.block_on(async {
        let mut chains = Vec::new();
        for (name, layers) in CHAINS {
            let chain = if name == "retry_fallback" {
                common::retry_fallback_chain(&runtime, adapter.clone()).await
            } else {
                common::passthrough_chain(&runtime, layers, adapter.clone()).await
            };
            chains.push((name, chain));
        }
        chains
    });

    let mut group = criterion.benchmark_group(GROUP);
    for (label, bytes) in SIZES {
        let request = common::request_of_size(bytes, "bench");
        assert_eq!(common::text_bytes(&request), bytes);
        let request = &request;
        // Every chain must answer what the adapter answers (a failing chain would be
        // measured as a fast error).
        for (name, chain) in &chains {
            let answer = rt.block_on(chain.invoke(request.clone())).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(answer.content, common::canned_response().content, "{name}");
        }

        group.bench_function(criterion::BenchmarkId::new("clone_only", label), |b| {
            b.iter(|| black_box(request.clone()))
        });
        group.bench_function(criterion::BenchmarkId::new("json_encode", label), |b| {
            b.iter(|| black_box(serde_json::to_vec(black_box(request)).expect("json")))
        });
        let direct = &adapter;
        group.bench_function(criterion::BenchmarkId::new("direct", label), |b| {
            b.to_async(&rt).iter(|| async move { direct.invoke(request.clone()).await.expect("direct") })
        });
        for (name, chain) in &chains {
            group.bench_function(criterion::BenchmarkId::new(*name, label), |b| {
                b.to_async(&rt).iter(|| async move { chain.invoke(request.clone()).await.expect("chain") })
            });
        }
    }
    group.finish();
    criterion.final_summary();
    summary(started);
}

/// Prints this run's figures as the tables of docs/benchmarks.md, ratios against the
/// direct call measured in the same run.
fn summary(started: SystemTime) {
    let get = |function: &str, label: &str| estimate(started, GROUP, function, Some(label));
    println!("\n## Benchmarks 1 and 2: per-invoke overhead (same-run medians)\n");
    println!("| request | variant | µs/call (95% CI of median) | × direct | + µs/call | µs/layer (all-in) |");
    println!("|---|---|---|---|---|---|");
    let mut per_layer_1k: Vec<(&str, f64)> = Vec::new();
    let mut ratio_400k: Vec<(&str, f64)> = Vec::new();
    let mut slopes: Vec<(&str, f64)> = Vec::new();
    for (label, _) in SIZES {
        let Some(direct) = get("direct", label) else {
            println!("| {label} | (direct not run: no ratios) | | | | |");
            continue;
        };
        let row = |name: &str, layers: Option<usize>| {
            let Some(e) = get(name, label) else { return None };
            let extra = e.us() - direct.us();
            let per_layer = layers.map(|n| us(extra / n as f64)).unwrap_or_else(|| "–".into());
            println!(
                "| {label} | {name} | {} ({}–{}) | {:.2}× | {:+.2} | {per_layer} |",
                us(e.us()),
                us(e.low_ns / 1e3),
                us(e.high_ns / 1e3),
                e.median_ns / direct.median_ns,
                extra,
            );
            Some(extra)
        };
        row("clone_only", None);
        row("json_encode", None);
        row("direct", None);
        for (name, layers) in CHAINS {
            if let Some(extra) = row(name, Some(layers)) {
                if label == "1KiB" {
                    per_layer_1k.push((name, extra / layers as f64));
                }
                if label == "400KiB" && layers == 2 {
                    ratio_400k.push((name, (extra + direct.us()) / direct.us()));
                }
            }
        }
        if let (Some(one), Some(three)) = (get("passthrough_x1", label), get("passthrough_x3", label)) {
            slopes.push((label, (three.us() - one.us()) / 2.0));
        }
    }
    println!("\nMarginal cost of one more passthrough layer, (×3 − ×1) / 2:");
    for (label, slope) in &slopes {
        println!("- {label}: {} µs/layer", us(*slope));
    }
    if let (Some((_, small)), Some((_, big))) =
        (slopes.iter().find(|(l, _)| *l == "1KiB"), slopes.iter().find(|(l, _)| *l == "400KiB"))
    {
        println!("- size-dependent part: {:.3} µs per KiB per layer", (big - small) / 399.0);
    }
    println!("\nTargets:");
    for (name, per_layer) in &per_layer_1k {
        println!(
            "- ≤ 10 µs per module layer at 1 KiB, {name}: {} µs/layer → {}",
            us(*per_layer),
            verdict(*per_layer <= 10.0)
        );
    }
    for (name, ratio) in &ratio_400k {
        println!("- 400 KiB through two layers ≤ 5× direct, {name}: {ratio:.1}× → {}", verdict(*ratio <= 5.0));
    }
}
