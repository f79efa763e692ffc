//! The retry module, run as the real compiled component. Twins of the seed's retry tests,
//! plus the peers' rules (x-should-retry, max_elapsed_seconds).
//!
//! Waits are asserted exactly without sleeping: tokio's clock is paused (it auto-advances
//! to the next timer when every task is idle), the module sleeps on WASI clocks that the
//! host runs on tokio timers, and the test provider records tokio's clock at each call.

use std::sync::{Arc, OnceLock};

use arcllm::runtime::{LoadErrorKind, ModuleSource, RandomSource, Runtime, Stack};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::{json, Value};

fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::builder().build().expect("runtime")).clone()
}

/// Random bytes that make every `uniform(0, 1)` draw exactly 0: no jitter.
fn no_jitter() -> RandomSource {
    RandomSource::repeating(vec![0])
}

/// Random bytes that make every draw exactly 0.5 (the u64 0x8000…0).
fn half_jitter() -> RandomSource {
    RandomSource::repeating(vec![0x80, 0, 0, 0, 0, 0, 0, 0])
}

async fn retry_chain(config: Value, inner: Arc<ScriptedProvider>, random: RandomSource) -> Stack {
    let rt = runtime();
    let module = builtin(&rt, "retry", config).await;
    Stack::new(rt, vec![module], inner).with_random(random)
}

fn ok() -> Result<Response, Error> {
    Ok(sample_response("primary"))
}

fn request() -> Request {
    Request::new(vec![Message::user("hello")])
}

fn assert_gaps(actual: Vec<f64>, expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "waits {actual:?}, expected {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() < 1e-6, "waits {actual:?}, expected {expected:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn first_try_succeeds_no_retry() {
    let inner = ScriptedProvider::ok("primary");
    let chain = retry_chain(json!({}), inner.clone(), no_jitter()).await;
    let response = chain.invoke(request()).await.expect("success");
    assert_eq!(inner.call_count(), 1);
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("1"));
    assert_eq!(response.content, sample_response("primary").content);
}

#[tokio::test(start_paused = true)]
async fn retries_each_retryable_status_then_succeeds() {
    for status in [429, 500, 502, 503, 529] {
        let inner = ScriptedProvider::scripted("primary", vec![Err(api_error("primary", status))], ok());
        let chain = retry_chain(json!({}), inner.clone(), no_jitter()).await;
        let response = chain.invoke(request()).await.unwrap_or_else(|e| panic!("status {status}: {e:?}"));
        assert_eq!(inner.call_count(), 2, "status {status}");
        assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("2"));
    }
}

#[tokio::test(start_paused = true)]
async fn retries_connection_and_timeout_errors_then_succeeds() {
    for kind in [ErrorKind::Connection, ErrorKind::Timeout] {
        let inner = ScriptedProvider::scripted("primary", vec![Err(error_of(kind, "primary"))], ok());
        let chain = retry_chain(json!({}), inner.clone(), no_jitter()).await;
        assert!(chain.invoke(request()).await.is_ok(), "{kind}");
        assert_eq!(inner.call_count(), 2, "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn max_retries_exceeded_returns_the_last_error_unchanged() {
    let errors = [500, 502, 503, 529].map(|s| Error {
        retry_after_ms: None,
        message: format!("attempt with status {s}"),
        ..api_error("primary", s)
    });
    let inner = ScriptedProvider::scripted(
        "primary",
        errors.iter().cloned().map(Err).collect(),
        Ok(sample_response("too late")),
    );
    let chain = retry_chain(json!({"max_retries": 3}), inner.clone(), no_jitter()).await;
    let err = chain.invoke(request()).await.expect_err("exhausted");
    assert_eq!(inner.call_count(), 4);
    assert_eq!(err, errors[3], "the last error, every field unchanged");
}

#[tokio::test(start_paused = true)]
async fn raises_the_original_error_type() {
    let original =
        Error { message: "connection refused".into(), ..error_of(ErrorKind::Connection, "primary") };
    let inner = ScriptedProvider::failing("primary", original.clone());
    let chain = retry_chain(json!({"max_retries": 2}), inner.clone(), no_jitter()).await;
    assert_eq!(chain.invoke(request()).await, Err(original));
    assert_eq!(inner.call_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn never_retries_400_401_403() {
    for status in [400, 401, 403] {
        let error = api_error("primary", status);
        let inner = ScriptedProvider::scripted("primary", vec![Err(error.clone())], ok());
        let chain = retry_chain(json!({}), inner.clone(), no_jitter()).await;
        assert_eq!(chain.invoke(request()).await, Err(error), "status {status}");
        assert_eq!(inner.call_count(), 1, "status {status}");
    }
}

#[tokio::test(start_paused = true)]
async fn never_retries_statuses_outside_the_set_or_non_api_errors() {
    let cases = [
        api_error("primary", 404),
        api_error("primary", 422),
        api_error("primary", 501),
        error_of(ErrorKind::Config, "primary"),
        error_of(ErrorKind::Parse, "primary"),
        error_of(ErrorKind::Module, "primary"),
    ];
    for error in cases {
        let inner = ScriptedProvider::scripted("primary", vec![Err(error.clone())], ok());
        let chain = retry_chain(json!({}), inner.clone(), no_jitter()).await;
        assert_eq!(chain.invoke(request()).await, Err(error.clone()));
        assert_eq!(inner.call_count(), 1, "{}", error.summary());
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_increases_exponentially() {
    let inner = ScriptedProvider::failing("primary", api_error("primary", 500));
    let chain =
        retry_chain(json!({"max_retries": 3, "backoff_base_seconds": 1.0}), inner.clone(), no_jitter()).await;
    assert!(chain.invoke(request()).await.is_err());
    assert_gaps(inner.gaps(), &[1.0, 2.0, 4.0]);
}

#[tokio::test(start_paused = true)]
async fn backoff_is_capped_at_max_wait() {
    let inner = ScriptedProvider::failing("primary", api_error("primary", 503));
    let config = json!({"max_retries": 3, "backoff_base_seconds": 10, "max_wait_seconds": 15});
    let chain = retry_chain(config, inner.clone(), no_jitter()).await;
    assert!(chain.invoke(request()).await.is_err());
    assert_gaps(inner.gaps(), &[10.0, 15.0, 15.0]);
}

#[tokio::test(start_paused = true)]
async fn backoff_keeps_its_jitter_at_the_cap() {
    // 10 + 0.5 * 10 reaches the cap of 15: each wait is drawn from (0.75 * 15, 15] instead
    // of being the cap itself, so clients at the cap do not retry in lockstep.
    let inner = ScriptedProvider::failing("primary", api_error("primary", 503));
    let config = json!({"max_retries": 3, "backoff_base_seconds": 10, "max_wait_seconds": 15});
    let chain = retry_chain(config, inner.clone(), half_jitter()).await;
    assert!(chain.invoke(request()).await.is_err());
    assert_gaps(inner.gaps(), &[13.125, 13.125, 13.125]);
}

#[tokio::test(start_paused = true)]
async fn jitter_is_applied() {
    // A draw of exactly 0.5 adds half of each base wait.
    let inner = ScriptedProvider::failing("primary", api_error("primary", 429));
    let chain = retry_chain(json!({"max_retries": 3}), inner.clone(), half_jitter()).await;
    assert!(chain.invoke(request()).await.is_err());
    assert_gaps(inner.gaps(), &[1.5, 3.0, 6.0]);

    // With the OS's randomness each wait lies in [b, 2b), and they are not all exactly b.
    let inner = ScriptedProvider::failing("primary", api_error("primary", 429));
    let chain = retry_chain(json!({"max_retries": 5}), inner.clone(), RandomSource::os()).await;
    assert!(chain.invoke(request()).await.is_err());
    let gaps = inner.gaps();
    assert_eq!(gaps.len(), 5);
    for (n, gap) in gaps.iter().enumerate() {
        let b = 2f64.powi(n as i32);
        assert!(*gap >= b && *gap < 2.0 * b, "wait {n} = {gap}, outside [{b}, {})", 2.0 * b);
    }
    assert!(
        gaps.iter().enumerate().any(|(n, g)| (g - 2f64.powi(n as i32)).abs() > 1e-9),
        "no jitter: {gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn custom_max_retries() {
    for (max_retries, calls) in [(0, 1), (1, 2), (5, 6)] {
        let inner = ScriptedProvider::failing("primary", api_error("primary", 500));
        let chain = retry_chain(json!({"max_retries": max_retries}), inner.clone(), no_jitter()).await;
        assert!(chain.invoke(request()).await.is_err());
        assert_eq!(inner.call_count(), calls, "max_retries = {max_retries}");
    }
}

#[tokio::test(start_paused = true)]
async fn custom_retry_codes() {
    let config = json!({"retryable_status_codes": [418, 500]});
    let inner = ScriptedProvider::scripted("primary", vec![Err(api_error("primary", 418))], ok());
    let chain = retry_chain(config.clone(), inner.clone(), no_jitter()).await;
    assert!(chain.invoke(request()).await.is_ok());
    assert_eq!(inner.call_count(), 2, "418 is in the custom set");

    let inner = ScriptedProvider::scripted("primary", vec![Err(api_error("primary", 429))], ok());
    let chain = retry_chain(config, inner.clone(), no_jitter()).await;
    assert_eq!(chain.invoke(request()).await.unwrap_err().status, Some(429));
    assert_eq!(inner.call_count(), 1, "429 is not in the custom set");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honored_without_jitter_and_capped() {
    let with_retry_after = |ms| Error { retry_after_ms: Some(ms), ..api_error("primary", 429) };
    let inner = ScriptedProvider::scripted("primary", vec![Err(with_retry_after(2500))], ok());
    let chain = retry_chain(json!({}), inner.clone(), half_jitter()).await;
    assert!(chain.invoke(request()).await.is_ok());
    assert_gaps(inner.gaps(), &[2.5]);

    let inner = ScriptedProvider::scripted("primary", vec![Err(with_retry_after(120_000))], ok());
    let chain = retry_chain(json!({"max_wait_seconds": 60}), inner.clone(), half_jitter()).await;
    assert!(chain.invoke(request()).await.is_ok());
    assert_gaps(inner.gaps(), &[60.0]);
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_overrides_the_status_rule() {
    let hinted = |status, hint| Error { should_retry: Some(hint), ..api_error("primary", status) };
    // false stops a retry the status would allow…
    let inner = ScriptedProvider::scripted("primary", vec![Err(hinted(503, false))], ok());
    let chain = retry_chain(json!({}), inner.clone(), no_jitter()).await;
    assert!(chain.invoke(request()).await.is_err());
    assert_eq!(inner.call_count(), 1);
    // …true retries a status outside the set…
    let inner = ScriptedProvider::scripted("primary", vec![Err(hinted(409, true))], ok());
    let chain = retry_chain(json!({}), inner.clone(), no_jitter()).await;
    assert!(chain.invoke(request()).await.is_ok());
    assert_eq!(inner.call_count(), 2);
    // …but never makes 400, 401 or 403 retryable.
    let inner = ScriptedProvider::scripted("primary", vec![Err(hinted(401, true))], ok());
    let chain = retry_chain(json!({}), inner.clone(), no_jitter()).await;
    assert!(chain.invoke(request()).await.is_err());
    assert_eq!(inner.call_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_bounds_all_attempts() {
    // Waits would be 1, 2, 4: after 1 + 2 = 3 s, a 4 s wait would end at 7 s > 5 s.
    let inner = ScriptedProvider::failing("primary", api_error("primary", 500));
    let config = json!({"max_retries": 10, "max_elapsed_seconds": 5});
    let chain = retry_chain(config, inner.clone(), no_jitter()).await;
    let start = tokio::time::Instant::now();
    assert_eq!(chain.invoke(request()).await.unwrap_err().status, Some(500));
    assert_gaps(inner.gaps(), &[1.0, 2.0]);
    assert!(start.elapsed().as_secs_f64() <= 5.0);
}

#[tokio::test(start_paused = true)]
async fn logs_each_retry_at_warn_and_exhaustion_at_error() {
    let (logs, _guard) = logs::capture();
    let inner = ScriptedProvider::failing("primary", api_error("primary", 503));
    let chain = retry_chain(json!({"max_retries": 2}), inner.clone(), no_jitter()).await;
    assert!(chain.invoke(request()).await.is_err());
    let text = logs.text();
    let warn =
        |needle: &str| text.lines().any(|l| l.contains("WARN") && l.contains(needle) && l.contains("retry"));
    assert!(warn("attempt 1 of 3 failed") && warn("retrying in 1.000s"), "{text}");
    assert!(warn("attempt 2 of 3 failed") && warn("retrying in 2.000s"), "{text}");
    assert!(text.lines().any(|l| l.contains("ERROR") && l.contains("giving up after 3 attempts")), "{text}");
}

#[tokio::test]
async fn invalid_config_is_rejected_at_load() {
    let cases = [
        (json!({"max_retries": -1}), "max_retries"),
        (json!({"max_retries": "3"}), "max_retries"),
        (json!({"max_retries": 1.5}), "max_retries"),
        (json!({"backoff_base_seconds": 0}), "backoff_base_seconds"),
        (json!({"backoff_base_seconds": -1.0}), "backoff_base_seconds"),
        (json!({"max_wait_seconds": 0}), "max_wait_seconds"),
        (json!({"max_elapsed_seconds": -5}), "max_elapsed_seconds"),
        (json!({"retryable_status_codes": 429}), "retryable_status_codes"),
        (json!({"retryable_status_codes": [429, "500"]}), "retryable_status_codes"),
        (json!({"retryable_status_codes": [429, 401]}), "401"),
        (json!({"retryable_status_codes": [99]}), "retryable_status_codes"),
        (json!({"max_retry": 3}), "max_retry"),
    ];
    for (config, needle) in cases {
        let err = runtime()
            .load_module("retry", ModuleSource::Builtin, arcllm::builtin::RETRY.to_vec(), &config)
            .await
            .expect_err(&format!("{config} must be rejected"));
        assert!(matches!(err.kind, LoadErrorKind::Config { .. }), "{config}: {err}");
        let text = err.to_string();
        assert!(text.contains("`retry`") && text.contains(needle), "{config}: {text}");
    }
}
