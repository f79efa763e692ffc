//! `load_model`, config.toml and module stacking: twins of the seed's registry tests, the
//! config file's errors, and third-party modules placed outside, between and inside the
//! built-ins — all over real HTTP to a local vendor double.

use std::path::{Path, PathBuf};

use arcllm::config::{Config, ConfigError};
use arcllm::runtime::{LoadError, LoadErrorKind};
use arcllm::types::*;
use arcllm::{load_model, BuildError, Setting};
use arcllm_tests::http::{Canned, MockServer};
use arcllm_tests::*;
use serde_json::json;

/// A config directory: `config.toml`, a `providers/` directory, and room for modules.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// With provider `name` (OpenAI format, no key) pointing at `url`.
    fn new(providers: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("providers")).unwrap();
        let ws = Workspace { dir };
        for (name, url) in providers {
            ws.write(
                &format!("providers/{name}.toml"),
                &format!(
                    "[provider]\napi_format = \"openai-chat\"\nbase_url = \"{url}\"\napi_key_required = false\ndefault_model = \"{name}-model\"\ntimeout_seconds = 5\n"
                ),
            );
        }
        ws
    }

    fn write(&self, file: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn config(&self, text: &str) -> Config {
        let path = self.write("config.toml", text);
        Config::from_file(&path).unwrap_or_else(|e| panic!("config: {e}"))
    }

    fn config_error(&self, text: &str) -> ConfigError {
        let path = self.write("config.toml", text);
        Config::from_file(&path).expect_err("config must be rejected")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn openai_reply(text: &str) -> Canned {
    Canned::json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    }))
}

fn messages() -> Vec<Message> {
    vec![Message::user("hello")]
}

fn table(value: serde_json::Value) -> Setting {
    Setting::from(value)
}

async fn ok_server() -> MockServer {
    MockServer::start(openai_reply("hi there")).await
}

// ---- twins of the seed's registry tests -----------------------------------------------

#[tokio::test]
async fn retry_kwarg_wraps_with_retry() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let model = load_model("primary").config(ws.config("")).retry(Setting::On).build().await.unwrap();
    assert_eq!(model.stack_names(), ["retry"]);
    let response = model.invoke(messages(), vec![], Options::default()).await.unwrap();
    assert_eq!(response.content.as_deref(), Some("hi there"));
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("1"));
}

#[tokio::test]
async fn retry_table_enables_with_merged_table() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let model = load_model("primary")
        .config(ws.config(""))
        .retry(table(json!({"max_retries": 7})))
        .build()
        .await
        .unwrap();
    let stack = model.stack();
    assert_eq!(stack.len(), 1);
    assert_eq!(stack[0].table["max_retries"], json!(7));
    assert_eq!(stack[0].table["backoff_base_seconds"], json!(1.0), "the rest comes from config.toml");
}

#[tokio::test]
async fn config_enables_retry() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let model =
        load_model("primary").config(ws.config("[modules.retry]\nenabled = true\n")).build().await.unwrap();
    assert_eq!(model.stack_names(), ["retry"]);
}

#[tokio::test]
async fn off_overrides_config() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let config = ws.config(
        "[modules.retry]\nenabled = true\n[modules.fallback]\nenabled = true\nchain = [\"primary\"]\n",
    );
    let model =
        load_model("primary").config(config).retry(Setting::Off).fallback(false).build().await.unwrap();
    assert!(model.is_bare());
}

#[tokio::test]
async fn fallback_kwarg_wraps_with_fallback() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let model = load_model("primary").config(ws.config("")).fallback(true).build().await.unwrap();
    assert_eq!(model.stack_names(), ["fallback"]);
}

#[tokio::test]
async fn fallback_table_sets_the_chain() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url), ("backup", &server.url)]);
    let model = load_model("primary")
        .config(ws.config(""))
        .fallback(table(json!({"chain": ["backup"]})))
        .build()
        .await
        .unwrap();
    assert_eq!(model.stack()[0].table["chain"], json!(["backup"]));
}

#[tokio::test]
async fn retry_and_fallback_stack_in_the_right_order() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let model = load_model("primary").config(ws.config("")).fallback(true).retry(true).build().await.unwrap();
    assert_eq!(model.stack_names(), ["retry", "fallback"], "Retry(Fallback(adapter))");
    let response = model.invoke(messages(), vec![], Options::default()).await.unwrap();
    // The inner module appends first: fallback's key precedes retry's.
    let keys: Vec<&str> =
        response.metadata.iter().map(|(k, _)| k.as_str()).filter(|k| k.starts_with("arcllm.")).collect();
    assert_eq!(keys, ["arcllm.fallback.provider", "arcllm.retry.attempts"]);
}

#[tokio::test]
async fn no_modules_returns_the_bare_adapter() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let model = load_model("primary").config(ws.config("")).build().await.unwrap();
    assert!(model.is_bare());
    let response = model.invoke(messages(), vec![], Options::default()).await.unwrap();
    assert!(response.metadata.iter().all(|(k, _)| !k.starts_with("arcllm.")), "no module touched it");
}

#[tokio::test]
async fn call_values_override_config_values() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let config = ws.config("[modules.retry]\nenabled = true\nmax_retries = 5\nbackoff_base_seconds = 2.0\n");
    let model =
        load_model("primary").config(config).retry(table(json!({"max_retries": 1}))).build().await.unwrap();
    let t = &model.stack()[0].table;
    assert_eq!((t["max_retries"].clone(), t["backoff_base_seconds"].clone()), (json!(1), json!(2.0)));
}

#[tokio::test]
async fn model_and_provider_default_from_config() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let config = ws.config("[defaults]\nprovider = \"primary\"\nmodel = \"special-model\"\n");
    let provider = config.provider.clone();
    let model = load_model(&provider).config(config).build().await.unwrap();
    model.invoke(messages(), vec![], Options::default()).await.unwrap();
    assert_eq!(server.only_request().json["model"], json!("special-model"));
}

// ---- end to end over HTTP --------------------------------------------------------------

#[tokio::test]
async fn fallback_over_http_primary_503_fallback_200() {
    let primary = MockServer::start(Canned::status(503, r#"{"error":{"message":"overloaded"}}"#)).await;
    let backup = MockServer::start(openai_reply("from the backup")).await;
    let ws = Workspace::new(&[("primary", &primary.url), ("backup", &backup.url)]);
    let model = load_model("primary")
        .config(ws.config("[modules.fallback]\nenabled = true\nchain = [\"backup\"]\n"))
        .build()
        .await
        .unwrap();
    let response = model.invoke(messages(), vec![], Options::default()).await.expect("backup answers");
    assert_eq!(response.content.as_deref(), Some("from the backup"));
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("backup"));
    assert_eq!((primary.requests().len(), backup.requests().len()), (1, 1));
    assert_eq!(backup.only_request().json["messages"], primary.only_request().json["messages"]);
}

#[tokio::test]
async fn retry_over_http_honors_retry_after_then_surfaces_the_last_error() {
    let server = MockServer::start(
        Canned::status(429, r#"{"error":{"message":"slow down"}}"#).header("retry-after", "0.05"),
    )
    .await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let model = load_model("primary")
        .config(ws.config(""))
        .retry(table(json!({"max_retries": 2})))
        .build()
        .await
        .unwrap();
    let err = model.invoke(messages(), vec![], Options::default()).await.expect_err("always 429");
    assert_eq!((err.kind, err.status, err.retry_after_ms), (ErrorKind::Api, Some(429), Some(50)));
    assert_eq!(server.requests().len(), 3);
}

// ---- config.toml -------------------------------------------------------------------------

#[tokio::test]
async fn unknown_key_in_a_module_table_names_the_key_and_file() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    // Disabled, and still checked: the typo is found before the module is switched on.
    let config = ws.config("[modules.retry]\nenabled = false\nmax_retry = 3\n");
    let err = load_model("primary").config(config).build().await.err().expect("rejected");
    let text = err.to_string();
    assert!(matches!(err, BuildError::Config(ConfigError::Module { .. })), "{text}");
    assert!(text.contains("max_retry") && text.contains("config.toml"), "{text}");
}

#[test]
fn syntax_errors_name_line_and_column() {
    let ws = Workspace::new(&[]);
    match ws.config_error("[defaults]\nprovider = \"anthropic\"\n[modules.retry\nenabled = true\n") {
        ConfigError::Syntax { file, line, column, .. } => {
            assert!(file.ends_with("config.toml"));
            assert_eq!((line, column), (3, 15), "the unclosed table header");
        }
        other => panic!("expected a syntax error, got {other}"),
    }
}

#[test]
fn unknown_and_invalid_keys_are_named() {
    let ws = Workspace::new(&[]);
    let cases = [
        ("colour = 1\n", "colour"),
        ("[defaults]\nprovidr = \"x\"\n", "providr"),
        ("[defaults]\nprovider = \"Not Valid\"\n", "defaults.provider"),
        ("[stack]\norder = [\"retry\", \"nosuch\"]\n", "nosuch"),
        ("[stack]\norder = [\"retry\", \"retry\"]\n", "twice"),
        ("[modules.retry]\nenabled = \"yes\"\n", "modules.retry.enabled"),
        ("[modules.mystery]\nenabled = true\n", "wasm"),
    ];
    for (text, needle) in cases {
        let err = ws.config_error(text).to_string();
        assert!(err.contains(needle) && err.contains("config.toml"), "{text:?}: {err}");
    }
}

#[tokio::test]
async fn planned_modules_are_accepted_and_ignored() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let config = ws.config("[modules.telemetry]\nenabled = true\nlog_level = \"INFO\"\n[modules.rate_limit]\nrequests_per_minute = 60\n");
    let model = load_model("primary").config(config).build().await.unwrap();
    assert!(model.is_bare());
}

#[tokio::test]
async fn an_enabled_module_must_have_a_place_in_the_stack() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let config = ws.config("[stack]\norder = [\"fallback\"]\n[modules.retry]\nenabled = true\n");
    let err = load_model("primary").config(config).build().await.err().expect("rejected").to_string();
    assert!(err.contains("retry") && err.contains("stack order"), "{err}");
}

#[tokio::test]
async fn unknown_provider_is_a_config_error() {
    let ws = Workspace::new(&[]);
    let err = load_model("nosuch").config(ws.config("")).build().await.err().expect("rejected");
    assert!(matches!(&err, BuildError::Provider(e) if e.kind == ErrorKind::Config), "{err}");
    assert!(err.to_string().contains("nosuch"), "{err}");
}

// ---- third-party modules -----------------------------------------------------------------

#[tokio::test]
async fn third_party_modules_outside_between_and_inside_the_builtins() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    ws.write("tag.wasm", fixtures::TAG);
    let config = ws.config(
        r#"
[stack]
order = ["outer", "retry", "middle", "fallback", "inner"]
[modules.retry]
enabled = true
[modules.fallback]
enabled = true
[modules.outer]
wasm = "tag.wasm"
enabled = true
tag = "outer"
[modules.middle]
wasm = "tag.wasm"
enabled = true
tag = "middle"
[modules.inner]
wasm = "tag.wasm"
enabled = true
tag = "inner"
suffix = " (rewritten by inner)"
"#,
    );
    let model = load_model("primary").config(config).build().await.unwrap();
    assert_eq!(model.stack_names(), ["outer", "retry", "middle", "fallback", "inner"]);
    let response = model.invoke(messages(), vec![], Options::default()).await.unwrap();
    let trail: Vec<String> = response
        .metadata
        .iter()
        .filter(|(k, _)| k == "tag" || k.starts_with("arcllm."))
        .map(|(k, v)| if k == "tag" { v.clone() } else { k.clone() })
        .collect();
    assert_eq!(trail, ["inner", "arcllm.fallback.provider", "middle", "arcllm.retry.attempts", "outer"]);
    // The innermost module rewrote the request before it reached the vendor.
    assert_eq!(server.only_request().json["messages"][0]["content"], json!("hello (rewritten by inner)"));
}

#[tokio::test]
async fn third_party_module_can_be_switched_per_call() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    ws.write("tag.wasm", fixtures::TAG);
    let config = ws.config("[stack]\norder = [\"tagger\", \"retry\", \"fallback\"]\n[modules.tagger]\nwasm = \"tag.wasm\"\ntag = \"t\"\n");
    let off = load_model("primary").config(config.clone()).build().await.unwrap();
    assert!(off.is_bare());
    let on = load_model("primary")
        .config(config)
        .module("tagger", table(json!({"tag": "per-call"})))
        .build()
        .await
        .unwrap();
    let response = on.invoke(messages(), vec![], Options::default()).await.unwrap();
    assert_eq!(response.metadata_value("tag"), Some("per-call"));
}

#[tokio::test]
async fn a_module_file_that_fails_to_load_names_the_file_and_reason() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    ws.write("junk.wasm", b"this is not wasm");
    let cases = [("missing.wasm", "cannot read"), ("junk.wasm", "not a WebAssembly file")];
    for (file, reason) in cases {
        let config = ws.config(&format!(
            "[stack]\norder = [\"custom\"]\n[modules.custom]\nwasm = \"{file}\"\nenabled = true\n"
        ));
        let err = load_model("primary").config(config).build().await.err().expect("rejected");
        let text = err.to_string();
        assert!(matches!(&err, BuildError::Config(ConfigError::Module { .. })), "{text}");
        assert!(text.contains(file) && text.contains(reason), "{text}");
        assert!(
            text.contains(&ws.path().display().to_string()),
            "names where the file was looked for: {text}"
        );
    }
    // A module's own validation of its table is reported the same way.
    ws.write("tag.wasm", fixtures::TAG);
    let config =
        ws.config("[stack]\norder = [\"custom\"]\n[modules.custom]\nwasm = \"tag.wasm\"\nenabled = true\n");
    match load_model("primary").config(config).build().await.err().expect("tag is required") {
        BuildError::Config(ConfigError::Module {
            source: LoadError { kind: LoadErrorKind::Config { reason }, .. },
            ..
        }) => {
            assert!(reason.contains("tag is required"), "{reason}")
        }
        other => panic!("expected the module's config error, got {other}"),
    }
}
