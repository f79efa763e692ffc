//! Provider names and targets: the one rule the host applies, and the SDK's copy of it for
//! modules, which must accept exactly the same targets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arcllm::runtime::{EmptyRegistry, LazyRegistry, LoadErrorKind, ModuleSource, Registry, Runtime};
use arcllm::target::{ProviderName, Target, TargetError, MAX_MODEL_LEN, MAX_NAME_LEN, NAME_RULE};
use arcllm::types::{Error, ErrorKind, Message, Request};
use arcllm::Provider;
use arcllm_tests::ScriptedProvider;

/// The SDK's file, compiled here as plain Rust: it depends on nothing else in the SDK.
#[path = "../../guest-modules/sdk/src/target.rs"]
mod sdk_target;

fn valid_targets() -> Vec<String> {
    vec![
        "openai".into(),
        "a".into(),
        "a_1".into(),
        "ollama/qwen3:8b".into(),
        "vllm/Qwen/Qwen3-8B".into(),
        "a".repeat(MAX_NAME_LEN),
        format!("openai/{}", "m".repeat(MAX_MODEL_LEN)),
        "openai/model with spaces".into(),
    ]
}

fn invalid_targets() -> Vec<String> {
    vec![
        "".into(),
        "/".into(),
        "/gpt-4o".into(),
        "openai/".into(),
        "Bad-Name".into(),
        "OpenAI".into(),
        "1openai".into(),
        "_openai".into(),
        "open ai".into(),
        "opénai".into(),
        "a".repeat(MAX_NAME_LEN + 1),
        format!("{}/m", "a".repeat(MAX_NAME_LEN + 1)),
        format!("openai/{}", "m".repeat(MAX_MODEL_LEN + 1)),
    ]
}

#[test]
fn targets_split_at_the_first_slash_and_print_back_as_written() {
    let target = Target::parse("openai").unwrap();
    assert_eq!((target.name(), target.model()), ("openai", None));
    let target = Target::parse("vllm/Qwen/Qwen3-8B").unwrap();
    assert_eq!((target.name(), target.model()), ("vllm", Some("Qwen/Qwen3-8B")));
    for text in valid_targets() {
        let target: Target = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(target.to_string(), text);
        assert_eq!(Target::parse(&target.to_string()), Ok(target));
    }
}

#[test]
fn invalid_targets_are_refused_with_the_rule() {
    for text in invalid_targets() {
        let error = Target::parse(&text).expect_err(&text);
        let message = error.to_string();
        assert!(message.contains("is not a valid provider target"), "{text}: {message}");
    }
    let error = Target::parse("Bad-Name/gpt").unwrap_err();
    assert!(matches!(error, TargetError::Malformed { .. }));
    assert_eq!(
        error.to_string(),
        "`Bad-Name/gpt` is not a valid provider target: expected `name` or `name/model`, name matching ^[a-z][a-z0-9_]*$ (at most 64 characters)"
    );
    assert_eq!(error.provider(), "Bad-Name");
    let error = Target::parse(&format!("openai/{}", "m".repeat(MAX_MODEL_LEN + 1))).unwrap_err();
    assert!(matches!(error, TargetError::ModelTooLong { len, .. } if len == MAX_MODEL_LEN + 1), "{error}");
    assert!(error.to_string().contains("at most 256"), "{error}");
}

#[test]
fn an_invalid_target_is_a_config_error_against_its_provider_and_stays_short() {
    let error: Error = Target::parse("openai/").unwrap_err().into();
    assert_eq!(error.kind, ErrorKind::Config);
    assert_eq!(error.provider, "openai");

    // A module controls the string: the error does not repeat all of it.
    let huge = format!("openai/{}", "m".repeat(1 << 20));
    let error: Error = Target::parse(&huge).unwrap_err().into();
    assert!(error.message.len() < 1024, "{} bytes", error.message.len());
    assert!(error.message.contains("`openai/mmm"), "{}", error.message);
}

#[test]
fn provider_names_follow_the_name_rule() {
    assert_eq!(ProviderName::parse("groq").unwrap().as_str(), "groq");
    assert!(ProviderName::is_valid(&"a".repeat(MAX_NAME_LEN)));
    for bad in ["", "groq/llama", "Groq", "9x", "a-b", &"a".repeat(MAX_NAME_LEN + 1)] {
        assert!(!ProviderName::is_valid(bad), "{bad}");
        let error = ProviderName::parse(bad).unwrap_err();
        assert_eq!(error.name(), bad);
        assert_eq!(
            error.to_string(),
            format!(
                "`{bad}` is not a valid provider name (expected ^[a-z][a-z0-9_]*$, at most 64 characters)"
            )
        );
    }
}

#[test]
fn the_sdk_accepts_exactly_the_targets_the_host_accepts() {
    assert_eq!((sdk_target::MAX_NAME_LEN, sdk_target::MAX_MODEL_LEN), (MAX_NAME_LEN, MAX_MODEL_LEN));
    assert!(sdk_target::EXPECTED.contains(NAME_RULE), "{}", sdk_target::EXPECTED);
    let mut cases = valid_targets();
    cases.extend(invalid_targets());
    cases.extend(["a/b/c", "a//", "a/ ", "z9_/x"].map(String::from));
    for text in cases {
        assert_eq!(sdk_target::valid(&text), Target::parse(&text).is_ok(), "target {text:?}");
        assert_eq!(sdk_target::valid_name(&text), ProviderName::is_valid(&text), "name {text:?}");
    }
}

#[tokio::test]
async fn the_registry_caches_one_provider_per_parsed_target() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let registry = LazyRegistry::new(move |name, model| {
        counter.fetch_add(1, Ordering::SeqCst);
        let provider = ScriptedProvider::ok(name);
        assert!(model.is_none_or(|m| m.len() <= MAX_MODEL_LEN));
        Ok(provider as Arc<dyn Provider>)
    });
    let first = registry.get("openai/gpt-4o").unwrap();
    let again = registry.get("openai/gpt-4o").unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    registry.get("openai").unwrap();
    assert_eq!((registry.created(), calls.load(Ordering::SeqCst)), (2, 2));

    let too_long = format!("openai/{}", "m".repeat(MAX_MODEL_LEN + 1));
    let error = registry.invoke(&too_long, Request::new(vec![Message::user("hi")])).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Config, "openai"));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the factory never sees an invalid target");
}

#[tokio::test]
async fn without_a_registry_targets_are_still_checked() {
    let request = || Request::new(vec![Message::user("hi")]);
    let error = EmptyRegistry.invoke("Bad-Name", request()).await.unwrap_err();
    assert!(error.message.contains("is not a valid provider target"), "{error:?}");
    let error = EmptyRegistry.invoke("openai/gpt-4o", request()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Config);
    assert!(error.message.contains("no provider registry is configured"), "{error:?}");
}

#[tokio::test]
async fn the_fallback_module_refuses_at_load_a_chain_entry_the_host_would_refuse() {
    let runtime = Runtime::builder().build().expect("runtime");
    let load = |entry: String| {
        let runtime = runtime.clone();
        async move {
            let config = serde_json::json!({ "chain": [entry] });
            runtime
                .load_module("fallback", ModuleSource::Builtin, arcllm::builtin::FALLBACK.to_vec(), &config)
                .await
        }
    };
    let longest = format!("vllm/{}", "m".repeat(MAX_MODEL_LEN));
    assert!(load(longest).await.is_ok());
    let too_long = format!("vllm/{}", "m".repeat(MAX_MODEL_LEN + 1));
    let error = load(too_long).await.expect_err("a model over the bound");
    assert!(matches!(error.kind, LoadErrorKind::Config { .. }), "{error}");
    assert!(error.to_string().contains("is not a valid provider target"), "{error}");
}
