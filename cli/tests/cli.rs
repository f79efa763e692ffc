//! The `arcllm` binary, run as a user would.

use std::process::{Command, Output};

fn arcllm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arcllm"))
        .args(args)
        .env_remove("ARCLLM_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run arcllm")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn demo_runs_real_chains_and_prints_each_step() {
    let out = arcllm(&["demo"]);
    let text = stdout(&out);
    assert!(out.status.success(), "demo failed:\n{text}\n{}", stderr(&out));
    // Scenario 1: 429 with Retry-After, then 503, then success on the third attempt.
    assert!(text.contains("429 Too Many Requests, Retry-After: 1"), "{text}");
    assert!(text.contains("attempt 1 of 4 failed") && text.contains("retrying in 1.000s"), "{text}");
    assert!(text.contains("arcllm.retry.attempts=3"), "{text}");
    // Scenario 2: the dead primary falls back.
    assert!(
        text.contains("falling back to demo_openai") && text.contains("arcllm.fallback.provider=demo_openai"),
        "{text}"
    );
    // Scenario 3: a 401 is not retried.
    assert!(text.contains("(HTTP 401)"), "{text}");
    assert!(text.contains("2 of 4 calls ended in an error"), "{text}");
}

#[test]
fn config_show_prints_values_origins_and_stack() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[modules.retry]\nenabled = true\nmax_retries = 5\n").unwrap();
    let out = arcllm(&["config", "show", "--config", file.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let line =
        |key: &str| text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key}:\n{text}"));
    assert!(line("modules.retry.max_retries = 5").contains(file.to_str().unwrap()));
    assert!(line("modules.retry.backoff_base_seconds = 1.0").ends_with("# default"));
    assert!(text.contains("enabled   retry  (built-in)"), "{text}");
    assert!(text.contains("disabled  fallback  (built-in)"), "{text}");
    assert!(text.contains("providers: anthropic"), "{text}");
}

#[test]
fn config_show_reports_a_syntax_error_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[defaults]\nprovider = \n").unwrap();
    let out = arcllm(&["config", "show", "--config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.toml:2:"), "{}", stderr(&out));
}

#[test]
fn module_check_accepts_a_module_and_lists_its_imports() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("retry.wasm");
    std::fs::write(&file, arcllm::builtin::RETRY).unwrap();
    let out = arcllm(&["module", "check", file.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("a valid arcllm module") && text.contains("arc:llm/middleware@0.3.0"), "{text}");
    assert!(
        text.contains("arc:llm/provider@0.3.0") && text.contains("wasi:clocks/monotonic-clock"),
        "{text}"
    );
}

#[test]
fn module_check_rejects_a_core_module_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("core.wasm");
    std::fs::write(&file, wat::parse_str("(module)").unwrap()).unwrap();
    let out = arcllm(&["module", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("core.wasm") && err.contains("not a component"), "{err}");
}

#[test]
fn invoke_rejects_an_unknown_provider() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "").unwrap();
    let out = arcllm(&["invoke", "--config", file.to_str().unwrap(), "--provider", "nosuch", "hi"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));
}

/// A loopback vendor answering every Chat Completions request with `status` and `body`,
/// and a config directory whose provider `local` points at it. Returns the config path.
async fn local_vendor(
    dir: &std::path::Path,
    status: u16,
    body: &'static str,
    content_type: &'static str,
) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || async move {
            (axum::http::StatusCode::from_u16(status).unwrap(), [("content-type", content_type)], body)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    std::fs::create_dir(dir.join("providers")).unwrap();
    std::fs::write(
        dir.join("providers/local.toml"),
        format!("[provider]\napi_format = \"openai-chat\"\nbase_url = \"http://{addr}\"\napi_key_required = false\ndefault_model = \"local-model\"\n"),
    )
    .unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, "[defaults]\nprovider = \"local\"\n").unwrap();
    config.to_str().unwrap().to_string()
}

/// Runs the binary off the async threads (the vendor is served on them).
async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || arcllm(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

const ANSWER: &str = r#"{"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "local-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi from loopback"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn invoke_prints_the_answer_and_the_whole_response_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_vendor(dir.path(), 200, ANSWER, "application/json").await;

    let plain = run(&["invoke", "--config", &config, "--retry", "hello"]).await;
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert_eq!(stdout(&plain).trim(), "hi from loopback");

    let json = run(&["invoke", "--config", &config, "--retry", "--json", "hello"]).await;
    assert!(json.status.success(), "{}", stderr(&json));
    let response: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    assert_eq!(response["content"], "hi from loopback");
    assert_eq!(response["usage"]["total_tokens"], 7);
    // The contract's names, snake_case, and metadata as an object.
    assert_eq!(response["stop_reason"], "end_turn");
    assert_eq!(response["metadata"]["arcllm.retry.attempts"], "1");
    assert_eq!(response["tool_calls"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_call_prints_the_vendors_words_on_one_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let page = "<html><body><h1>502 Bad Gateway</h1>\nupstream nginx exploded</body></html>";
    let config = local_vendor(dir.path(), 502, page, "text/html").await;
    let out = run(&["invoke", "--config", &config, "hello"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let line =
        err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains("HTTP 502") && line.contains("upstream nginx exploded"), "{line}");
    // The body's newline is escaped: one error line, not two.
    assert_eq!(err.lines().filter(|l| l.contains("nginx")).count(), 1, "{err}");

    let json = run(&["invoke", "--config", &config, "--json", "hello"]).await;
    assert_eq!(json.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON error");
    assert_eq!(error["error"]["kind"], "api");
    assert_eq!(error["error"]["status"], 502);
    assert!(error["error"]["body"].as_str().unwrap().contains("upstream nginx exploded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200_carrying_an_error_prints_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_vendor(
        dir.path(),
        200,
        r#"{"error": {"message": "model overloaded, try later"}}"#,
        "application/json",
    )
    .await;
    let out = run(&["invoke", "--config", &config, "hello"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("model overloaded, try later"), "{}", stderr(&out));
}

#[test]
fn configuration_errors_exit_2_and_are_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[modules.retry]\nenabled = true\nmax_retries = -1\n").unwrap();
    let out = arcllm(&["invoke", "--config", file.to_str().unwrap(), "--provider", "ollama", "hi"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("max_retries must be an integer >= 0"), "{err}");
    assert_eq!(err.matches("max_retries must be an integer").count(), 1, "printed twice: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_stream_prints_the_text_of_a_streamed_answer() {
    let dir = tempfile::tempdir().unwrap();
    let sse = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"local-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"local-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"streamed \"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"local-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"local-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let config = local_vendor(dir.path(), 200, sse, "text/event-stream").await;
    let out = run(&["invoke", "--config", &config, "--stream", "hello"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "streamed hello\n");
}

/// A config with a third-party module (the passthrough module under another hash) and
/// `[cache]` set to `cache`; returns the config file.
fn third_party_config(dir: &std::path::Path, cache: &str) -> std::path::PathBuf {
    let mut wasm = arcllm::builtin::PASSTHROUGH.to_vec();
    // A custom section: the same code under another SHA-256, so it is not precompiled.
    let (name, payload) = (b"arcllm-test", b"third party");
    wasm.extend_from_slice(&[0, (1 + name.len() + payload.len()) as u8, name.len() as u8]);
    wasm.extend_from_slice(name);
    wasm.extend_from_slice(payload);
    std::fs::write(dir.join("third.wasm"), wasm).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        format!("[stack]\norder = [\"third\"]\n[modules.third]\nenabled = true\nwasm = \"third.wasm\"\n[cache]\n{cache}\n"),
    )
    .unwrap();
    file
}

fn cwasm_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm")).count()
        })
        .unwrap_or(0)
}

/// `[cache] dir` is used, `ARCLLM_CACHE=off` wins over it, and `enabled = false` wins
/// over the default directory. The call itself goes to a closed port and fails: the
/// modules are loaded (and cached) before it.
#[test]
fn the_cache_table_and_arcllm_cache_off_decide_where_modules_are_compiled_to() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().join("xdg");
    let run = |config: &std::path::Path, cache_env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_arcllm"));
        command
            .args(["invoke", "--config", config.to_str().unwrap(), "--provider", "ollama", "hi"])
            .env_remove("ARCLLM_CONFIG")
            .env("XDG_CACHE_HOME", &xdg)
            .env("RUST_LOG", "warn");
        match cache_env {
            Some(value) => command.env("ARCLLM_CACHE", value),
            None => command.env_remove("ARCLLM_CACHE"),
        };
        let out = command.output().expect("run arcllm");
        assert_eq!(out.status.code(), Some(1), "the config is accepted, the call fails: {}", stderr(&out));
    };

    let config = third_party_config(dir.path(), "dir = \"compiled\"");
    run(&config, None);
    assert_eq!(cwasm_files(&dir.path().join("compiled")), 1, "compiled into [cache] dir");
    assert_eq!(cwasm_files(&xdg.join("arcllm")), 0);

    let other = tempfile::tempdir().unwrap();
    let config = third_party_config(other.path(), "dir = \"compiled\"");
    run(&config, Some("off"));
    assert_eq!(cwasm_files(&other.path().join("compiled")), 0, "ARCLLM_CACHE=off wins over dir");

    let config = third_party_config(other.path(), "enabled = false");
    run(&config, None);
    assert_eq!(cwasm_files(&xdg.join("arcllm")), 0, "enabled = false wins over the default");

    // The check that the test can fail: with the table silent, the default directory is used.
    let config = third_party_config(other.path(), "");
    run(&config, None);
    assert_eq!(cwasm_files(&xdg.join("arcllm")), 1);
}
