//! Provider files: the built-ins, a user's overlay directory, and every way a file or a
//! lookup can be wrong. Errors must name the provider, the file and the key, and never an
//! API key's value.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arcllm::providers::*;
use arcllm::runtime::LazyRegistry;
use arcllm::types::ErrorKind;
use arcllm_tests::http::{provider_toml, test_env, TEST_KEY};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("arcllm-providers-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse(name: &str, text: &str) -> Result<ProviderConfig, ProviderConfigError> {
    ProviderConfig::parse(name, text, ConfigSource::Inline("test".into()))
}

fn parse_err(text: &str) -> String {
    parse("acme", text).expect_err("the file must be rejected").to_string()
}

const OPENAI_LIKE: &[&str] =
    &["openai", "ollama", "vllm", "groq", "together", "deepseek", "mistral", "fireworks"];

#[test]
fn the_built_in_providers_are_all_there_and_valid() {
    let catalog = ProviderCatalog::builtin().expect("built-ins parse");
    let mut expected: Vec<&str> = OPENAI_LIKE.to_vec();
    expected.push("anthropic");
    expected.sort();
    assert_eq!(catalog.names(), expected);

    let anthropic = catalog.get("anthropic").unwrap();
    assert_eq!(anthropic.provider.api_format, ApiFormat::AnthropicMessages);
    assert_eq!(anthropic.provider.base_url, "https://api.anthropic.com");
    assert_eq!(anthropic.provider.api_key_env.as_deref(), Some("ANTHROPIC_API_KEY"));
    assert_eq!(anthropic.source, ConfigSource::Builtin("anthropic.toml"));
    for name in OPENAI_LIKE {
        assert_eq!(catalog.get(name).unwrap().provider.api_format, ApiFormat::OpenaiChat, "{name}");
    }
    for name in catalog.names() {
        let config = catalog.get(name).unwrap();
        let p = &config.provider;
        let local = ["ollama", "vllm"].contains(&name);
        assert_eq!(p.api_key_required, !local, "{name}");
        assert!(
            p.base_url.starts_with(if local { "http://localhost:" } else { "https://" }),
            "{name}: {}",
            p.base_url
        );
        assert!(p.api_key_env.as_deref().is_some_and(|env| env.ends_with("_API_KEY")), "{name}");
        let default =
            config.model(&p.default_model).unwrap_or_else(|| panic!("{name}: default model is described"));
        assert!(default.max_output_tokens.is_some() && default.context_window.is_some(), "{name}");
        for (id, model) in &config.models {
            assert!(
                model.cost_input_per_1m.is_some() && model.cost_output_per_1m.is_some(),
                "{name}/{id}: costs"
            );
            assert!(model.max_output_tokens <= model.context_window.map(|c| c as u32), "{name}/{id}");
        }
        assert_eq!(p.timeout_seconds, if local { 300.0 } else { DEFAULT_TIMEOUT_SECONDS }, "{name}");
        assert_eq!(p.connect_timeout_seconds, DEFAULT_CONNECT_TIMEOUT_SECONDS);
        assert_eq!(p.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert!(p.extra_headers.is_empty());
    }
    assert_eq!(
        catalog.get("openai").unwrap().provider.max_tokens_param,
        Some(MaxTokensParam::MaxCompletionTokens)
    );
}

#[test]
fn a_user_directory_adds_and_overrides_providers() {
    let dir = TempDir::new();
    let config_file = dir.write("config.toml", "");
    dir.write(
        "providers/anthropic.toml",
        &provider_toml("anthropic-messages", "https://proxy.example.com/anthropic", ""),
    );
    dir.write(
        "providers/my_local.toml",
        &provider_toml("openai-chat", "http://127.0.0.1:9999", "api_key_required = false"),
    );
    dir.write("providers/README.md", "not a provider file");

    let catalog = ProviderCatalog::for_config_file(&config_file, None).expect("load");
    assert!(catalog.names().contains(&"my_local"));
    assert!(catalog.names().contains(&"openai"), "built-ins stay");
    let anthropic = catalog.get("anthropic").unwrap();
    assert_eq!(anthropic.provider.base_url, "https://proxy.example.com/anthropic");
    assert_eq!(anthropic.source, ConfigSource::File(dir.path().join("providers/anthropic.toml")));
    // The override replaces the file as a whole: no built-in models are left over.
    assert!(anthropic.models.is_empty());
}

#[test]
fn providers_dir_is_relative_to_the_config_file() {
    let dir = TempDir::new();
    let config_file = dir.write("etc/config.toml", "providers_dir = \"../shared-providers\"");
    dir.write("shared-providers/corp.toml", &provider_toml("openai-chat", "https://llm.corp.example", ""));
    let catalog = ProviderCatalog::for_config_file(&config_file, Some("../shared-providers")).expect("load");
    assert!(catalog.get("corp").is_some());

    // Without providers_dir and without a providers/ directory: the built-ins only.
    let catalog = ProviderCatalog::for_config_file(&config_file, None).expect("load");
    assert_eq!(catalog.names(), ProviderCatalog::builtin().unwrap().names());

    let error = ProviderCatalog::for_config_file(&config_file, Some("missing")).unwrap_err();
    assert!(matches!(error, ProviderConfigError::NotADirectory { .. }), "{error}");
    let error = error.to_string();
    assert!(error.contains("providers_dir") && error.contains("missing"), "{error}");
    assert!(error.contains("is not a directory"), "{error}");
}

#[test]
fn a_bad_user_file_is_an_error_naming_provider_file_and_key() {
    let dir = TempDir::new();
    let path = dir.write(
        "providers/acme.toml",
        "[provider]\napi_format = \"openai-chat\"\nbase_url = \"https://acme.example\"\napi_key_env = \"ACME_KEY\"\ndefault_model = \"m\"\nvault_path = \"\"\n",
    );
    let error = ProviderCatalog::builtin().unwrap().overlay_dir(&dir.path().join("providers")).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("`acme`"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("`provider.vault_path`"), "{text}");
    assert!(text.contains("unknown field"), "{text}");

    let converted: arcllm::types::Error = error.into();
    assert_eq!(converted.kind, ErrorKind::Config);
    assert_eq!(converted.provider, "acme");
    assert!(converted.message.contains("provider.vault_path"));
}

#[test]
fn schema_errors_name_the_key() {
    let base = "[provider]\napi_format = \"openai-chat\"\napi_key_env = \"K\"\ndefault_model = \"m\"\n";
    let cases = [
        (format!("{base}base_url = 5\n"), "provider.base_url", "invalid type"),
        (format!("{base}base_url = \"https://x.example\"\ntimeout_seconds = \"soon\"\n"), "provider.timeout_seconds", "invalid type"),
        ("[provider]\napi_format = \"openai-chat\"\nbase_url = \"https://x.example\"\napi_key_env = \"K\"\n".to_string(), "provider", "default_model"),
        (format!("{base}base_url = \"https://x.example\"\napi_format2 = 1\n"), "provider.api_format2", "unknown field"),
        (format!("{base}base_url = \"https://x.example\"\n[models.\"a.b\"]\nmax_output_tokens = -1\n"), "models.a.b.max_output_tokens", ""),
        (format!("{base}base_url = \"https://x.example\"\n[models.m]\ncolour = \"red\"\n"), "models.m.colour", "unknown field"),
        (format!("{base}base_url = \"https://x.example\"\n[extra]\n"), "extra", "unknown field"),
        ("[provider]\napi_format = \"grpc\"\n".to_string(), "provider.api_format", "unknown variant"),
        ("[provider\n".to_string(), "", ""),
    ];
    for (text, key, phrase) in cases {
        let error = parse_err(&text);
        assert!(error.contains("provider `acme` in test"), "{error}");
        if !key.is_empty() {
            assert!(error.contains(&format!("key `{key}`")), "expected key {key} in: {error}");
        }
        assert!(error.contains(phrase), "expected {phrase:?} in: {error}");
    }
}

#[test]
fn values_are_validated() {
    let good = "[provider]\napi_format = \"openai-chat\"\napi_key_env = \"K\"\ndefault_model = \"m\"\n";
    let with = |line: &str| format!("{good}{line}\n");
    let cases = [
        (with("base_url = \"http://api.example.com\""), "provider.base_url", "https"),
        (with("base_url = \"http://10.0.0.5:8000\""), "provider.base_url", "loopback"),
        (with("base_url = \"ftp://127.0.0.1\""), "provider.base_url", "scheme"),
        (with("base_url = \"not a url\""), "provider.base_url", "not a URL"),
        (with("base_url = \"https://user:pw@api.example.com\""), "provider.base_url", "credentials"),
        (with("base_url = \"https://api.example.com?x=1\""), "provider.base_url", "query"),
        (with("base_url = \"https://a.example\"\ntimeout_seconds = 0"), "provider.timeout_seconds", ""),
        (
            with("base_url = \"https://a.example\"\nconnect_timeout_seconds = -1.5"),
            "provider.connect_timeout_seconds",
            "",
        ),
        (with("base_url = \"https://a.example\"\nmax_response_bytes = 0"), "provider.max_response_bytes", ""),
        (
            with("base_url = \"https://a.example\"\ndefault_temperature = 3.5"),
            "provider.default_temperature",
            "between 0 and 2",
        ),
        (
            with(
                "base_url = \"https://a.example\"\n[provider.extra_headers]\nAuthorization = \"Bearer sk-x\"",
            ),
            "provider.extra_headers.Authorization",
            "environment",
        ),
        (
            with("base_url = \"https://a.example\"\n[provider.extra_headers]\n\"bad header\" = \"v\""),
            "provider.extra_headers.bad header",
            "header name",
        ),
        (
            with("base_url = \"https://a.example\"\n[models.m]\ncost_input_per_1m = -1.0"),
            "models.m.cost_input_per_1m",
            "non-negative",
        ),
    ];
    for (text, key, phrase) in cases {
        let error = parse_err(&text);
        assert!(error.contains(&format!("key `{key}`")), "expected key {key} in: {error}");
        assert!(error.contains(phrase), "expected {phrase:?} in: {error}");
    }
    // No key variable although one is required; a key variable that is no name.
    let no_env =
        "[provider]\napi_format = \"openai-chat\"\nbase_url = \"https://a.example\"\ndefault_model = \"m\"\n";
    assert!(parse_err(no_env).contains("key `provider.api_key_env`"));
    let pasted_key =
        parse_err(&no_env.replace("default_model", "api_key_env = \"sk-live-abc\"\ndefault_model"));
    assert!(
        pasted_key.contains("provider.api_key_env") && !pasted_key.contains("sk-live-abc"),
        "{pasted_key}"
    );
    // max_tokens_param is an openai-chat setting.
    let anthropic =
        provider_toml("anthropic-messages", "https://a.example", "max_tokens_param = \"max_tokens\"");
    assert!(parse_err(&anthropic).contains("provider.max_tokens_param"));
    // Loopback hosts may use plain http.
    for url in ["http://127.0.0.1:8080", "http://localhost:11434/", "http://[::1]:8000", "http://127.1.2.3"] {
        parse("local", &provider_toml("openai-chat", url, "")).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn provider_names_are_checked() {
    let dir = TempDir::new();
    let path =
        dir.write("providers/My-Provider.toml", &provider_toml("openai-chat", "https://a.example", ""));
    let error = ProviderCatalog::builtin().unwrap().overlay_dir(&dir.path().join("providers")).unwrap_err();
    assert!(matches!(error, ProviderConfigError::InvalidName { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");

    let long = "a".repeat(65);
    assert!(parse(&long, &provider_toml("openai-chat", "https://a.example", "")).is_err());
    assert!(parse(&"a".repeat(64), &provider_toml("openai-chat", "https://a.example", "")).is_ok());
}

#[test]
fn unknown_providers_are_config_errors_listing_the_known_ones() {
    let catalog = ProviderCatalog::builtin().unwrap();
    let error = catalog.create("nosuch", None).err().expect("unknown provider");
    assert_eq!(error.kind, ErrorKind::Config);
    assert_eq!(error.provider, "nosuch");
    assert!(
        error.message.contains("unknown provider `nosuch`") && error.message.contains("anthropic"),
        "{error}"
    );

    let error = catalog.create("Bad-Name", None).err().expect("invalid name");
    assert_eq!(error.kind, ErrorKind::Config);
    let error = catalog.create_target("openai/").err().expect("empty model");
    assert_eq!(error.kind, ErrorKind::Config);
}

#[test]
fn a_missing_api_key_names_the_provider_file_and_variable() {
    let catalog = ProviderCatalog::builtin().unwrap();
    let error = catalog.create_with_env("anthropic", None, &|_| None).err().expect("no key");
    assert_eq!(error.kind, ErrorKind::Config);
    assert_eq!(error.provider, "anthropic");
    for part in ["ANTHROPIC_API_KEY", "provider.api_key_env", "built-in providers/anthropic.toml"] {
        assert!(error.message.contains(part), "{part} missing in: {error}");
    }
    // An empty value counts as missing.
    let error = catalog.create_with_env("openai", None, &|_| Some("  ".into())).err().expect("empty key");
    assert!(error.message.contains("OPENAI_API_KEY"), "{error}");
    // A local server needs none.
    let ollama = catalog.create_with_env("ollama", None, &|_| None).expect("ollama needs no key");
    assert_eq!(ollama.model_name(), "llama3.2");
}

#[test]
fn a_key_that_is_no_header_value_is_refused_without_showing_it() {
    let mut catalog = ProviderCatalog::builtin().unwrap();
    catalog.insert(parse("acme", &provider_toml("openai-chat", "https://a.example", "")).unwrap());
    let provider = catalog.create_with_env("acme", None, &test_env).expect("create");
    assert_eq!(provider.name(), "acme");
    let error =
        catalog.create_with_env("acme", None, &|_| Some(format!("bad\n{TEST_KEY}"))).err().expect("bad key");
    assert_eq!(error.kind, ErrorKind::Config);
    assert!(!format!("{error:?}").contains(TEST_KEY), "{error:?}");
}

#[tokio::test]
async fn targets_models_and_the_registry_factory() {
    let catalog = Arc::new(ProviderCatalog::builtin().unwrap());
    let env = |var: &str| (var == "OPENAI_API_KEY").then(|| "sk-x".to_string());
    let provider = catalog.create_with_env("openai", Some("gpt-4o"), &env).expect("create");
    assert_eq!((provider.name(), provider.model_name()), ("openai", "gpt-4o"));
    let provider = catalog.create_with_env("openai", None, &env).expect("create");
    assert_eq!(provider.model_name(), "gpt-5-mini");
    assert_eq!(provider.validate_config().await, Ok(()));
    // Model ids with slashes survive the `name/model` target syntax.
    let provider = catalog.create_target("vllm/Qwen/Qwen3-8B").expect("keyless vllm");
    assert_eq!(provider.model_name(), "Qwen/Qwen3-8B");

    let registry = LazyRegistry::new(catalog.factory());
    let provider = registry.get("ollama/qwen3:8b").expect("registry target");
    assert_eq!((provider.name(), provider.model_name()), ("ollama", "qwen3:8b"));
    let error = registry.get("nosuch").err().expect("unknown");
    assert_eq!(error.kind, ErrorKind::Config);
}
