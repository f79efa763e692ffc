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
fn unreadable_and_missing_config_files_keep_their_cause() {
    let ws = Workspace::new(&[]);
    // A directory where the file should be: the OS refuses the read.
    let error = Config::from_file(ws.dir.path()).unwrap_err();
    let ConfigError::Read { ref file, .. } = error else { panic!("expected a read error, got {error}") };
    assert_eq!(file, ws.dir.path());
    let cause = std::error::Error::source(&error).expect("the I/O error is the source");
    assert!(cause.downcast_ref::<std::io::Error>().is_some(), "{cause:?}");
    assert!(error.to_string().contains("cannot read the config file"), "{error}");

    let absent = ws.dir.path().join("absent.toml");
    let error = Config::locate(Some(&absent)).unwrap_err();
    assert!(matches!(&error, ConfigError::Missing { rule: "--config", .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("cannot read the config file: no such file (named by --config)"), "{text}");
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
async fn enabling_a_module_that_does_not_exist_is_an_error_naming_it_and_what_exists() {
    let ws = Workspace::new(&[]);
    for name in ["telemetry", "audit", "security", "otel", "budget"] {
        let err = ws.config_error(&format!("[modules.{name}]\nenabled = true\n")).to_string();
        assert!(
            err.contains(&format!("modules.{name}"))
                && err.contains("no module")
                && err.contains("retry, fallback"),
            "{name}: {err}"
        );
        assert!(err.contains("config.toml"), "{err}");
    }
}

#[tokio::test]
async fn a_disabled_table_of_a_module_that_does_not_exist_is_a_visible_warning() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let config = ws.config("[modules.telemetry]\nenabled = false\nlog_level = \"INFO\"\n[modules.budget]\nmonthly_limit_usd = 500.0\n");
    assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
    assert!(config
        .warnings
        .iter()
        .any(|w| w.contains("[modules.budget] is ignored") && w.contains("config.toml")));
    let (logs, _guard) = logs::capture();
    let model = load_model("primary").config(config).build().await.unwrap();
    assert!(model.is_bare());
    let text = logs.text();
    assert!(text.contains("WARN") && text.contains("[modules.telemetry] is ignored"), "{text}");
}

/// A config.toml as the ArcLLM Python library ships it.
const ARCLLM_CONFIG: &str = r#"
[defaults]
provider = "primary"
temperature = 0.7
max_tokens = 4096

[modules.routing]
enabled = false

[modules.telemetry]
enabled = false
log_level = "INFO"

[modules.audit]
enabled = false

[modules.budget]
enabled = false
monthly_limit_usd = 500.00

[modules.retry]
enabled = false
max_retries = 3
backoff_base_seconds = 1.0

[modules.fallback]
enabled = false
chain = ["anthropic", "openai"]

[modules.rate_limit]
enabled = false
requests_per_minute = 60

[vault]
backend = ""
cache_ttl_seconds = 300
"#;

#[tokio::test]
async fn an_arcllm_config_file_loads_and_its_defaults_become_request_options() {
    let server = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let config = ws.config(ARCLLM_CONFIG);
    assert_eq!((config.temperature, config.max_tokens), (Some(0.7), Some(4096)));
    // routing, telemetry, audit, budget and the vault: each said, none silent. Its
    // rate_limit table is the built-in module's, checked and switched off.
    assert_eq!(config.warnings.len(), 5, "{:#?}", config.warnings);
    assert_eq!(config.modules["rate_limit"].table["requests_per_minute"], 60);
    let model = load_model("primary").config(config.clone()).build().await.unwrap();
    model.invoke(messages(), vec![], Options::default()).await.unwrap();
    let sent = &server.requests()[0].json;
    assert_eq!((sent["temperature"].as_f64(), sent["max_tokens"].as_u64()), (Some(0.7), Some(4096)));
    // A call's own options win.
    let options = Options { temperature: Some(0.1), max_tokens: Some(10), ..Options::default() };
    model.invoke(messages(), vec![], options).await.unwrap();
    let sent = &server.requests()[1].json;
    assert_eq!((sent["temperature"].as_f64(), sent["max_tokens"].as_u64()), (Some(0.1), Some(10)));
    // A vault that would do something is refused, not ignored.
    let err =
        ws.config_error(&ARCLLM_CONFIG.replace("backend = \"\"", "backend = \"hashicorp\"")).to_string();
    assert!(err.contains("vault.backend") && err.contains("not supported"), "{err}");
    for (text, key) in
        [("temperature = 3.5", "defaults.temperature"), ("max_tokens = 0", "defaults.max_tokens")]
    {
        let err = ws.config_error(&format!("[defaults]\n{text}\n")).to_string();
        assert!(err.contains(key), "{err}");
    }
}

#[tokio::test]
async fn numbers_that_are_not_finite_are_rejected_with_file_key_and_value() {
    let ws = Workspace::new(&[]);
    for value in ["-inf", "inf", "nan", "+inf"] {
        let err = ws.config_error(&format!("[modules.retry]\nmax_wait_seconds = {value}\n")).to_string();
        assert!(
            err.contains("config.toml")
                && err.contains("modules.retry.max_wait_seconds")
                && err.contains("not a finite number"),
            "{value}: {err}"
        );
        assert!(err.contains(value.trim_start_matches('+')), "{value}: {err}");
    }
    let err = ws.config_error("[modules.tag]\nwasm = \"t.wasm\"\nweights = [1.0, nan]\n").to_string();
    assert!(err.contains("modules.tag.weights[1]"), "{err}");
}

#[tokio::test]
async fn per_call_tables_honour_enabled_and_null_means_config_tomls_value() {
    let server = MockServer::start(Canned::status(503, r#"{"error":{"message":"down"}}"#)).await;
    let ws = Workspace::new(&[("primary", &server.url)]);
    let config =
        ws.config("[modules.retry]\nenabled = true\nmax_retries = 1\nbackoff_base_seconds = 0.001\n");
    // {"enabled": false} switches it off, as Off does.
    let model = load_model("primary")
        .config(config.clone())
        .retry(table(json!({"enabled": false})))
        .build()
        .await
        .unwrap();
    assert!(model.is_bare());
    // null is "unset here": config.toml's max_retries = 1 stays (2 attempts), where the
    // module's own default (3) would make 4.
    let model = load_model("primary")
        .config(config.clone())
        .retry(table(json!({"enabled": true, "max_retries": null})))
        .build()
        .await
        .unwrap();
    assert_eq!(model.stack_names(), ["retry"]);
    assert!(model.invoke(messages(), vec![], Options::default()).await.is_err());
    assert_eq!(server.requests().len(), 2);
    // A bad per-call value names the call, not config.toml.
    let err = load_model("primary")
        .config(config)
        .retry(table(json!({"enabled": "yes"})))
        .build()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("per-call setting of module `retry`") && !err.contains("config.toml"), "{err}");
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

#[tokio::test]
async fn fallback_targets_are_bare_adapters_made_by_name_from_the_catalog_when_first_needed() {
    let primary = MockServer::start(Canned::status(503, r#"{"error":{"message":"primary down"}}"#)).await;
    let backup = MockServer::start(Canned::status(503, r#"{"error":{"message":"backup down"}}"#)).await;
    let ws = Workspace::new(&[("primary", &primary.url), ("backup", &backup.url)]);
    // `keyed` needs an API key nobody set: creating it fails, but only when it is reached.
    ws.write(
        "providers/keyed.toml",
        "[provider]\napi_format = \"openai-chat\"\nbase_url = \"http://127.0.0.1:9\"\napi_key_env = \"ARCLLM_TEST_UNSET_KEY\"\ndefault_model = \"k\"\n",
    );
    let config = ws.config(
        "[modules.retry]\nenabled = true\nmax_retries = 1\nbackoff_base_seconds = 0.001\n\
         [modules.fallback]\nenabled = true\nchain = [\"backup\", \"keyed\"]\n",
    );
    let model = load_model("primary").config(config).build().await.expect("targets are not created at build");
    let err = model.invoke(messages(), vec![], Options::default()).await.expect_err("all down");
    // When every target fails, the primary's error comes back, not the backup's or keyed's.
    assert_eq!((err.provider.as_str(), err.status), ("primary", Some(503)));
    // retry(fallback(primary)) made 2 attempts, each primary then backup once: the backup
    // is a bare adapter, with no retry of its own (that would make 4 backup requests).
    assert_eq!((primary.requests().len(), backup.requests().len()), (2, 2));
    // It is the real adapter the catalog makes from providers/backup.toml, by name.
    assert_eq!(backup.requests()[0].path, "/v1/chat/completions");
    assert_eq!(backup.requests()[0].json["model"], "backup-model");
}

#[tokio::test]
async fn through_modules_a_stream_is_the_whole_answer_replayed_as_events() {
    use arcllm::stream::{Collector, StreamEvent};
    use futures_util::StreamExt;
    let server = MockServer::start(Canned::status(503, r#"{"error":{"message":"down"}}"#)).await;
    let backup = ok_server().await;
    let ws = Workspace::new(&[("primary", &server.url), ("backup", &backup.url)]);
    let model = load_model("primary")
        .config(ws.config("[modules.fallback]\nenabled = true\nchain = [\"backup\"]\n"))
        .build()
        .await
        .unwrap();
    let events: Vec<_> =
        model.invoke_stream(messages(), vec![], Options::default()).await.expect("stream").collect().await;
    let events: Vec<StreamEvent> = events.into_iter().map(|e| e.expect("event")).collect();
    assert!(events.iter().any(|e| matches!(e, StreamEvent::TextDelta(t) if t == "hi there")), "{events:?}");
    let mut collector = Collector::new();
    events.into_iter().for_each(|e| collector.push(e));
    let streamed = collector.finish();
    let whole = model.invoke(messages(), vec![], Options::default()).await.unwrap();
    assert_eq!(streamed.content, whole.content);
    assert_eq!(streamed.metadata_value("arcllm.fallback.provider"), Some("backup"));
}
