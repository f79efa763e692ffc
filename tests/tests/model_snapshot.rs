//! A model's snapshot as a caller holding one sees it: a provider in its own right (calls,
//! streams, names, validation all go through the stack it was built with, with config.toml's
//! request defaults), and a description of that stack and the files it came from.

use arcllm::load_model;
use arcllm::stream::Collector;
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::http::{Canned, MockServer};
use serde_json::json;

fn openai_reply(text: &str) -> Canned {
    Canned::json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "local-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    }))
}

#[tokio::test]
async fn a_held_snapshot_serves_calls_and_streams_through_its_stack_with_the_configs_defaults() {
    let server = MockServer::start(openai_reply("hi there")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("providers")).unwrap();
    std::fs::write(
        dir.path().join("providers/local.toml"),
        format!(
            "[provider]\napi_format = \"openai-chat\"\nbase_url = \"{}\"\napi_key_required = false\ndefault_model = \"local-model\"\ntimeout_seconds = 5\n",
            server.url
        ),
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[defaults]\nprovider = \"local\"\ntemperature = 0.5\nmax_tokens = 77\n[modules.retry]\nenabled = true\nmax_retries = 1\n",
    )
    .unwrap();
    let model = load_model("local").config_file(&config).build().await.expect("model");
    let snapshot = model.snapshot();

    // What it is built from and of.
    assert_eq!(snapshot.version(), 1);
    assert_eq!(snapshot.stack().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["retry"]);
    assert_eq!(snapshot.stack()[0].table["max_retries"], 1);
    assert_eq!(snapshot.sources().config_file.as_deref(), Some(config.as_path()));
    assert_eq!(snapshot.sources().providers_dir.as_deref(), Some(dir.path().join("providers").as_path()));
    assert!(snapshot.sources().modules.is_empty(), "built-ins have no file to watch");
    assert_eq!(snapshot.to_string(), "stack v1 (retry → local/local-model)");
    let debug = format!("{snapshot:?}");
    assert!(
        debug.starts_with("Snapshot") && debug.contains("version: 1") && debug.contains("retry"),
        "{debug}"
    );

    // A provider in its own right.
    assert_eq!((snapshot.name(), snapshot.model_name()), ("local", "local-model"));
    snapshot.validate_config().await.expect("a valid stack validates");
    let request =
        Request { messages: vec![Message::user("hello")], tools: vec![], options: Options::default() };
    let answer = snapshot.invoke(request.clone()).await.expect("answer");
    assert_eq!(answer.content.as_deref(), Some("hi there"));
    let streamed =
        Collector::collect(snapshot.invoke_stream(request).await.expect("stream")).await.expect("events");
    assert_eq!(streamed.content.as_deref(), Some("hi there"));
    // The model itself is a provider too, calling whatever snapshot is current.
    let provider: &dyn Provider = &model;
    assert_eq!(provider.name(), "local");
    provider.validate_config().await.expect("the model validates");
    let request =
        Request { messages: vec![Message::user("again")], tools: vec![], options: Options::default() };
    assert_eq!(provider.invoke(request.clone()).await.expect("answer").content.as_deref(), Some("hi there"));
    let streamed =
        Collector::collect(provider.invoke_stream(request).await.expect("stream")).await.expect("events");
    assert_eq!(streamed.content.as_deref(), Some("hi there"));
    // config.toml's defaults went out with every call (none set options).
    let sent = server.requests();
    assert_eq!(sent.len(), 4, "{sent:?}");
    for request in &sent {
        assert_eq!(request.json["temperature"], 0.5, "{}", request.json);
        let max_tokens = request.json.get("max_tokens").or(request.json.get("max_completion_tokens"));
        assert_eq!(max_tokens, Some(&json!(77)), "{}", request.json);
    }
}
