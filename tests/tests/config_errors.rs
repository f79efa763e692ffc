//! config.toml's validation, key by key: every mistake a user can make in a table is an
//! error naming the file and the dotted key (or a visible warning where the file is
//! ArcLLM's and the section is switched off), and what is accepted reads as written.

use std::path::{Path, PathBuf};

use arcllm::config::{Config, ConfigError, ModuleCode};
use arcllm::target::Target;

const FILE: &str = "/etc/arcllm-test/config.toml";

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new(FILE))
}

/// The error for `text`, as the user reads it; it must name the file.
fn error(text: &str) -> String {
    let message = load(text).err().unwrap_or_else(|| panic!("accepted: {text:?}")).to_string();
    assert!(message.starts_with(FILE), "{text:?}: the error does not name the file: {message}");
    message
}

#[test]
fn module_tables_reject_values_of_the_wrong_type_naming_the_key() {
    for (text, key, phrase) in [
        ("[modules.retry]\nshare_state = \"yes\"\n", "modules.retry.share_state", "must be true or false"),
        ("[modules.mine]\nwasm = 3\n", "modules.mine.wasm", "must be a path"),
        ("[modules.fallback]\nreach = \"openai\"\n", "modules.fallback.reach", "list of provider targets"),
        ("[modules.fallback]\nreach = [1]\n", "modules.fallback.reach", "list of provider targets"),
        ("[modules.fallback]\nreach = [\"Not A Provider\"]\n", "modules.fallback.reach", ""),
        ("[modules]\nretry = 3\n", "modules.retry", "must be a table"),
        ("modules = 3\n", "modules", "must be a table"),
    ] {
        let message = error(text);
        assert!(message.contains(&format!("`{key}`")) && message.contains(phrase), "{text:?}: {message}");
    }
}

#[test]
fn a_module_table_keeps_arcllms_keys_apart_from_the_modules_own() {
    let config = load(
        "[stack]\norder = [\"retry\", \"mine\"]\n[modules.mine]\nenabled = true\nwasm = \"mods/mine.wasm\"\nshare_state = true\nreach = [\"openai\", \"anthropic/claude-haiku-4-5\"]\nlevel = 2\nwhen = 1979-05-27T07:32:00Z\nnested = { a = [1.5, \"x\"] }\n",
    )
    .unwrap();
    let mine = &config.modules["mine"];
    assert!(mine.enabled && mine.share_state);
    assert_eq!(mine.code, ModuleCode::Wasm(PathBuf::from("/etc/arcllm-test/mods/mine.wasm")));
    assert_eq!(
        mine.reach,
        vec![Target::parse("openai").unwrap(), Target::parse("anthropic/claude-haiku-4-5").unwrap()]
    );
    // The module sees only its own keys, converted to JSON (a datetime as its text).
    assert_eq!(
        serde_json::Value::Object(mine.table.clone()),
        serde_json::json!({"level": 2, "when": "1979-05-27T07:32:00Z", "nested": {"a": [1.5, "x"]}})
    );
    assert_eq!(config.order, ["retry", "mine"]);
    // A built-in's table is overlaid on the embedded default's, key by key.
    let retry = &config.modules["retry"];
    assert_eq!(retry.code, ModuleCode::Builtin);
    assert!(!retry.enabled && !retry.share_state && retry.reach.is_empty());
    assert_eq!(retry.table["max_retries"], 3);
}

#[test]
fn defaults_are_range_checked() {
    for (text, key) in [
        ("[defaults]\ntemperature = 2.5\n", "defaults.temperature"),
        ("[defaults]\ntemperature = -1\n", "defaults.temperature"),
        ("[defaults]\ntemperature = \"hot\"\n", "defaults.temperature"),
        ("[defaults]\nmax_tokens = 0\n", "defaults.max_tokens"),
        ("[defaults]\nmax_tokens = 5000000000\n", "defaults.max_tokens"),
        ("[defaults]\nmax_tokens = 1.5\n", "defaults.max_tokens"),
        ("[defaults]\nmodel = 4\n", "model"),
        ("defaults = \"anthropic\"\n", "defaults"),
        ("providers_dir = 7\n", "providers_dir"),
    ] {
        let message = error(text);
        assert!(message.contains(&format!("`{key}`")), "{text:?}: {message}");
    }
    // The ends of the ranges are accepted; an integer temperature is a number too.
    let config = load("[defaults]\ntemperature = 2\nmax_tokens = 1\nmodel = \"m\"\n").unwrap();
    assert_eq!((config.temperature, config.max_tokens), (Some(2.0), Some(1)));
    assert_eq!(config.model.as_deref(), Some("m"));
    let config = load("[defaults]\ntemperature = 0.0\n").unwrap();
    assert_eq!(config.temperature, Some(0.0));
}

#[test]
fn the_stack_order_must_be_a_list_of_declared_names() {
    for (text, phrase) in [
        ("[stack]\norder = \"retry\"\n", "must be a list of module names"),
        ("[stack]\norder = [\"retry\", 2]\n", "must be a list of module names"),
        ("[stack]\nlayers = []\n", "unknown key `layers` in [stack]"),
        ("[stack]\norder = [\"retry\", \"fallback\", \"retry\"]\n", "`retry` appears twice"),
        ("[stack]\norder = [\"cache\"]\n", "`cache` is not a module"),
    ] {
        let message = error(text);
        assert!(message.contains(phrase), "{text:?}: {message}");
    }
    assert!(load("[stack]\norder = []\n").unwrap().order.is_empty());
}

#[test]
fn the_cache_table_is_checked_and_its_directory_is_relative_to_the_file() {
    for (text, key) in [
        ("[cache]\nenabled = \"no\"\n", "cache.enabled"),
        ("[cache]\ndir = \"  \"\n", "cache.dir"),
        ("[cache]\ndir = 1\n", "cache.dir"),
    ] {
        let message = error(text);
        assert!(message.contains(&format!("`{key}`")), "{text:?}: {message}");
    }
    assert!(error("[cache]\nsize = 1\n").contains("unknown key `size` in [cache]"));
    let config = load("[cache]\ndir = \"compiled\"\n").unwrap();
    assert_eq!(config.cache.dir, Some(PathBuf::from("/etc/arcllm-test/compiled")));
    assert!(config.cache.enabled);
    assert_eq!(config.cache.directory(), Some(PathBuf::from("/etc/arcllm-test/compiled")));
    // Switched off, no cache is used, whatever the directory.
    let config = load("[cache]\nenabled = false\ndir = \"compiled\"\n").unwrap();
    assert_eq!(config.cache.disk_override(), Some(None));
    // Neither key set: the runtime keeps its own cache.
    assert_eq!(Config::embedded().cache.disk_override(), None);
}

#[test]
fn an_arcllm_vault_is_a_warning_when_empty_and_an_error_when_it_names_a_backend() {
    let config = load("[vault]\nbackend = \"\"\n").unwrap();
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].contains("[vault] is ignored") && config.warnings[0].contains(FILE));
    assert_eq!(load("[vault]\n").unwrap().warnings.len(), 1);
    let message = error("[vault]\nbackend = \"hashicorp\"\n");
    assert!(message.contains("`vault.backend`") && message.contains("not supported"), "{message}");
}

#[test]
fn server_sections_are_kept_for_the_program_that_reads_them_and_nothing_else_is() {
    let config =
        load("[server]\nlisten = \"127.0.0.1:8080\"\n[aliases]\nfast = \"openai/gpt-4o-mini\"\n").unwrap();
    let server = config.section("server").expect("[server] is kept");
    assert_eq!(server.get("listen").and_then(|v| v.as_str()), Some("127.0.0.1:8080"));
    assert!(config.section("aliases").is_some());
    // Only the server sections are handed out, not arcllm's own tables.
    assert!(config.section("defaults").is_none());
    assert!(Config::embedded().section("server").is_none());
}

#[test]
fn provenance_tells_the_users_values_from_the_defaults() {
    let config = load("[modules.retry]\nmax_retries = 7\n").unwrap();
    let provenance = config.provenance();
    let find = |key: &str| {
        provenance
            .iter()
            .find(|(k, _, _)| k == key)
            .unwrap_or_else(|| panic!("{key} missing from {provenance:?}"))
            .clone()
    };
    assert_eq!(
        find("modules.retry.max_retries"),
        ("modules.retry.max_retries".into(), "7".into(), FILE.into())
    );
    let (_, value, origin) = find("defaults.provider");
    assert_eq!((value.as_str(), origin.as_str()), ("\"anthropic\"", "default"));
    // Without a user file every value is the default's.
    assert!(Config::embedded().provenance().iter().all(|(_, _, origin)| origin == "default"));
}

#[test]
fn an_explicit_config_path_that_exists_is_used_by_discover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(&path, "[defaults]\nprovider = \"openai\"\n").unwrap();
    let located = Config::locate(Some(&path)).unwrap().unwrap();
    assert_eq!((located.path.as_path(), located.rule), (path.as_path(), "--config"));
    let config = Config::discover(Some(&path)).unwrap();
    assert_eq!(config.provider, "openai");
    assert_eq!(config.file.as_deref(), Some(path.as_path()));
    // A directory is not a config file.
    let err = Config::locate(Some(dir.path())).unwrap_err();
    assert!(matches!(err, ConfigError::Missing { rule: "--config", .. }), "{err}");
}

#[test]
fn limits_must_be_positive_and_are_read_as_given() {
    for (text, key) in [
        ("[limits]\ncall_timeout_seconds = 0\n", "limits.call_timeout_seconds"),
        ("[limits]\nconfigure_timeout_seconds = -1\n", "limits.configure_timeout_seconds"),
        ("[limits]\ncompile_timeout_seconds = \"slow\"\n", "limits.compile_timeout_seconds"),
        ("[limits]\ncall_timeout_seconds = 1e300\n", "limits.call_timeout_seconds"),
        ("[limits]\nmax_calls_per_invoke = 0\n", "limits.max_calls_per_invoke"),
        ("[limits]\nmax_module_bytes = 1.5\n", "limits.max_module_bytes"),
        ("[limits]\nmax_log_lines_per_call = -3\n", "limits.max_log_lines_per_call"),
    ] {
        let message = error(text);
        assert!(
            message.contains(&format!("`{key}`")) && message.contains("must be a positive"),
            "{text:?}: {message}"
        );
    }
    assert!(error("[limits]\ncall_timeout = 1\n").contains("unknown key `call_timeout` in [limits]"));
    let limits = load(
        "[limits]\ncall_timeout_seconds = 2.5\nconfigure_timeout_seconds = 3\ncompile_timeout_seconds = 4\nmax_calls_per_invoke = 9\nmax_module_bytes = 1000\nmax_log_lines_per_call = 12\n",
    )
    .unwrap()
    .limits;
    assert_eq!(limits.call_timeout, std::time::Duration::from_millis(2500));
    assert_eq!(limits.configure_timeout, std::time::Duration::from_secs(3));
    assert_eq!(limits.compile_timeout, std::time::Duration::from_secs(4));
    assert_eq!((limits.max_calls_per_invoke, limits.max_module_bytes), (9, 1000));
    assert_eq!(limits.max_log_lines_per_call, Some(12));
}
