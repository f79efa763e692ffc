//! What the host holds for a module is bounded by a small multiple of the module's own
//! memory cap: the requests behind handles a module makes (per call), the adapters the
//! registry creates for the targets modules name (a bounded cache), and the memory of the
//! stores kept idle between calls (per store and in all).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arcllm::runtime::{CallLimits, LazyRegistry, Module, ModuleSource, Runtime, Stack};
use arcllm::target::Target;
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::json;

async fn hostile(rt: &Runtime, mode: &str, extra: serde_json::Value) -> Arc<Module> {
    let mut config = json!({ "mode": mode });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    rt.load_module(mode, ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config).await.expect("loads")
}

async fn counting_tag(rt: &Runtime) -> Arc<Module> {
    let config = json!({"tag": "t", "count_calls": true});
    let tag = rt.load_module("tag", ModuleSource::Bytes, fixtures::TAG.to_vec(), &config).await;
    tag.expect("tag loads").with_share_state(true)
}

async fn invoke(chain: &Stack) -> Result<Response, Error> {
    chain.invoke(Request::new(vec![Message::user("hi")])).await
}

fn calls_seen(response: &Response) -> u64 {
    response.metadata_value("calls").expect("tag reports calls").parse().expect("a number")
}

// ---- requests held for handles a module makes -----------------------------------------

#[tokio::test]
async fn request_handles_a_module_makes_are_bounded_in_bytes_per_call() {
    let rt = Runtime::builder().max_request_bytes_per_call(16 << 20).build().unwrap();
    // 100 handles of 1 MiB each: 100 MiB held by the host for one call, without a bound.
    let module = hostile(&rt, "big-handle", json!({ "size": 1 << 20, "count": 100 })).await;
    let chain = Stack::new(rt.clone(), vec![module], ScriptedProvider::ok("anthropic"));
    let err = invoke(&chain).await.expect_err("the module is stopped");
    assert_eq!((err.kind, err.provider.as_str()), (ErrorKind::Module, "big-handle"), "{err}");
    assert!(err.message.contains("module `big-handle`"), "{err}");
    assert!(err.message.contains("more than 16777216 bytes of requests"), "{err}");
}

#[tokio::test]
async fn the_default_bound_is_four_times_the_memory_cap() {
    let rt = Runtime::builder().memory_limit(16 << 20).build().unwrap();
    assert_eq!(rt.host_limits().request_bytes_per_call, 64 << 20);
    let module = hostile(&rt, "big-handle", json!({ "size": 1 << 20, "count": 80 })).await;
    let chain = Stack::new(rt.clone(), vec![module], ScriptedProvider::ok("anthropic"));
    let err = invoke(&chain).await.expect_err("80 MiB is over 64 MiB");
    assert_eq!((err.kind, err.provider.as_str()), (ErrorKind::Module, "big-handle"), "{err}");
}

#[tokio::test]
async fn handles_within_the_bound_work_and_their_bytes_are_returned_when_dropped() {
    let rt = Runtime::builder().max_request_bytes_per_call(16 << 20).build().unwrap();
    let module = hostile(&rt, "big-handle", json!({ "size": 1 << 20, "count": 10 })).await;
    let chain = Stack::new(
        rt.clone(),
        vec![counting_tag(&rt).await, module.with_share_state(true)],
        ScriptedProvider::ok("x"),
    );
    // One store serves all three calls: 10 MiB each, freed at the end of each call.
    for expected in 1..=3 {
        assert_eq!(calls_seen(&invoke(&chain).await.expect("within the bound")), expected);
    }
}

#[tokio::test]
async fn an_inner_module_over_the_bound_is_the_one_named() {
    let rt = Runtime::builder().max_request_bytes_per_call(8 << 20).build().unwrap();
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    let module = hostile(&rt, "big-handle", json!({ "size": 1 << 20, "count": 20 })).await;
    let chain = Stack::new(rt.clone(), vec![passthrough, module], ScriptedProvider::ok("anthropic"));
    let err = invoke(&chain).await.expect_err("stopped");
    assert_eq!((err.kind, err.provider.as_str()), (ErrorKind::Module, "big-handle"), "{err}");
}

// ---- the registry's cache of adapters -------------------------------------------------

fn counting_registry(created: Arc<AtomicUsize>) -> LazyRegistry {
    LazyRegistry::new(move |name, _model| {
        created.fetch_add(1, Ordering::SeqCst);
        Ok(ScriptedProvider::ok(name) as Arc<dyn Provider>)
    })
}

#[tokio::test]
async fn targets_a_module_names_do_not_grow_the_registry_without_bound() {
    // Reach and the call cap would stop this module first: let it name 300 targets in one
    // call, so that the cache's own bound is what is tested.
    let limits = CallLimits { max_calls_per_invoke: 1000, ..CallLimits::default() };
    let rt = Runtime::builder().build().unwrap().with_call_limits(limits);
    let made = Arc::new(AtomicUsize::new(0));
    let registry = Arc::new(counting_registry(made.clone()));
    let module =
        hostile(&rt, "registry-names", json!({ "size": 200, "count": 300, "target": "openai" })).await;
    let reach = (0..300).map(|i| Target::parse(&format!("openai/{}{i}", "m".repeat(200))).unwrap()).collect();
    let module = module.with_reach(reach);
    let chain = Stack::new(rt.clone(), vec![module], ScriptedProvider::ok("anthropic"))
        .with_registry(registry.clone());
    invoke(&chain).await.expect("the last target answers");
    assert_eq!(made.load(Ordering::SeqCst), 300, "every new name made an adapter");
    assert_eq!(registry.created(), 300);
    assert_eq!(registry.cached(), 64, "only the 64 most recently used are kept");
}

#[test]
fn the_registry_evicts_the_least_recently_used_target() {
    let made = Arc::new(AtomicUsize::new(0));
    let registry = counting_registry(made.clone()).with_capacity(2);
    for target in ["a", "b", "a", "c"] {
        registry.get(target).unwrap();
    }
    assert_eq!(made.load(Ordering::SeqCst), 3);
    registry.get("a").unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 3, "`a` was used recently: still cached");
    registry.get("b").unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 4, "`b` was the least recently used: evicted");
    assert_eq!(registry.cached(), 2);
}

// ---- memory of idle stores ------------------------------------------------------------

#[tokio::test]
async fn a_store_whose_memory_grew_past_the_idle_limit_is_dropped_after_its_call() {
    let rt = Runtime::builder().build().unwrap();
    let grow = hostile(&rt, "grow", json!({ "size": 32 << 20 })).await.with_share_state(true);
    let chain = Stack::new(rt.clone(), vec![counting_tag(&rt).await, grow], ScriptedProvider::ok("x"));
    for _ in 0..3 {
        assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 1, "a fresh store every call");
    }
}

#[tokio::test]
async fn a_store_within_the_idle_limit_is_kept() {
    let rt = Runtime::builder().build().unwrap();
    let grow = hostile(&rt, "grow", json!({ "size": 1 << 10 })).await.with_share_state(true);
    let chain = Stack::new(rt.clone(), vec![counting_tag(&rt).await, grow], ScriptedProvider::ok("x"));
    for expected in 1..=3 {
        assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), expected, "the store is reused");
    }
}

#[tokio::test]
async fn idle_stores_together_stay_within_the_runtime_idle_memory() {
    // Room for no idle memory at all: no store is kept, whatever its size.
    let rt = Runtime::builder().max_idle_memory(0).build().unwrap();
    let chain = Stack::new(rt.clone(), vec![counting_tag(&rt).await], ScriptedProvider::ok("x"));
    for _ in 0..3 {
        assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 1);
    }
}
