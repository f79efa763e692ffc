//! The SDK's `scope` reader (`guest-modules/sdk/src/scope.rs`), compiled natively: the one
//! place the modules that keep state per provider (`rate_limit`, `circuit_breaker`) read
//! their `scope` key and name their state.

// Only part of the SDK's config reader is used here.
#[allow(dead_code)]
#[path = "../../guest-modules/sdk/src/config.rs"]
mod config;
#[path = "../../guest-modules/sdk/src/scope.rs"]
mod scope;

use config::Config;
use scope::Scope;

fn read(json: &str, default: Scope) -> Result<Scope, String> {
    Scope::from_config(&Config::parse(json).unwrap(), default)
}

#[test]
fn an_unset_or_null_scope_is_the_default() {
    assert_eq!(read("{}", Scope::Provider), Ok(Scope::Provider));
    assert_eq!(read("{}", Scope::Model), Ok(Scope::Model));
    assert_eq!(read(r#"{"scope": null}"#, Scope::Model), Ok(Scope::Model));
    assert_eq!(Scope::default(), Scope::Provider);
}

#[test]
fn provider_and_model_are_read_whatever_the_default() {
    assert_eq!(read(r#"{"scope": "provider"}"#, Scope::Model), Ok(Scope::Provider));
    assert_eq!(read(r#"{"scope": "model"}"#, Scope::Provider), Ok(Scope::Model));
}

#[test]
fn anything_else_is_an_error_naming_the_key_the_values_and_what_was_given() {
    for (json, given) in [
        (r#"{"scope": "user"}"#, "\"user\""),
        (r#"{"scope": "Provider"}"#, "\"Provider\""),
        (r#"{"scope": 1}"#, "1"),
        (r#"{"scope": ["model"]}"#, "[\"model\"]"),
        (r#"{"scope": true}"#, "true"),
    ] {
        let error = read(json, Scope::Provider).unwrap_err();
        assert!(error.starts_with("scope must be \"provider\" or \"model\""), "{json}: {error}");
        assert!(error.ends_with(&format!("got {given}")), "{json}: {error}");
    }
}

#[test]
fn the_target_is_the_provider_or_the_provider_and_model_as_a_provider_target() {
    assert_eq!(Scope::Provider.target("openai", "gpt-4o"), "openai");
    assert_eq!(Scope::Model.target("openai", "gpt-4o"), "openai/gpt-4o");
    // A model name may hold slashes; the target keeps it whole after the first one.
    assert_eq!(Scope::Model.target("vllm", "Qwen/Qwen3-8B"), "vllm/Qwen/Qwen3-8B");
    assert_eq!(Scope::KEY, "scope");
}
