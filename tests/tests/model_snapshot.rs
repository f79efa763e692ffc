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

/// A config directory with providers `local` and `other` (OpenAI format, no key, default
/// models `local-model` and `other-model`) answering at `local` and `other`, and a
/// config.toml holding `config`.
fn names_workspace(local: &MockServer, other: &MockServer, config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("providers")).unwrap();
    for (name, server) in [("local", local), ("other", other)] {
        std::fs::write(
            dir.path().join(format!("providers/{name}.toml")),
            format!(
                "[provider]\napi_format = \"openai-chat\"\nbase_url = \"{}\"\napi_key_required = false\ndefault_model = \"{name}-model\"\ntimeout_seconds = 5\n",
                server.url
            ),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    dir
}

/// The model's names, through the `Provider` trait, and its current snapshot's.
fn names(model: &arcllm::Model) -> [(String, String); 2] {
    let snapshot = model.snapshot();
    [
        (model.name().to_string(), model.model_name().to_string()),
        (snapshot.name().to_string(), snapshot.model_name().to_string()),
    ]
}

fn owned(provider: &str, model: &str) -> [(String, String); 2] {
    [(provider.to_string(), model.to_string()), (provider.to_string(), model.to_string())]
}

/// What the model calls: the vendor it reached and the model named in the request.
async fn called(model: &arcllm::Model, server: &MockServer) -> String {
    let before = server.requests().len();
    model.invoke(vec![Message::user("hello")], vec![], Options::default()).await.expect("answer");
    let sent = server.requests();
    assert_eq!(sent.len(), before + 1, "the call went to another vendor");
    sent[before].json["model"].as_str().expect("a model in the request").to_string()
}

#[tokio::test]
async fn a_model_names_the_provider_and_model_the_builder_gave() {
    let (local, other) =
        (MockServer::start(openai_reply("hi")).await, MockServer::start(openai_reply("hi")).await);
    let config =
        "[defaults]\nprovider = \"other\"\nmodel = \"config-model\"\n[modules.retry]\nenabled = true\n";
    let dir = names_workspace(&local, &other, config);
    let model = load_model("local")
        .model("chosen-model")
        .config_file(dir.path().join("config.toml"))
        .build()
        .await
        .expect("model");
    assert_eq!(names(&model), owned("local", "chosen-model"));
    assert_eq!(called(&model, &local).await, "chosen-model");
    assert!(other.requests().is_empty());
}

#[tokio::test]
async fn a_model_names_the_provider_and_model_config_toml_gave() {
    let (local, other) =
        (MockServer::start(openai_reply("hi")).await, MockServer::start(openai_reply("hi")).await);
    // Both from config.toml, through modules.
    let config =
        "[defaults]\nprovider = \"local\"\nmodel = \"config-model\"\n[modules.retry]\nenabled = true\n";
    let dir = names_workspace(&local, &other, config);
    let model = arcllm::ModelBuilder::default()
        .config_file(dir.path().join("config.toml"))
        .build()
        .await
        .expect("model");
    assert!(!model.is_bare());
    assert_eq!(names(&model), owned("local", "config-model"));
    assert_eq!(called(&model, &local).await, "config-model");

    // The provider from config.toml, the model its default; a bare adapter.
    let dir = names_workspace(&local, &other, "[defaults]\nprovider = \"other\"\n");
    let model = arcllm::ModelBuilder::default()
        .config_file(dir.path().join("config.toml"))
        .build()
        .await
        .expect("model");
    assert!(model.is_bare());
    assert_eq!(names(&model), owned("other", "other-model"));
    assert_eq!(called(&model, &other).await, "other-model");
}

#[tokio::test]
async fn a_hot_swap_of_config_toml_keeps_the_names_the_model_was_built_with() {
    let (local, other) =
        (MockServer::start(openai_reply("hi")).await, MockServer::start(openai_reply("hi")).await);
    let config =
        "[defaults]\nprovider = \"local\"\nmodel = \"config-model\"\n[modules.retry]\nenabled = true\n";
    let dir = names_workspace(&local, &other, config);
    let file = dir.path().join("config.toml");
    let model = arcllm::ModelBuilder::default().config_file(&file).build().await.expect("model");
    assert_eq!(names(&model), owned("local", "config-model"));

    // The new config names another provider and model, and changes the stack: the stack
    // changes, the provider and model stay those resolved at build.
    std::fs::write(
        &file,
        "[defaults]\nprovider = \"other\"\nmodel = \"new-model\"\n[modules.retry]\nenabled = false\n[modules.fallback]\nenabled = true\nchain = [\"other\"]\n",
    )
    .unwrap();
    model.reload().await.expect("reload");
    assert_eq!(model.version(), 2);
    assert_eq!(model.stack_names(), ["fallback"]);
    assert_eq!(names(&model), owned("local", "config-model"));
    assert_eq!(called(&model, &local).await, "config-model");

    // And to a bare adapter.
    std::fs::write(&file, "[defaults]\nprovider = \"other\"\n[modules.retry]\nenabled = false\n").unwrap();
    model.reload().await.expect("reload");
    assert!(model.is_bare());
    assert_eq!(names(&model), owned("local", "config-model"));
    assert_eq!(called(&model, &local).await, "config-model");
    assert!(other.requests().is_empty());
}
