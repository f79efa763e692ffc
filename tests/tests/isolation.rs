//! Calls are isolated from each other by default: every call gets fresh instances, so
//! nothing one call leaves in a module's memory (a prompt kept in a global) reaches a later
//! call. Sharing state across calls is an opt-in per module (`share_state = true`), and a
//! stack reuses instances only when every one of its modules opted in.

use std::sync::Arc;

use arcllm::config::Config;
use arcllm::runtime::{Module, ModuleSource, Runtime, Stack};
use arcllm::types::*;
use arcllm::{load_model, Provider};
use arcllm_tests::http::{Canned, MockServer};
use arcllm_tests::*;
use serde_json::json;

async fn remembering(rt: &Runtime) -> Arc<Module> {
    let config = json!({ "mode": "remember" });
    rt.load_module("remember", ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config).await.expect("loads")
}

async fn counting_tag(rt: &Runtime) -> Arc<Module> {
    let config = json!({"tag": "t", "count_calls": true});
    rt.load_module("tag", ModuleSource::Bytes, fixtures::TAG.to_vec(), &config).await.expect("tag loads")
}

async fn ask(chain: &Stack, text: &str) -> Response {
    chain.invoke(Request::new(vec![Message::user(text)])).await.expect("call succeeds")
}

#[tokio::test]
async fn by_default_a_call_never_sees_what_an_earlier_call_left_in_a_module() {
    let rt = Runtime::builder().build().unwrap();
    let chain = Stack::new(rt.clone(), vec![remembering(&rt).await], ScriptedProvider::ok("anthropic"));
    assert!(!chain.shares_state());
    ask(&chain, "user A's secret prompt").await;
    let b = ask(&chain, "user B's prompt").await;
    assert_eq!(b.metadata_value("hostile.previous"), None, "B saw state from A: {:?}", b.metadata);
    assert!(!format!("{b:?}").contains("secret"), "{b:?}");
}

#[tokio::test]
async fn by_default_every_call_gets_fresh_instances() {
    let rt = Runtime::builder().build().unwrap();
    let chain = Stack::new(rt.clone(), vec![counting_tag(&rt).await], ScriptedProvider::ok("anthropic"));
    for _ in 0..3 {
        let response = ask(&chain, "hi").await;
        assert_eq!(response.metadata_value("calls"), Some("1"), "a fresh instance served the call");
    }
}

#[tokio::test]
async fn modules_that_opt_in_share_state_across_calls() {
    let rt = Runtime::builder().build().unwrap();
    let module = remembering(&rt).await.with_share_state(true);
    let chain = Stack::new(rt.clone(), vec![module], ScriptedProvider::ok("anthropic"));
    assert!(chain.shares_state());
    ask(&chain, "first").await;
    // What sharing means: the second call sees the first one's prompt.
    assert_eq!(ask(&chain, "second").await.metadata_value("hostile.previous"), Some("first"));
}

#[tokio::test]
async fn one_module_that_does_not_opt_in_keeps_the_whole_stack_isolated() {
    let rt = Runtime::builder().build().unwrap();
    let shared_tag = counting_tag(&rt).await.with_share_state(true);
    let chain = Stack::new(rt.clone(), vec![shared_tag, remembering(&rt).await], ScriptedProvider::ok("x"));
    assert!(!chain.shares_state());
    ask(&chain, "A").await;
    let b = ask(&chain, "B").await;
    assert_eq!(b.metadata_value("hostile.previous"), None);
    assert_eq!(b.metadata_value("calls"), Some("1"));
}

fn openai_reply() -> Canned {
    Canned::json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    }))
}

/// Two calls through a model whose only module is `remember`, with `share_state` as given
/// in its config.toml table: what the second call's answer says about the first.
async fn second_call_sees(share_state: Option<bool>) -> Option<String> {
    let server = MockServer::start(openai_reply()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("providers")).unwrap();
    std::fs::write(
        dir.path().join("providers/primary.toml"),
        format!(
            "[provider]\napi_format = \"openai-chat\"\nbase_url = \"{}\"\napi_key_required = false\ndefault_model = \"m\"\n",
            server.url
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("hostile.wasm"), fixtures::HOSTILE).unwrap();
    let share = share_state.map(|s| format!("share_state = {s}\n")).unwrap_or_default();
    let path = dir.path().join("config.toml");
    let text = format!(
        "[stack]\norder = [\"remember\"]\n[modules.remember]\nwasm = \"hostile.wasm\"\nenabled = true\nmode = \"remember\"\n{share}"
    );
    std::fs::write(&path, text).unwrap();
    let config = Config::from_file(&path).expect("config");
    assert_eq!(config.modules["remember"].share_state, share_state.unwrap_or(false));
    // `share_state` is the host's key: the module's table never sees it (the hostile
    // module rejects keys it does not know).
    assert!(!config.modules["remember"].table.contains_key("share_state"));
    let model = load_model("primary").config(config).build().await.expect("builds");
    model.invoke(vec![Message::user("first prompt")], vec![], Options::default()).await.unwrap();
    let second = model.invoke(vec![Message::user("second")], vec![], Options::default()).await.unwrap();
    second.metadata_value("hostile.previous").map(str::to_string)
}

#[tokio::test]
async fn share_state_in_config_toml_is_the_opt_in() {
    assert_eq!(second_call_sees(None).await, None);
    assert_eq!(second_call_sees(Some(false)).await, None);
    assert_eq!(second_call_sees(Some(true)).await.as_deref(), Some("first prompt"));
}

#[test]
fn share_state_must_be_a_boolean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = "[modules.retry]\nshare_state = \"yes\"\n";
    let error = Config::from_toml(text, &path).expect_err("rejected").to_string();
    assert!(error.contains("modules.retry.share_state"), "{error}");
}

#[test]
fn share_state_cannot_be_set_per_call() {
    let settings = [("retry".to_string(), arcllm::Setting::from(json!({ "share_state": true })))].into();
    let error = arcllm::model::plan(&Config::embedded(), &settings).expect_err("rejected").to_string();
    assert!(error.contains("share_state"), "{error}");
}
