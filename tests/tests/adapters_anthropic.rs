//! The Anthropic Messages adapter against a local vendor double: what it sends for every
//! field of the data model, and what it makes of every part of the answer.

use arcllm::types::*;
use arcllm_tests::full_request;
use arcllm_tests::http::*;
use serde_json::{json, Value};

const FORMAT: &str = "anthropic-messages";

/// A minimal valid Messages answer with `stop_reason`.
fn answer(stop_reason: Value) -> Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": 3, "output_tokens": 1}
    })
}

#[tokio::test]
async fn full_request_maps_every_field_to_the_messages_body() {
    let server = MockServer::start(Canned::json(answer(json!("end_turn")))).await;
    let provider = provider_at(FORMAT, &server.url, "");
    provider.invoke(full_request()).await.expect("invoke");

    let sent = server.only_request();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(TEST_KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("authorization"), None);
    let expected = json!({
        "model": "test-model",
        "max_tokens": 256,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "What is in this picture? Also search for rust."},
            {"role": "user", "content": [
                {"type": "text", "text": "look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Searching."},
                {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "rust"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Rust is a language."}
            ]}
        ],
        "temperature": 0.25,
        "stop_sequences": ["STOP"],
        "tools": [{
            "name": "search",
            "description": "Search the web",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
        }],
        "top_p": 0.9
    });
    assert_eq!(sent.json, expected);
}

#[tokio::test]
async fn every_part_of_the_answer_is_mapped_back() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-2025",
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
            {"type": "text", "text": "Here you go: "},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "ünïcødé ✓", "citations": null},
            {"type": "thinking", "thinking": "And again.", "signature": "sig2"},
            {"type": "tool_use", "id": "toolu_2", "name": "search", "input": {"q": "wasm", "n": 2}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 40}
    });
    let server = MockServer::start(Canned::json(body).header("request-id", "req_abc")).await;
    let response = provider_at(FORMAT, &server.url, "").invoke(full_request()).await.expect("invoke");
    let expected = Response {
        content: Some("Here you go: ünïcødé ✓".into()),
        tool_calls: vec![ToolCall {
            id: "toolu_2".into(),
            name: "search".into(),
            arguments: r#"{"n":2,"q":"wasm"}"#.into(),
        }],
        usage: Usage {
            input_tokens: 100,
            output_tokens: 20,
            total_tokens: 190,
            cache_read_tokens: Some(30),
            cache_write_tokens: Some(40),
            reasoning_tokens: None,
        },
        model: "claude-test-2025".into(),
        stop_reason: StopReason::ToolUse,
        thinking: Some("Let me think.\n\nAnd again.".into()),
        metadata: vec![("adapter.request_id".into(), "req_abc".into())],
    };
    assert_eq!(response, expected);
}

#[tokio::test]
async fn stop_reasons_map_one_to_one() {
    let cases = [
        ("end_turn", StopReason::EndTurn),
        ("tool_use", StopReason::ToolUse),
        ("max_tokens", StopReason::MaxTokens),
        ("stop_sequence", StopReason::StopSequence),
        ("refusal", StopReason::Refusal),
        ("model_context_window_exceeded", StopReason::ContextWindowExceeded),
        ("pause_turn", StopReason::PauseTurn),
    ];
    for (vendor, expected) in cases {
        let server = MockServer::start(Canned::json(answer(json!(vendor)))).await;
        let response = provider_at(FORMAT, &server.url, "")
            .invoke(Request::new(vec![Message::user("hi")]))
            .await
            .expect("invoke");
        assert_eq!(response.stop_reason, expected, "stop_reason {vendor}");
        assert_eq!(response.metadata_value("adapter.stop_reason"), None, "stop_reason {vendor}");
    }
}

#[tokio::test]
async fn unknown_or_missing_stop_reason_is_kept_in_metadata() {
    for (vendor, raw) in
        [(json!("a_reason_from_the_future"), "a_reason_from_the_future"), (json!(null), "null")]
    {
        let server = MockServer::start(Canned::json(answer(vendor))).await;
        let response = provider_at(FORMAT, &server.url, "")
            .invoke(Request::new(vec![Message::user("hi")]))
            .await
            .expect("invoke");
        assert_eq!(response.stop_reason, StopReason::EndTurn);
        assert_eq!(response.metadata_value("adapter.stop_reason"), Some(raw));
    }
}

#[tokio::test]
async fn plain_answer_without_cache_counts() {
    let server = MockServer::start(Canned::json(answer(json!("end_turn")))).await;
    let response = provider_at(FORMAT, &server.url, "")
        .invoke(Request::new(vec![Message::user("hi")]))
        .await
        .expect("invoke");
    assert_eq!(response.content.as_deref(), Some("ok"));
    assert!(response.tool_calls.is_empty());
    assert_eq!(response.thinking, None);
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 3,
            output_tokens: 1,
            total_tokens: 4,
            cache_read_tokens: None,
            cache_write_tokens: None,
            reasoning_tokens: None
        }
    );
    assert!(response.metadata.is_empty(), "{:?}", response.metadata);
}

#[tokio::test]
async fn defaults_come_from_the_model_then_the_provider() {
    let server = MockServer::start(Canned::json(answer(json!("end_turn")))).await;
    let extra = "default_temperature = 0.6\n[models.test-model]\nmax_output_tokens = 1234\n";
    provider_at(FORMAT, &server.url, extra)
        .invoke(Request::new(vec![Message::user("hi")]))
        .await
        .expect("invoke");
    let body = server.only_request().json;
    assert_eq!(body["max_tokens"], json!(1234));
    assert_eq!(body["temperature"], json!(0.6));
    assert_eq!(body.get("stop_sequences"), None);
    assert_eq!(body.get("tools"), None);
    assert_eq!(body.get("system"), None);
    assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
}

#[tokio::test]
async fn without_model_settings_max_tokens_is_4096_and_temperature_is_omitted() {
    let server = MockServer::start(Canned::json(answer(json!("end_turn")))).await;
    provider_at(FORMAT, &server.url, "")
        .invoke(Request::new(vec![Message::user("hi")]))
        .await
        .expect("invoke");
    let body = server.only_request().json;
    assert_eq!(body["max_tokens"], json!(4096));
    assert_eq!(body.get("temperature"), None);
}

#[tokio::test]
async fn system_messages_are_joined_and_tool_errors_flagged() {
    let server = MockServer::start(Canned::json(answer(json!("end_turn")))).await;
    let request = Request::new(vec![
        Message::system("First rule."),
        Message::user("hi"),
        Message {
            role: Role::System,
            content: Content::Blocks(vec![
                ContentBlock::Text("Second".into()),
                ContentBlock::Text("rule.".into()),
            ]),
        },
        Message {
            role: Role::Tool,
            content: Content::Blocks(vec![
                ContentBlock::ToolResult(ToolResult {
                    tool_use_id: "t1".into(),
                    content: "boom".into(),
                    is_error: true,
                }),
                ContentBlock::ToolResult(ToolResult {
                    tool_use_id: "t2".into(),
                    content: "fine".into(),
                    is_error: false,
                }),
            ]),
        },
    ]);
    provider_at(FORMAT, &server.url, "").invoke(request).await.expect("invoke");
    let body = server.only_request().json;
    assert_eq!(body["system"], json!("First rule.\n\nSecond\nrule."));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "hi"},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": true},
                {"type": "tool_result", "tool_use_id": "t2", "content": "fine"}
            ]}
        ])
    );
}

#[tokio::test]
async fn extra_options_are_merged_and_win() {
    let server = MockServer::start(Canned::json(answer(json!("end_turn")))).await;
    let mut request = Request::new(vec![Message::user("hi")]);
    request.options.max_tokens = Some(10);
    request.options.extra = Some(r#"{"max_tokens": 20, "top_k": 5, "metadata": {"user_id": "u1"}}"#.into());
    provider_at(FORMAT, &server.url, "").invoke(request).await.expect("invoke");
    let body = server.only_request().json;
    assert_eq!(body["max_tokens"], json!(20));
    assert_eq!(body["top_k"], json!(5));
    assert_eq!(body["metadata"], json!({"user_id": "u1"}));
}

#[tokio::test]
async fn requests_that_cannot_be_encoded_fail_before_sending() {
    let server = MockServer::start(Canned::json(answer(json!("end_turn")))).await;
    let provider = provider_at(FORMAT, &server.url, "");

    let bad_arguments = Request::new(vec![Message {
        role: Role::Assistant,
        content: Content::Blocks(vec![ContentBlock::ToolUse(ToolUse {
            id: "toolu_bad".into(),
            name: "search".into(),
            arguments: "{not json".into(),
        })]),
    }]);
    let error = provider.invoke(bad_arguments).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Parse);
    assert_eq!(error.provider, "testvendor");
    assert!(error.message.contains("toolu_bad"), "{error}");

    let mut bad_extra = Request::new(vec![Message::user("hi")]);
    bad_extra.options.extra = Some("[1, 2]".into());
    let error = provider.invoke(bad_extra).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Config);
    assert!(error.message.contains("options.extra"), "{error}");

    let mut bad_schema = Request::new(vec![Message::user("hi")]);
    bad_schema.tools.push(ToolDefinition {
        name: "broken".into(),
        description: String::new(),
        parameters: "nope".into(),
    });
    let error = provider.invoke(bad_schema).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Parse);
    assert!(error.message.contains("broken"), "{error}");

    let tool_as_text = Request::new(vec![Message::text(Role::Tool, "result without an id")]);
    let error = provider.invoke(tool_as_text).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Parse);
    assert!(error.message.contains("messages[0]"), "{error}");

    assert!(server.requests().is_empty(), "nothing may be sent for an unencodable request");
}

#[tokio::test]
async fn names_model_choice_and_keyless_local_servers() {
    let server = MockServer::start(Canned::json(answer(json!("end_turn")))).await;
    let catalog = catalog_with("local", &provider_toml(FORMAT, &server.url, "api_key_required = false"));
    // The key variable is unset here, and not required.
    let provider = catalog.create_with_env("local", Some("claude-other"), &|_| None).expect("create");
    assert_eq!(provider.name(), "local");
    assert_eq!(provider.model_name(), "claude-other");
    assert_eq!(provider.validate_config().await, Ok(()));
    provider.invoke(Request::new(vec![Message::user("hi")])).await.expect("invoke");
    let sent = server.only_request();
    assert_eq!(sent.json["model"], json!("claude-other"));
    assert_eq!(sent.header("x-api-key"), None);
}

#[tokio::test]
async fn thinking_tokens_are_read_as_reasoning_tokens() {
    let mut body = answer(json!("end_turn"));
    body["usage"] =
        json!({"input_tokens": 3, "output_tokens": 50, "output_tokens_details": {"thinking_tokens": 42}});
    let server = MockServer::start(Canned::json(body)).await;
    let response = provider_at(FORMAT, &server.url, "").invoke(full_request()).await.expect("invoke");
    assert_eq!(response.usage.reasoning_tokens, Some(42));
    assert_eq!(response.usage.output_tokens, 50);
}
