//! Benchmark 3 (docs/benchmarks.md): what each call pays to get fresh instances of its
//! chain, with and without the pooling allocator.
//!
//! Every `Chain` call creates a store, instantiates every layer from its `InstancePre`,
//! calls each layer's `configure` with its table, makes the call, and drops the store
//! (returning the instances' memories and stacks). The cheapest call through the public
//! API is `Chain::validate_config`: no payload crosses, and each layer only forwards it.
//! So "instantiation" here is `chain.validate_config()` — an upper bound on the start-up
//! cost that includes one payload-free call through each layer — against the direct
//! adapter's `validate_config` as the same-run baseline.

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use arcllm::runtime::Chain;
use arcllm::Provider;
use common::{estimate, us, verdict, Canned};

const GROUP: &str = "instantiate";
const CHAINS: [(&str, usize); 3] = [("passthrough_x1", 1), ("passthrough_x3", 3), ("retry_fallback", 2)];
const ALLOCATORS: [(&str, bool); 2] = [("pooling", true), ("on_demand", false)];

fn main() {
    let started = SystemTime::now();
    let mut criterion = common::criterion();
    let rt = common::tokio_current_thread();
    let adapter: Arc<dyn Provider> = Canned::new();

    let mut group = criterion.benchmark_group(GROUP);
    let direct = &adapter;
    group.bench_function("direct", |b| {
        b.to_async(&rt).iter(|| async move { direct.validate_config().await.expect("direct") })
    });
    for (allocator, pooling) in ALLOCATORS {
        let runtime = common::runtime(pooling, 4096);
        let chains: Vec<(&str, Chain)> = rt.block_on(async {
            let mut chains = Vec::new();
            for (name, layers) in CHAINS {
                let chain = if name == "retry_fallback" {
                    common::retry_fallback_chain(&runtime, adapter.clone()).await
                } else {
                    common::passthrough_chain(&runtime, layers, adapter.clone()).await
                };
                chain.validate_config().await.unwrap_or_else(|e| panic!("{name}: {e}"));
                chains.push((name, chain));
            }
            chains
        });
        for (name, chain) in &chains {
            group.bench_function(criterion::BenchmarkId::new(allocator, *name), |b| {
                b.to_async(&rt).iter(|| async move { chain.validate_config().await.expect("chain") })
            });
        }
    }
    group.finish();
    criterion.final_summary();
    summary(started);
}

fn summary(started: SystemTime) {
    println!("\n## Benchmark 3: chain instantiation, `validate_config` (same-run medians)\n");
    let direct = estimate(started, GROUP, "direct", None);
    if let Some(d) = direct {
        println!("direct adapter validate_config: {} µs\n", us(d.us()));
    }
    println!("| allocator | chain | µs/call (95% CI of median) | + µs over direct | µs/layer | × pooling |");
    println!("|---|---|---|---|---|---|");
    let mut target: Option<f64> = None;
    for (allocator, _) in ALLOCATORS {
        for (name, layers) in CHAINS {
            let Some(e) = estimate(started, GROUP, allocator, Some(name)) else { continue };
            let extra = e.us() - direct.map_or(0.0, |d| d.us());
            let vs_pooling = estimate(started, GROUP, "pooling", Some(name))
                .map(|p| format!("{:.2}×", e.median_ns / p.median_ns))
                .unwrap_or_else(|| "–".into());
            println!(
                "| {allocator} | {name} | {} ({}–{}) | {:+.2} | {} | {vs_pooling} |",
                us(e.us()),
                us(e.low_ns / 1e3),
                us(e.high_ns / 1e3),
                extra,
                us(extra / layers as f64),
            );
            if allocator == "pooling" && name == "retry_fallback" {
                target = Some(e.us());
            }
        }
    }
    if let Some(t) = target {
        println!(
            "\nTarget: chain instantiation ≤ 50 µs median with pooling (retry(fallback)): {} µs → {}",
            us(t),
            verdict(t <= 50.0)
        );
    }
}
