//! Stores kept between calls, the instance pool, and the request passed by handle: a call
//! of a chain whose modules share state reuses a clean store of its chain, never one that
//! trapped, leaked a handle or was abandoned mid-call; by default no store is reused, but
//! calls take never-used stores made ahead of them (ready stores, bounded like idle ones and
//! dropped with their stack); calls beyond the pool wait for a slot; and a layer that rewrites
//! the request hands the next one a new handle.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arcllm::runtime::{Module, ModuleSource, Runtime, Stack};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use async_trait::async_trait;
use serde_json::json;

fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::builder().build().expect("runtime")).clone()
}

async fn counting_tag(rt: &Runtime) -> Arc<Module> {
    let config = json!({"tag": "t", "count_calls": true});
    let tag = rt.load_module("tag", ModuleSource::Bytes, fixtures::TAG.to_vec(), &config).await;
    tag.expect("tag loads").with_share_state(true)
}

async fn hostile(rt: &Runtime, mode: &str) -> Arc<Module> {
    let config = json!({ "mode": mode });
    let module = rt.load_module(mode, ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config).await;
    module.expect("loads").with_share_state(true)
}

/// How many calls the tag instance that served this call had served, this one included.
fn calls_seen(response: &Response) -> u64 {
    response.metadata_value("calls").expect("tag reports calls").parse().expect("a number")
}

async fn invoke(chain: &Stack) -> Result<Response, Error> {
    chain.invoke(Request::new(vec![Message::user("hi")])).await
}

#[tokio::test]
async fn consecutive_calls_reuse_one_store() {
    let rt = runtime();
    let chain = Stack::new(rt.clone(), vec![counting_tag(&rt).await], ScriptedProvider::ok("anthropic"));
    for expected in 1..=3 {
        assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), expected);
    }
}

#[tokio::test]
async fn without_idle_stores_every_call_gets_fresh_instances() {
    let rt = Runtime::builder().max_idle_instances(0).build().unwrap();
    let chain = Stack::new(rt.clone(), vec![counting_tag(&rt).await], ScriptedProvider::ok("anthropic"));
    for _ in 0..3 {
        assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 1);
    }
}

/// Answers once `gate` gives it a permit (returned after the call): calls overlap, or stall.
struct Gated {
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl Provider for Gated {
    async fn invoke(&self, _request: Request) -> Result<Response, Error> {
        let _permit = self.gate.acquire().await.expect("gate open");
        Ok(sample_response("gated"))
    }
    fn name(&self) -> &str {
        "gated"
    }
    fn model_name(&self) -> &str {
        "gated-model"
    }
    async fn validate_config(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[tokio::test]
async fn overlapping_calls_never_share_an_instance() {
    let rt = runtime();
    let inner = Arc::new(Gated { gate: tokio::sync::Semaphore::new(0) });
    let chain = Stack::new(rt.clone(), vec![counting_tag(&rt).await], inner.clone());
    let (a, b) = (tokio::spawn(invoke_owned(chain.clone())), tokio::spawn(invoke_owned(chain.clone())));
    tokio::time::sleep(Duration::from_millis(50)).await;
    inner.gate.add_permits(2);
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!((calls_seen(&a), calls_seen(&b)), (1, 1), "each call had an instance of its own");
    // Both stores went back to the pool; the next call gets one of them.
    assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 2);
}

async fn invoke_owned(chain: Stack) -> Result<Response, Error> {
    invoke(&chain).await
}

#[tokio::test]
async fn calls_beyond_the_instance_pool_wait_for_a_slot_instead_of_failing() {
    // Room for two instances: two one-layer calls in flight, the others queue.
    let rt = Runtime::builder().max_instances(2).build().unwrap();
    let inner = Arc::new(Gated { gate: tokio::sync::Semaphore::new(0) });
    let chain = Stack::new(rt.clone(), vec![counting_tag(&rt).await], inner.clone());
    let calls: Vec<_> = (0..6).map(|_| tokio::spawn(invoke_owned(chain.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(calls.iter().all(|c| !c.is_finished()), "no call fails fast on a full pool");
    inner.gate.add_permits(6);
    for call in calls {
        call.await.unwrap().expect("every call gets its turn");
    }
}

#[tokio::test]
async fn a_chain_longer_than_the_instance_pool_is_an_error_not_a_hang() {
    let rt = Runtime::builder().max_instances(2).build().unwrap();
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    let chain = Stack::new(rt.clone(), vec![passthrough; 3], ScriptedProvider::ok("anthropic"));
    let err =
        tokio::time::timeout(Duration::from_secs(10), invoke(&chain)).await.expect("no hang").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config, "{err}");
    assert!(err.message.contains("max_instances (2)"), "{err}");
}

#[tokio::test]
async fn a_store_where_a_module_trapped_is_not_reused() {
    let rt = runtime();
    let layers = vec![counting_tag(&rt).await, hostile(&rt, "trap-second").await];
    let chain = Stack::new(rt.clone(), layers, ScriptedProvider::ok("anthropic"));
    assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 1);
    let err = invoke(&chain).await.expect_err("the second call traps");
    assert_eq!((err.kind, err.provider.as_str()), (ErrorKind::Module, "trap-second"), "{err}");
    assert!(err.message.contains("unreachable"), "{err}");
    // Fresh instances: the tag's count starts again, and the trapped instance is gone.
    assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 1);
}

#[tokio::test]
async fn a_store_holding_a_leaked_request_handle_is_not_reused() {
    let rt = runtime();
    let layers = vec![counting_tag(&rt).await, hostile(&rt, "leak-handle").await];
    let chain = Stack::new(rt.clone(), layers, ScriptedProvider::ok("anthropic"));
    for _ in 0..3 {
        assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 1, "each call got a fresh store");
    }
}

#[tokio::test]
async fn a_call_abandoned_mid_flight_leaves_the_chain_healthy() {
    let rt = runtime();
    let inner = Arc::new(Gated { gate: tokio::sync::Semaphore::new(0) });
    let chain = Stack::new(rt.clone(), vec![counting_tag(&rt).await], inner.clone());
    let abandoned = tokio::time::timeout(Duration::from_millis(50), invoke(&chain)).await;
    assert!(abandoned.is_err(), "the first call stalls until the caller gives up");
    inner.gate.add_permits(1);
    // The abandoned store was dropped with its call: the next call starts fresh.
    assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 1);
    assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 2);
}

#[tokio::test]
async fn a_rewritten_request_travels_on_as_a_new_handle() {
    let rt = runtime();
    let config = json!({"tag": "t", "suffix": " (rewritten)"});
    let tag = rt.load_module("tag", ModuleSource::Bytes, fixtures::TAG.to_vec(), &config).await.unwrap();
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    let adapter = ScriptedProvider::ok("anthropic");
    let chain = Stack::new(rt.clone(), vec![passthrough.clone(), tag, passthrough], adapter.clone());
    // A long context (1 MiB) that the outer layers forward by handle, unread.
    let long = "x".repeat(1 << 20);
    let request =
        Request::new(vec![Message::user(&long), Message::assistant("noted"), Message::user("go on")]);
    for _ in 0..2 {
        chain.invoke(request.clone()).await.unwrap();
    }
    let calls = adapter.calls();
    assert_eq!(calls.len(), 2);
    let mut expected = request.clone();
    expected.messages[2] = Message::user("go on (rewritten)");
    for call in calls {
        assert_eq!(call.request, expected, "only the last user text changed");
    }
}

/// Waits until `chain` has `count` ready stores; false if it has not after 10 s.
async fn ready_stores_reach(chain: &Stack, count: usize) -> bool {
    for _ in 0..1000 {
        if chain.ready_stores() >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn calls_take_never_used_stores_made_ahead_of_them() {
    let rt = Runtime::builder().ready_stores(2).build().unwrap();
    let config = json!({"tag": "t", "count_calls": true});
    let tag = rt.load_module("tag", ModuleSource::Bytes, fixtures::TAG.to_vec(), &config).await.unwrap();
    let chain = Stack::new(rt.clone(), vec![tag], ScriptedProvider::ok("anthropic"));
    assert_eq!(chain.ready_stores(), 0, "nothing is made before the first call");
    assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 1);
    assert!(ready_stores_reach(&chain, 2).await, "the first call had two ready stores made");
    for _ in 0..5 {
        // Each ready store serves one call: no module state crosses calls.
        assert_eq!(calls_seen(&invoke(&chain).await.unwrap()), 1);
    }
    assert!(ready_stores_reach(&chain, 2).await, "every call has the ready stores topped up");
    assert_eq!(chain.ready_stores(), 2, "never more than asked for");
}

#[tokio::test]
async fn ready_stores_count_against_the_idle_allowance_and_the_stack_share() {
    // Idle allowance of one instance: one ready store of a one-layer stack at most.
    let rt = Runtime::builder().max_idle_instances(1).ready_stores(4).build().unwrap();
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    let chain = Stack::new(rt.clone(), vec![passthrough], ScriptedProvider::ok("anthropic"));
    invoke(&chain).await.unwrap();
    assert!(ready_stores_reach(&chain, 1).await);
    invoke(&chain).await.unwrap();
    assert!(ready_stores_reach(&chain, 1).await);
    assert_eq!(chain.ready_stores(), 1, "the idle allowance bounds ready stores");
    // No idle allowance: no ready stores, every call instantiates its own.
    let rt = Runtime::builder().max_idle_instances(0).ready_stores(4).build().unwrap();
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    let chain = Stack::new(rt.clone(), vec![passthrough], ScriptedProvider::ok("anthropic"));
    for _ in 0..3 {
        invoke(&chain).await.unwrap();
    }
    assert_eq!(chain.ready_stores(), 0);
}

#[tokio::test]
async fn a_dropped_stack_gives_its_ready_stores_slots_back() {
    // Two instance slots; a one-layer stack's share is one, and its ready store holds it.
    let rt = Runtime::builder().max_instances(2).max_idle_instances(2).ready_stores(2).build().unwrap();
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    let one = Stack::new(rt.clone(), vec![passthrough.clone()], ScriptedProvider::ok("anthropic"));
    invoke(&one).await.unwrap();
    assert!(ready_stores_reach(&one, 1).await);
    assert_eq!(one.ready_stores(), 1, "the stack's share of slots bounds its ready stores");
    // A two-layer stack needs both slots: it gets them once the first stack (a reload
    // replaced it, say) is gone with its ready store.
    drop(one);
    let two =
        Stack::new(rt.clone(), vec![passthrough.clone(), passthrough], ScriptedProvider::ok("anthropic"));
    let call = tokio::time::timeout(Duration::from_secs(10), invoke(&two)).await;
    call.expect("the dropped stack's ready store released its slot").unwrap();
}
