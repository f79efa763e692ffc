//! `arcllm serve` as a process, over loopback HTTP, in front of fake vendors: both front
//! ends, streaming, operational endpoints, start-up refusals, and what SIGTERM and SIGHUP
//! do to requests in flight.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const KEYS: (&str, &str) = ("ARCLLM_TEST_GATEWAY_KEYS", GATEWAY_KEY);

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

async fn post(serve: &Serve, path: &str, body: Value) -> reqwest::Response {
    client().post(format!("{}{path}", serve.url)).bearer_auth(GATEWAY_KEY).json(&body).send().await.unwrap()
}

fn openai_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
}

fn anthropic_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
}

/// `(event or "data", data)` of each SSE frame.
fn frames(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut event = "data".to_string();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d.to_string();
                }
            }
            (event, data)
        })
        .collect()
}

const WITH_RETRY: &str = "[server]\napi_keys_env = \"ARCLLM_TEST_GATEWAY_KEYS\"\n[modules.retry]\nenabled = true\nmax_retries = 2\nbackoff_base_seconds = 0.01\nmax_wait_seconds = 0.05\n[aliases]\nfast = \"vend_anthropic\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_front_ends_answer_whole_and_streamed_through_a_module_stack() {
    let openai = Vendor::start("openai").await;
    let anthropic = Vendor::start("anthropic").await;
    let serve = Serve::start(WITH_RETRY, &[&openai, &anthropic], &[KEYS]);
    anthropic.script(&[503]);

    let whole: Value =
        post(&serve, "/v1/chat/completions", openai_body("fast", false)).await.json().await.unwrap();
    assert_eq!(whole["object"], "chat.completion", "{whole}");
    assert_eq!(whole["choices"][0]["message"]["content"], "anthropic heard: hi");
    assert_eq!(whole["usage"]["total_tokens"], 18);
    assert_eq!(anthropic.count(), 2, "the 503 was retried inside the gateway");

    // Through modules the answer streams (retry hands the stream on after its first
    // content event), re-framed as the client's vendor frames it.
    let response = post(&serve, "/v1/messages", anthropic_body("vend_openai/gpt-x", true)).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.text().await.unwrap();
    let events = frames(&body);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    let deltas = names.len() - 5;
    assert!(deltas >= 1, "{names:?}");
    assert_eq!(names[..2], ["message_start", "content_block_start"], "{names:?}");
    assert!(names[2..2 + deltas].iter().all(|name| *name == "content_block_delta"), "{names:?}");
    assert_eq!(names[2 + deltas..], ["content_block_stop", "message_delta", "message_stop"], "{names:?}");
    assert_eq!(streamed_text(&body), "openai heard: hi", "{events:?}");
    assert_eq!(openai.requests()[0]["model"], "gpt-x");

    let response = post(
        &serve,
        "/v1/chat/completions",
        json!({"model": "vend_anthropic", "stream": true,
        "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let chunks = frames(&response.text().await.unwrap());
    assert_eq!(chunks.last().unwrap().1, "[DONE]");
    let usage: Value = serde_json::from_str(&chunks[chunks.len() - 2].1).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 7, "{chunks:?}");

    // Operations.
    let get = |path: &str| client().get(format!("{}{path}", serve.url)).bearer_auth(GATEWAY_KEY).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let models: Value = get("/v1/models").await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&"fast") && ids.contains(&"vend_openai") && ids.contains(&"vend_openai/openai-model"),
        "{ids:?}"
    );
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for line in [
        "arcllm_gateway_requests_total{route=\"/v1/chat/completions\",provider=\"vend_anthropic\",status=\"200\"} 2",
        "arcllm_gateway_requests_total{route=\"/v1/messages\",provider=\"vend_openai\",status=\"200\"} 1",
        "arcllm_gateway_retries_total{provider=\"vend_anthropic\"} 1",
        "arcllm_gateway_upstream_seconds_count{provider=\"vend_anthropic\"} 2",
        "arcllm_gateway_overhead_seconds_count{route=\"/v1/messages\"} 1",
        "arcllm_gateway_in_flight 0",
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
    let log = serve.log();
    assert!(log.contains("attempts=2"), "{log}");
    assert!(!log.contains(GATEWAY_KEY) && !log.contains(VENDOR_KEY), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_headers_are_refused_unless_allowed_and_then_win() {
    let openai = Vendor::start("openai").await;
    let anthropic = Vendor::start("anthropic").await;
    let serve = Serve::start(WITH_RETRY, &[&openai, &anthropic], &[KEYS]);
    let send = |serve: &Serve, retry: &'static str| {
        client()
            .post(format!("{}/v1/messages", serve.url))
            .header("x-api-key", GATEWAY_KEY)
            .header("x-arcllm-retry", retry)
            .json(&anthropic_body("vend_openai", false))
            .send()
    };
    let refused = send(&serve, "off").await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("allow_module_headers"), "{body}");
    drop(serve);

    let allowed = WITH_RETRY.replace("[server]\n", "[server]\nallow_module_headers = true\n");
    let serve = Serve::start(&allowed, &[&openai, &anthropic], &[KEYS]);
    openai.always(Some(503));
    let answer = send(&serve, "off").await.unwrap();
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().get("x-should-retry").is_none(), "retry was off: the client may retry");
    assert_eq!(openai.count(), 1, "retry off for this request");
    openai.reset();
    openai.always(Some(503));
    let answer = send(&serve, r#"{"max_retries": 1}"#).await.unwrap();
    assert_eq!((answer.status().as_u16(), openai.count()), (503, 2));
    assert_eq!(answer.headers()["x-should-retry"], "false");
}

#[test]
fn refuses_to_start_exposed_without_keys_or_with_a_bad_config() {
    let run = |config: &str, listen: &str| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, config).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_arcllm"))
            .args(["serve", "--config", file.to_str().unwrap(), "--listen", listen])
            .env_remove("ARCLLM_SERVER_API_KEYS")
            .output()
            .unwrap()
    };
    let out = run("", "0.0.0.0:0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without API keys")
            && stderr.contains("ARCLLM_SERVER_API_KEYS"),
        "{stderr}"
    );
    let out = run("[server]\nmax_conc = 3\n", "127.0.0.1:0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown key `max_conc` in [server]"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_50_requests_in_flight_finish_then_exits_0() {
    let openai = Vendor::start("openai").await;
    let anthropic = Vendor::start("anthropic").await;
    openai.delay(Duration::from_millis(1500));
    let mut serve = Serve::start(WITH_RETRY, &[&openai, &anthropic], &[KEYS]);
    let url = serve.url.clone();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let url = url.clone();
            let (path, body) = if i % 2 == 0 {
                ("/v1/chat/completions", openai_body("vend_openai", i % 4 == 0))
            } else {
                ("/v1/messages", anthropic_body("vend_openai", i % 4 == 1))
            };
            tokio::spawn(async move {
                let response = client()
                    .post(format!("{url}{path}"))
                    .bearer_auth(GATEWAY_KEY)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    while openai.count() < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    serve.signal("TERM");
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let text = if body.starts_with('{') { body.clone() } else { streamed_text(&body) };
        assert!(text.contains("openai heard: hi"), "{body}");
    }
    let code = tokio::task::block_in_place(|| serve.wait_exit(Duration::from_secs(20)));
    assert_eq!(code, Some(0), "{}", serve.log());
    // Nothing new is accepted once it stopped.
    assert!(client().get(format!("{url}/healthz")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_file_changes_reload_under_load_and_lose_nothing() {
    let openai = Vendor::start("openai").await;
    let anthropic = Vendor::start("anthropic").await;
    openai.delay(Duration::from_millis(20));
    anthropic.delay(Duration::from_millis(20));
    let serve = Serve::start(WITH_RETRY, &[&openai, &anthropic], &[KEYS]);
    let url = serve.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = if w % 2 == 0 {
                        openai_body("fast", w % 4 == 0)
                    } else {
                        openai_body("vend_openai", false)
                    };
                    let response = client()
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(GATEWAY_KEY)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    results.push((response.status().as_u16(), response.text().await.unwrap()));
                }
                results
            })
        })
        .collect();
    let config = serve.config_path();
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if round % 2 == 0 {
            serve.signal("HUP");
        } else {
            // Switch the alias and the retry table on disk: the watchers reload.
            let target = if round % 4 == 1 { "vend_openai" } else { "vend_anthropic" };
            let text = WITH_RETRY
                .replace("fast = \"vend_anthropic\"", &format!("fast = \"{target}\""))
                .replace("max_retries = 2", &format!("max_retries = {}", 2 + round));
            std::fs::write(&config, text).unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for worker in workers {
        for (status, body) in worker.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            total += 1;
        }
    }
    assert!(total > 50, "only {total} requests ran");
    let log = serve.log();
    assert!(log.contains("SIGHUP: reloading") && log.contains("reloaded (0 model(s) failed)"), "{log}");
    assert!(log.contains("[server] and [aliases] reloaded"), "{log}");
    assert!(openai.count() > 0 && anthropic.count() > 0);
}

/// Requests that use every field the gateway translates.
fn rich_requests() -> [(&'static str, Value); 2] {
    let openai = json!({
        "model": "vend_anthropic",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "look:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "auto",
        "max_completion_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["STOP"]
    });
    let anthropic = json!({
        "model": "vend_openai",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be terse."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny", "is_error": false}]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "auto"},
        "temperature": 0.5,
        "top_k": 5,
        "stop_sequences": ["STOP"],
        "metadata": {"user_id": "u1"}
    });
    [("/v1/chat/completions", openai), ("/v1/messages", anthropic)]
}

/// The requests the gateway's translation is tested with are the vendors' own shapes: the
/// validating mocks of ../shared/specs (`.ci/run` starts them) find nothing wrong with them,
/// and the gateway serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rich_requests_are_valid_vendor_requests_and_are_served() {
    let openai = Vendor::start("openai").await;
    let anthropic = Vendor::start("anthropic").await;
    let serve = Serve::start(WITH_RETRY, &[&openai, &anthropic], &[KEYS]);
    for (path, body) in rich_requests() {
        let answer = post(&serve, path, body.clone()).await;
        assert_eq!(answer.status(), 200, "{path}: {}", answer.text().await.unwrap());
    }
    // Both arrived translated: the tool call and its result, the image, the options.
    let to_anthropic = &anthropic.requests()[0];
    assert_eq!(to_anthropic["system"], "Be terse.");
    assert_eq!(to_anthropic["messages"][0]["content"][1]["source"]["media_type"], "image/png");
    assert_eq!(to_anthropic["messages"][1]["content"][0]["input"]["city"], "Paris");
    assert_eq!(to_anthropic["messages"][2]["content"][0]["tool_use_id"], "call_1");
    assert_eq!((to_anthropic["max_tokens"].as_u64(), to_anthropic["top_p"].as_f64()), (Some(64), Some(0.9)));
    let to_openai = &openai.requests()[0];
    assert_eq!(to_openai["messages"][2]["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(
        to_openai["messages"][3],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"})
    );
    assert_eq!(to_openai["top_k"], 5);

    let mocks = [("/v1/chat/completions", "ARCLLM_PRISM_OPENAI"), ("/v1/messages", "ARCLLM_PRISM_ANTHROPIC")];
    for ((path, body), (_, var)) in rich_requests().into_iter().zip(mocks) {
        let Ok(mock) = std::env::var(var) else {
            eprintln!("SKIPPED: {var} is not set: {path} not validated against the vendor's spec (.ci/run starts the mocks)");
            continue;
        };
        let answer = client()
            .post(format!("{mock}{path}"))
            .bearer_auth("sk-test")
            .header("x-api-key", "sk-test")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap();
        let violations = answer.headers().get("sl-violations").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(violations, None, "{path}: the spec refuses the request");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
    }
}

/// A client that trickles its headers or its body is cut off, and holds no slot meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let openai = Vendor::start("openai").await;
    let config = "[server]\nheader_read_timeout_seconds = 0.5\nbody_read_timeout_seconds = 0.5\nmax_concurrent = 1\nqueue = 0\n";
    let serve = Serve::start(config, &[&openai], &[]);
    let addr = serve.url.trim_start_matches("http://").to_string();

    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(5), "closed only after {:?}", started.elapsed());

    let mut trickle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    trickle
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"mo")
        .await
        .unwrap();
    // Meanwhile the only slot is free: another client is served.
    let answer = client()
        .post(format!("{}/v1/chat/completions", serve.url))
        .json(&openai_body("vend_openai", false))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), trickle.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400") && reply.contains("did not arrive within 0.5 s"), "{reply}");
}

/// The text of a streamed answer in either front end's framing: OpenAI chunks'
/// `choices[0].delta.content`, Anthropic `content_block_delta`s' `delta.text`, concatenated.
fn streamed_text(body: &str) -> String {
    frames(body)
        .iter()
        .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
        .filter_map(|frame| {
            frame["choices"][0]["delta"]["content"]
                .as_str()
                .or(frame["delta"]["text"].as_str())
                .map(String::from)
        })
        .collect()
}
