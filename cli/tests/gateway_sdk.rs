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

impl Setup {
    /// The vendor of `format` (`openai`, `anthropic`), and the other one.
    fn pick(&self, format: &str) -> (&Vendor, &Vendor) {
        if format == "openai" {
            (&self.openai, &self.anthropic)
        } else {
            (&self.anthropic, &self.openai)
        }
    }
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

/// Retry resumes a streamed answer that fails after its first content.
const RESUMING: &str = "[server]\napi_keys_env = \"ARCLLM_TEST_GATEWAY_KEYS\"\n[modules.retry]\nenabled = true\nmax_retries = 1\nbackoff_base_seconds = 0.01\nmax_wait_seconds = 0.05\nresume = true\n";

const SENTENCE: &str = "The quick brown fox jumps over the lazy dog.";
const HEAD: [&str; 3] = ["The", " quick", " brown"];
const TAIL: [&str; 6] = [" fox", " jumps", " over", " the", " lazy", " dog."];

fn leg(pieces: &[&'static str], end: End) -> Leg {
    Leg { pieces: pieces.to_vec(), end }
}

/// The SDK of `front` (`openai`, `anthropic`) streams the fox sentence from `model`: what
/// it yielded, piece by piece, how the stream ended, and the error it raised, if any.
async fn fox(python: &str, serve: &Serve, front: &str, model: &str) -> Value {
    tokio::task::block_in_place(|| sdk_with(python, serve, &format!("fox_{front}"), GATEWAY_KEY, &[model]))
}

/// Each SDK against each vendor format, the vendor's first answer failing after three
/// pieces with a broken connection or an error event.
const BROKEN: [(&str, &str, End); 4] = [
    ("openai", "openai", End::Cut),
    ("openai", "anthropic", End::ErrorEvent),
    ("anthropic", "anthropic", End::Cut),
    ("anthropic", "openai", End::ErrorEvent),
];

/// The SDK of `front` streams from the vendor of `format`, whose first answer ends with
/// `end` after three pieces and whose second (if asked) is the rest of the sentence: what
/// the SDK saw, the vendor, and the other vendor.
async fn broken_fox<'s>(
    python: &str,
    s: &'s Setup,
    front: &str,
    format: &str,
    end: End,
) -> (Value, &'s Vendor, &'s Vendor) {
    let (vendor, other) = s.pick(format);
    vendor.reset();
    other.reset();
    vendor.stream_legs(&[leg(&HEAD, end), leg(&TAIL, End::Finish)]);
    let out = fox(python, &s.serve, front, &format!("vend_{format}")).await;
    (out, vendor, other)
}

/// What the SDK of `front` received is the whole sentence, each piece once and in order,
/// as one message that ended normally.
fn assert_seamless(out: &Value, front: &str) {
    assert_eq!(out["error"], Value::Null, "{out}");
    assert_eq!(out["text"], SENTENCE, "no duplicate, no gap: {out}");
    let pieces: Vec<&str> = out["pieces"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(pieces, [&HEAD[..], &TAIL[..]].concat(), "{out}");
    assert_eq!(out["starts"], 1, "one message, however many vendor requests: {out}");
    assert_eq!(out["finish"], if front == "openai" { "stop" } else { "end_turn" }, "{out}");
}

/// The (input, output) token counts the SDK of `front` reported.
fn tokens(out: &Value, front: &str) -> (u64, u64) {
    let usage = &out["usage"];
    let count = |key: &str| usage[key].as_u64().unwrap_or_else(|| panic!("no {key} in {out}"));
    match front {
        "openai" => (count("prompt_tokens"), count("completion_tokens")),
        _ => (count("input_tokens"), count("output_tokens")),
    }
}

/// The continued request is the first one plus the delivered text as an assistant turn.
fn assert_continues(first: &Value, second: &Value) {
    assert_eq!(assistant_prefix(first), None, "{first}");
    assert_eq!(assistant_prefix(second).as_deref(), Some("The quick brown"), "{second}");
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{second}");
    assert_eq!(messages[0]["role"], "user", "{second}");
    assert_eq!(messages[0], first["messages"][0], "the caller's turn is sent as it was");
    assert_eq!((first["stream"].as_bool(), second["stream"].as_bool()), (Some(true), Some(true)));
}

async fn metrics(serve: &Serve) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let response =
        client.get(format!("{}/metrics", serve.url)).bearer_auth(GATEWAY_KEY).send().await.unwrap();
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_resumes_a_stream_broken_mid_answer_and_both_sdks_see_one_seamless_answer() {
    let Some(python) = python() else { return };
    let s = setup(RESUMING).await;
    for (front, format, end) in BROKEN {
        let (out, vendor, other) = broken_fox(&python, &s, front, format, end).await;
        let case = format!("{front} SDK, {format} vendor, {end:?}");
        assert_seamless(&out, front);
        let requests = vendor.requests();
        assert_eq!((requests.len(), other.count()), (2, 0), "{case}");
        assert_continues(&requests[0], &requests[1]);
        // The usage is the continuation's (11 in, 6 out) plus what the broken part had
        // reported: an OpenAI stream reports nothing before its end, an Anthropic one its
        // input tokens (and its first output count) in `message_start`.
        let expected = if format == "openai" { (11, 6) } else { (22, 7) };
        assert_eq!(tokens(&out, front), expected, "{case}: {out}");
    }
    let log = s.serve.log();
    assert_eq!(log.matches("resumed=1").count(), 4, "{log}");
    let metrics = metrics(&s.serve).await;
    for line in [
        "arcllm_gateway_resumes_total{provider=\"vend_openai\"} 2",
        "arcllm_gateway_resumes_total{provider=\"vend_anthropic\"} 2",
        "arcllm_gateway_retries_total{provider=\"vend_openai\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_continues_a_broken_stream_on_the_other_vendor() {
    let Some(python) = python() else { return };
    for (primary, backup) in [("openai", "anthropic"), ("anthropic", "openai")] {
        let config = format!(
            "[server]\napi_keys_env = \"ARCLLM_TEST_GATEWAY_KEYS\"\n[modules.fallback]\nenabled = true\nchain = [\"vend_{backup}\"]\nresume = true\n"
        );
        let s = setup(&config).await;
        let (first, second) = s.pick(primary);
        for front in ["openai", "anthropic"] {
            first.reset();
            second.reset();
            first.stream_legs(&[leg(&HEAD, End::Cut)]);
            second.stream_legs(&[leg(&TAIL, End::Finish)]);
            let out = fox(&python, &s.serve, front, &format!("vend_{primary}")).await;
            let case = format!("{front} SDK, {primary} then {backup}");
            assert_seamless(&out, front);
            assert_eq!((first.count(), second.count()), (1, 1), "{case}");
            assert_continues(&first.requests()[0], &second.requests()[0]);
            // The backup's counts, plus the input the broken Anthropic part had reported.
            let expected = if primary == "anthropic" { (22, 7) } else { (11, 6) };
            assert_eq!(tokens(&out, front), expected, "{case}: {out}");
        }
        let log = s.serve.log();
        assert_eq!(log.matches("resumed=1").count(), 2, "{log}");
        let answered_by_backup = |line: &&str| {
            line.contains(&format!("fallback=\"vend_{backup}\""))
                || line.contains(&format!("fallback=vend_{backup}"))
        };
        assert_eq!(
            log.lines().filter(answered_by_backup).filter(|l| l.contains("resumed=1")).count(),
            2,
            "{log}"
        );
        let metrics = metrics(&s.serve).await;
        let line = format!("arcllm_gateway_resumes_total{{provider=\"vend_{primary}\"}} 2");
        assert!(metrics.contains(&line), "missing {line}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_resume_a_failure_mid_answer_reaches_the_sdk_as_its_error_after_the_delivered_text() {
    let Some(python) = python() else { return };
    let s = setup(RETRYING).await;
    for (front, format, end) in BROKEN {
        let (out, vendor, other) = broken_fox(&python, &s, front, format, end).await;
        let case = format!("{front} SDK, {format} vendor, {end:?}");
        // The SDK raised its error for the stream's error event, which names the vendor and
        // what went wrong.
        let error = &out["error"];
        let expected = if front == "openai" { "APIError" } else { "APIStatusError" };
        assert_eq!(error["type"], expected, "{case}: {out}");
        let message = error["message"].as_str().unwrap();
        let cause = if end == End::Cut { "connection failed" } else { "error event in the stream" };
        assert!(message.contains(&format!("vend_{format}")) && message.contains(cause), "{case}: {out}");
        let pieces: Vec<&str> =
            out["pieces"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        assert_eq!(pieces, HEAD, "{case}: what was delivered, once, and nothing after it");
        assert_eq!(out["finish"], Value::Null, "{case}: {out}");
        assert_eq!((vendor.count(), other.count()), (1, 0), "{case}: no retry after the commit point");
    }
    assert!(!s.serve.log().contains("resumed=1"), "{}", s.serve.log());
}
