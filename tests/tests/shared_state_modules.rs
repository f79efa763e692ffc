//! The shared-state modules (`rate_limit`, `circuit_breaker`, retry's budget), run as the
//! real compiled components over the in-process store. tokio's clock is paused: the store
//! reads it, the modules sleep on it, and the test provider records it, so waits are exact
//! and take no real time.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arcllm::runtime::{RandomSource, Runtime, Stack};
use arcllm::state::{Clock, StateStore};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::{json, Value};

fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::builder().build().expect("runtime")).clone()
}

/// A store of its own for each test (the process-wide one would mix tests' state).
fn store() -> StateStore {
    StateStore::memory(Clock::default(), 10_000)
}

async fn stack(modules: &[(&str, Value)], inner: Arc<ScriptedProvider>, state: &StateStore) -> Stack {
    let rt = runtime();
    let mut loaded = Vec::new();
    for (name, config) in modules {
        loaded.push(builtin(&rt, name, config.clone()).await);
    }
    Stack::new(rt, loaded, inner).with_state(state.clone()).with_random(RandomSource::repeating(vec![0]))
}

fn request() -> Request {
    Request::new(vec![Message::user("hello")])
}

#[tokio::test(start_paused = true)]
async fn rate_limit_lets_a_burst_through_then_waits_for_tokens_then_fails_with_429() {
    let inner = ScriptedProvider::ok("primary");
    let state = store();
    let config = json!({"requests_per_minute": 60, "burst_capacity": 2, "max_wait_seconds": 1.5});
    let chain = stack(&[("rate_limit", config)], inner.clone(), &state).await;
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        chain.invoke(request()).await.expect("within the limit");
    }
    // Two at once, the third a second later (60 a minute).
    assert_eq!(inner.gaps(), [0.0, 1.0]);
    // Tokens are one a second, and nothing is reserved while a call waits: two calls at
    // once both wait a second, one gets the token, the other would wait a second more,
    // past max_wait_seconds (1.5 s).
    let (a, b) = tokio::join!(chain.invoke(request()), chain.invoke(request()));
    assert!(a.is_ok() != b.is_ok(), "one goes, one is refused: {a:?} {b:?}");
    let err = a.err().or(b.err()).unwrap();
    assert_eq!((err.kind, err.status, err.provider.as_str()), (ErrorKind::Api, Some(429), "primary"));
    assert!(
        err.message.contains("rate limit") && err.message.contains("max_wait_seconds"),
        "{}",
        err.message
    );
    let retry_after = err.retry_after_ms.expect("says when a token is due");
    assert!((1..=1000).contains(&retry_after), "{retry_after}");
    assert_eq!(inner.call_count(), 4);
    assert!(started.elapsed() <= Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn two_stacks_on_one_store_share_the_bucket_and_other_providers_do_not() {
    let state = store();
    let config = json!({"requests_per_minute": 1, "burst_capacity": 1, "max_wait_seconds": 0});
    let (one, two, other) =
        (ScriptedProvider::ok("primary"), ScriptedProvider::ok("primary"), ScriptedProvider::ok("groq"));
    let a = stack(&[("rate_limit", config.clone())], one.clone(), &state).await;
    let b = stack(&[("rate_limit", config.clone())], two.clone(), &state).await;
    let c = stack(&[("rate_limit", config)], other.clone(), &state).await;
    a.invoke(request()).await.expect("the one token");
    assert_eq!(b.invoke(request()).await.expect_err("shared bucket is empty").status, Some(429));
    c.invoke(request()).await.expect("another provider has its own bucket");
    assert_eq!((one.call_count(), two.call_count(), other.call_count()), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn retry_waits_out_the_rate_limit_429() {
    let inner = ScriptedProvider::ok("primary");
    let state = store();
    let chain = stack(
        &[
            ("retry", json!({"max_retries": 3})),
            ("rate_limit", json!({"requests_per_minute": 30, "burst_capacity": 1, "max_wait_seconds": 0})),
        ],
        inner.clone(),
        &state,
    )
    .await;
    chain.invoke(request()).await.unwrap();
    let response = chain.invoke(request()).await.expect("retry waits for the token");
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("2"));
    // The token was due 2 s later, and retry waited exactly its retry_after.
    assert_eq!(inner.gaps(), [2.0]);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_fails_fast_then_probes_and_closes() {
    let inner = ScriptedProvider::scripted(
        "primary",
        vec![Err(api_error("primary", 503)), Err(api_error("primary", 503))],
        Ok(sample_response("primary")),
    );
    let state = store();
    let config = json!({"failure_threshold": 2, "window_seconds": 60, "cooldown_seconds": 10});
    let chain = stack(&[("circuit_breaker", config)], inner.clone(), &state).await;
    for _ in 0..2 {
        assert_eq!(chain.invoke(request()).await.unwrap_err().status, Some(503));
    }
    // Open: no call reaches the provider.
    let fast = chain.invoke(request()).await.unwrap_err();
    assert_eq!((fast.kind, fast.status, inner.call_count()), (ErrorKind::Api, Some(503), 2));
    assert!(
        fast.message.contains("circuit breaker") && fast.message.contains("no call made"),
        "{}",
        fast.message
    );
    assert_eq!(fast.retry_after_ms, Some(10_000));
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Half-open: the probe goes, succeeds, and the breaker is closed again.
    chain.invoke(request()).await.expect("the probe");
    chain.invoke(request()).await.expect("closed");
    assert_eq!(inner.call_count(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_error_of_a_kind_that_is_not_the_providers_health_does_not_open_it() {
    let inner = ScriptedProvider::failing("primary", api_error("primary", 400));
    let state = store();
    let chain = stack(&[("circuit_breaker", json!({"failure_threshold": 1}))], inner.clone(), &state).await;
    for _ in 0..3 {
        assert_eq!(chain.invoke(request()).await.unwrap_err().status, Some(400));
    }
    assert_eq!(inner.call_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_stops_retries_beyond_its_share_and_logs_why() {
    let inner = ScriptedProvider::failing("primary", api_error("primary", 503));
    let state = store();
    let (logs, _guard) = logs::capture();
    let config = json!({"max_retries": 3, "backoff_base_seconds": 0.1, "budget_percent": 50, "budget_window_seconds": 60});
    let chain = stack(&[("retry", config)], inner.clone(), &state).await;
    // Two requests: one retry allowed between them (50%), then none.
    chain.invoke(request()).await.unwrap_err();
    let after_first = inner.call_count();
    chain.invoke(request()).await.unwrap_err();
    assert_eq!(after_first, 1, "one request, no budget yet: 50% of 1 is 0.5 retries");
    assert_eq!(inner.call_count(), 3, "the second request got the one retry two requests allow");
    assert!(logs.text().contains("retry budget spent"), "{}", logs.text());
    // Without a budget, retry retries as before.
    let unbudgeted = ScriptedProvider::failing("primary", api_error("primary", 503));
    let plain = stack(
        &[("retry", json!({"max_retries": 3, "backoff_base_seconds": 0.1}))],
        unbudgeted.clone(),
        &state,
    )
    .await;
    plain.invoke(request()).await.unwrap_err();
    assert_eq!(unbudgeted.call_count(), 4);
}

#[tokio::test(start_paused = true)]
async fn state_keys_are_per_module_so_modules_cannot_see_each_others_state() {
    // The breaker and the rate limit both key by provider name; each sees only its own.
    let inner = ScriptedProvider::failing("primary", api_error("primary", 503));
    let state = store();
    let chain = stack(
        &[
            ("rate_limit", json!({"requests_per_minute": 600, "burst_capacity": 100, "max_wait_seconds": 0})),
            ("circuit_breaker", json!({"failure_threshold": 1, "cooldown_seconds": 30})),
        ],
        inner.clone(),
        &state,
    )
    .await;
    chain.invoke(request()).await.unwrap_err();
    let fast = chain.invoke(request()).await.unwrap_err();
    assert!(fast.message.contains("circuit breaker"), "{}", fast.message);
    assert_eq!(inner.call_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn state_operations_beyond_the_calls_allowance_stop_the_module_that_made_them() {
    let rt = Runtime::builder().max_state_ops_per_call(1).build().expect("runtime");
    let inner = ScriptedProvider::ok("primary");
    let limit = builtin(&rt, "rate_limit", json!({"requests_per_minute": 600})).await;
    let breaker = builtin(&rt, "circuit_breaker", json!({})).await;
    let chain = Stack::new(rt, vec![limit, breaker], inner.clone()).with_state(store());
    // The rate limit's take is the call's one operation; the breaker's gate is one too many.
    let err = chain.invoke(request()).await.unwrap_err();
    assert_eq!((err.kind, err.provider.as_str()), (ErrorKind::Module, "circuit_breaker"), "{err:?}");
    assert!(err.message.contains("shared-state operations"), "{}", err.message);
    assert_eq!(inner.call_count(), 0);
}
