//! `arcllm serve` with the official OpenAI and Anthropic Python SDKs as clients (pinned in
//! tests/gateway/requirements.txt; `ARCLLM_TEST_PYTHON` names the interpreter, which
//! `.ci/run` sets up), in front of loopback fake vendors of both formats.

mod support;

use serde_json::Value;
use support::*;

/// No module: the vendors' streams pass through as they come.
const PLAIN: &str = "[server]\napi_keys_env = \"ARCLLM_TEST_GATEWAY_KEYS\"\nmax_body_bytes = 200000\n[aliases]\nfast = \"vend_openai\"\n";

/// Retry on (one retry, short waits).
const RETRYING: &str = "[server]\napi_keys_env = \"ARCLLM_TEST_GATEWAY_KEYS\"\n[modules.retry]\nenabled = true\nmax_retries = 1\nbackoff_base_seconds = 0.01\nmax_wait_seconds = 0.05\n";

const KEYS: (&str, &str) = ("ARCLLM_TEST_GATEWAY_KEYS", "other-key, gw-test-key-1");

struct Setup {
    openai: Vendor,
    anthropic: Vendor,
    serve: Serve,
}

async fn setup(config: &str) -> Setup {
    let openai = Vendor::start("openai").await;
    let anthropic = Vendor::start("anthropic").await;
    let serve = Serve::start(config, &[&openai, &anthropic], &[KEYS]);
    Setup { openai, anthropic, serve }
}

/// Runs a scenario off the async threads (the fake vendors run on them).
async fn run(python: &str, serve: &Serve, name: &str, key: &str) -> Value {
    tokio::task::block_in_place(|| sdk(python, serve, name, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_streams_cross_formats_both_ways() {
    let Some(python) = python() else { return };
    let s = setup(PLAIN).await;
    for (scenario, vendor, other) in [
        ("openai_to_anthropic", &s.anthropic, &s.openai),
        ("anthropic_to_openai", &s.openai, &s.anthropic),
        ("openai_to_openai", &s.openai, &s.anthropic),
        ("anthropic_to_anthropic", &s.anthropic, &s.openai),
    ] {
        vendor.reset();
        other.reset();
        let out = run(&python, &s.serve, scenario, GATEWAY_KEY).await;
        assert_eq!(
            out["text"]["usage"]["completion_tokens"]
                .as_u64()
                .or(out["text"]["usage"]["output_tokens"].as_u64()),
            Some(7),
            "{out}"
        );
        let requests = vendor.requests();
        assert_eq!((requests.len(), other.count()), (2, 0), "{scenario}: {requests:?}");
        assert_ne!(requests[0]["stream"], true, "{scenario}");
        // No module: the stream reached the vendor as a stream.
        assert_eq!(requests[1]["stream"], true, "{scenario}");
        assert_eq!(requests[1]["max_tokens"].as_u64().is_some(), true, "{scenario}");
    }
    let log = s.serve.log();
    assert!(log.contains("route=\"/v1/messages\"") || log.contains("route=/v1/messages"), "{log}");
    assert!(!log.contains("hello there") && !log.contains(GATEWAY_KEY) && !log.contains(VENDOR_KEY), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_round_trip_through_both_sdks() {
    let Some(python) = python() else { return };
    let s = setup(PLAIN).await;
    let out = run(&python, &s.serve, "tools", GATEWAY_KEY).await;
    assert_eq!(out["openai_to_anthropic"]["call_id"], "toolu_v1", "{out}");
    assert_eq!(out["anthropic_to_openai"]["tool_use_id"], "call_v1", "{out}");
    // The second turn reached the Anthropic vendor with the tool call and its result.
    let second =
        s.anthropic.requests().into_iter().find(|r| r["messages"].as_array().unwrap().len() == 3).unwrap();
    assert_eq!(second["messages"][1]["content"][0]["type"], "tool_use", "{second}");
    assert_eq!(second["messages"][1]["content"][0]["input"]["city"], "Paris", "{second}");
    assert_eq!(second["messages"][2]["content"][0]["tool_use_id"], "toolu_v1", "{second}");
    let second =
        s.openai.requests().into_iter().find(|r| r["messages"].as_array().unwrap().len() == 3).unwrap();
    assert_eq!(second["messages"][1]["tool_calls"][0]["function"]["name"], "get_weather", "{second}");
    assert_eq!(second["messages"][2]["role"], "tool", "{second}");
    assert_eq!(second["tools"][0]["function"]["parameters"]["required"][0], "city", "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_then_200_is_retried_inside_the_gateway() {
    let Some(python) = python() else { return };
    let s = setup(RETRYING).await;
    s.anthropic.script(&[429]);
    s.openai.script(&[429]);
    let out = run(&python, &s.serve, "retried", GATEWAY_KEY).await;
    assert!(out["openai"]["text"].as_str().unwrap().starts_with("anthropic heard"), "{out}");
    // One SDK call each, two vendor requests each: the retry was the gateway's.
    assert_eq!((s.anthropic.count(), s.openai.count()), (2, 2));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!("{}/metrics", s.serve.url)).await.unwrap();
    assert_eq!(metrics.status(), 401, "metrics need the key when keys are configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_raise_the_sdks_error_without_client_retries() {
    let Some(python) = python() else { return };
    let s = setup(RETRYING).await;
    s.anthropic.always(Some(429));
    s.openai.always(Some(429));
    let out = run(&python, &s.serve, "rate_limited", GATEWAY_KEY).await;
    for front in ["openai", "anthropic"] {
        assert_eq!(out[front]["error"], "RateLimitError", "{out}");
        assert_eq!(out[front]["status"], 429, "{out}");
        assert_eq!(out[front]["headers"]["x-should-retry"], "false", "{out}");
    }
    // max_retries = 1: two attempts in the gateway, and the SDKs (2 retries by default)
    // added none.
    assert_eq!((s.anthropic.count(), s.openai.count()), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_a_stream_starts_are_http_errors() {
    let Some(python) = python() else { return };
    let s = setup(RETRYING).await;
    s.openai.always(Some(429));
    let out = run(&python, &s.serve, "stream_error", GATEWAY_KEY).await;
    assert_eq!(out["openai"]["status"], 429, "{out}");
    assert_eq!(out["anthropic"]["status"], 429, "{out}");
    assert_eq!(s.openai.count(), 4, "two attempts per streamed call, none from the SDKs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_body_size_and_overload_errors_are_the_sdks_own() {
    let Some(python) = python() else { return };
    let s = setup(PLAIN).await;
    let out = run(&python, &s.serve, "unauthorized", "wrong-key").await;
    assert_eq!(out["openai"]["status"], 401, "{out}");
    assert_eq!(out["anthropic"]["error"], "AuthenticationError", "{out}");
    let out = run(&python, &s.serve, "too_large", GATEWAY_KEY).await;
    assert_eq!(out["openai"]["status"], 413, "{out}");
    assert_eq!(out["anthropic"]["status"], 413, "{out}");
    assert_eq!(s.openai.count(), 0, "nothing reached the vendor");
    let out = run(&python, &s.serve, "alias", GATEWAY_KEY).await;
    assert!(out["anthropic"]["text"].as_str().unwrap().starts_with("openai heard"), "{out}");

    let overloaded = "[server]\napi_keys_env = \"ARCLLM_TEST_GATEWAY_KEYS\"\nmax_concurrent = 1\nqueue = 0\n";
    let s = setup(overloaded).await;
    s.openai.delay(std::time::Duration::from_millis(2000));
    let out = run(&python, &s.serve, "overloaded", GATEWAY_KEY).await;
    for front in ["openai", "anthropic"] {
        assert_eq!(out[front]["status"], 503, "{out}");
        assert_eq!(out[front]["headers"]["retry-after"], "1", "{out}");
    }
    assert_eq!(out["anthropic"]["error"], "ServiceUnavailableError", "{out}");
    assert_eq!(s.openai.count(), 1, "only the call that got the slot reached the vendor");
}
