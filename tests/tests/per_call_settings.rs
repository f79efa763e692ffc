//! Per-call module settings (`load_model(..).retry(table)`, `.module(name, setting)`): what
//! only config.toml may set is refused naming the call, not the file, and a module that is
//! not configured is named with the ones that are.

use arcllm::config::Config;
use arcllm::{load_model, BuildError, Setting};
use serde_json::json;

/// A config whose provider `local` needs no key (nothing is called: the settings are
/// refused while the model is built).
fn config(dir: &tempfile::TempDir) -> Config {
    std::fs::create_dir_all(dir.path().join("providers")).unwrap();
    std::fs::write(
        dir.path().join("providers/local.toml"),
        "[provider]\napi_format = \"openai-chat\"\nbase_url = \"http://127.0.0.1:9\"\napi_key_required = false\ndefault_model = \"m\"\n",
    )
    .unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[defaults]\nprovider = \"local\"\n").unwrap();
    Config::from_file(&file).unwrap()
}

async fn build_error(builder: arcllm::ModelBuilder) -> String {
    let dir = tempfile::tempdir().unwrap();
    match builder.config(config(&dir)).build().await {
        Ok(_) => panic!("the per-call setting was accepted"),
        Err(error) => {
            assert!(matches!(error, BuildError::Config(_)), "{error}");
            error.to_string()
        }
    }
}

#[tokio::test]
async fn what_only_config_toml_sets_is_refused_per_call_naming_the_module_and_key() {
    for (table, key, phrase) in [
        (json!({"enabled": "yes"}), "enabled", "must be true or false"),
        (json!({"wasm": "other.wasm"}), "wasm", "not per call"),
        (json!({"reach": ["openai"]}), "reach", "not per call"),
        (json!({"share_state": true}), "share_state", "not per call"),
    ] {
        let message = build_error(load_model("local").retry(table.clone())).await;
        assert!(
            message.starts_with("per-call setting of module `retry`")
                && message.contains(&format!("`{key}`"))
                && message.contains(phrase),
            "{table}: {message}"
        );
    }
}

#[tokio::test]
async fn a_module_that_is_not_configured_is_named_with_those_that_are() {
    let message = build_error(load_model("local").module("telemetry", true)).await;
    assert!(message.contains("modules.telemetry") && message.contains("no module `telemetry`"), "{message}");
    assert!(message.contains("retry") && message.contains("fallback"), "lists the known modules: {message}");
}

#[test]
fn json_values_map_to_settings_and_anything_else_is_unset() {
    assert!(matches!(Setting::from(json!(true)), Setting::On));
    assert!(matches!(Setting::from(json!(false)), Setting::Off));
    assert!(matches!(Setting::from(json!({"max_retries": 1})), Setting::Table(_)));
    assert!(matches!(Setting::from(json!(null)), Setting::Unset));
    assert!(matches!(Setting::from(json!(3)), Setting::Unset));
}
