//! The OpenAI Chat Completions adapter (also used for every OpenAI-compatible server)
//! against a local vendor double: both directions, every field of the data model.

use arcllm::types::*;
use arcllm_tests::full_request;
use arcllm_tests::http::*;
use serde_json::{json, Value};

const FORMAT: &str = "openai-chat";

/// A minimal valid Chat Completions answer.
fn answer(message: Value, finish_reason: Value) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    })
}

fn text_answer(finish_reason: &str) -> Value {
    answer(json!({"role": "assistant", "content": "ok", "refusal": null}), json!(finish_reason))
}

fn hi() -> Request {
    Request::new(vec![Message::user("hi")])
}

#[tokio::test]
async fn full_request_maps_every_field_to_the_chat_body() {
    let server = MockServer::start(Canned::json(text_answer("stop"))).await;
    provider_at(FORMAT, &server.url, "").invoke(full_request()).await.expect("invoke");

    let sent = server.only_request();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {TEST_KEY}").as_str()));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("x-api-key"), None);
    let expected = json!({
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is in this picture? Also search for rust."},
            {"role": "user", "content": [
                {"type": "text", "text": "look:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": "Searching.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"rust\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Rust is a language."}
        ],
        "max_tokens": 256,
        "temperature": 0.25,
        "stop": ["STOP"],
        "tools": [{"type": "function", "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
        }}],
        "top_p": 0.9
    });
    assert_eq!(sent.json, expected);
}

#[tokio::test]
async fn every_part_of_the_answer_is_mapped_back() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test-2025",
        "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
            "role": "assistant",
            "content": "Calling tools — ünïcødé ✓",
            "refusal": null,
            "reasoning_content": "I should search twice.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"rust\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "fetch", "arguments": "{\"url\":\"https://example.com\"}"}}
            ]
        }}],
        "usage": {
            "prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 10, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 30, "audio_tokens": 0}
        }
    });
    let server = MockServer::start(Canned::json(body).header("x-request-id", "req_xyz")).await;
    let response = provider_at(FORMAT, &server.url, "").invoke(full_request()).await.expect("invoke");
    let expected = Response {
        content: Some("Calling tools — ünïcødé ✓".into()),
        tool_calls: vec![
            ToolCall { id: "call_1".into(), name: "search".into(), arguments: r#"{"q":"rust"}"#.into() },
            ToolCall {
                id: "call_2".into(),
                name: "fetch".into(),
                arguments: r#"{"url":"https://example.com"}"#.into(),
            },
        ],
        usage: Usage {
            input_tokens: 100,
            output_tokens: 50,
            total_tokens: 150,
            cache_read_tokens: Some(60),
            cache_write_tokens: Some(10),
            reasoning_tokens: Some(30),
        },
        model: "gpt-test-2025".into(),
        stop_reason: StopReason::ToolUse,
        thinking: Some("I should search twice.".into()),
        metadata: vec![("adapter.request_id".into(), "req_xyz".into())],
    };
    assert_eq!(response, expected);
}

#[tokio::test]
async fn finish_reasons_map_one_to_one() {
    let cases = [
        ("stop", StopReason::EndTurn),
        ("tool_calls", StopReason::ToolUse),
        ("function_call", StopReason::ToolUse),
        ("length", StopReason::MaxTokens),
        ("content_filter", StopReason::ContentFilter),
    ];
    for (vendor, expected) in cases {
        let server = MockServer::start(Canned::json(text_answer(vendor))).await;
        let response = provider_at(FORMAT, &server.url, "").invoke(hi()).await.expect("invoke");
        assert_eq!(response.stop_reason, expected, "finish_reason {vendor}");
        assert_eq!(response.metadata_value("adapter.stop_reason"), None);
    }
    let server =
        MockServer::start(Canned::json(answer(json!({"role": "assistant", "content": "x"}), json!(null))))
            .await;
    let response = provider_at(FORMAT, &server.url, "").invoke(hi()).await.expect("invoke");
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.metadata_value("adapter.stop_reason"), Some("null"));
}

#[tokio::test]
async fn plain_answer_and_absent_usage_details() {
    let server = MockServer::start(Canned::json(text_answer("stop"))).await;
    let response = provider_at(FORMAT, &server.url, "").invoke(hi()).await.expect("invoke");
    assert_eq!(response.content.as_deref(), Some("ok"));
    assert_eq!(response.model, "gpt-test");
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
}

#[tokio::test]
async fn compatible_server_variants_are_understood() {
    // No usage, no model, `reasoning` instead of `reasoning_content`, arguments sent as an
    // object, DeepSeek's cache-hit count: all seen in the wild from compatible servers.
    let body = json!({
        "choices": [{"finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "reasoning": "hmm",
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}]
        }}]
    });
    let server = MockServer::start(Canned::json(body)).await;
    let response = provider_at(FORMAT, &server.url, "").invoke(hi()).await.expect("invoke");
    assert_eq!(response.content, None);
    assert_eq!(response.model, "test-model", "the requested model stands in for a missing one");
    assert_eq!(response.thinking.as_deref(), Some("hmm"));
    assert_eq!(
        response.tool_calls,
        vec![ToolCall { id: "c1".into(), name: "f".into(), arguments: r#"{"a":1}"#.into() }]
    );
    assert_eq!(response.usage, Usage::ZERO);

    let deepseek = json!({
        "model": "deepseek-chat",
        "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "prompt_cache_hit_tokens": 8, "prompt_cache_miss_tokens": 2}
    });
    let server = MockServer::start(Canned::json(deepseek)).await;
    let response = provider_at(FORMAT, &server.url, "").invoke(hi()).await.expect("invoke");
    assert_eq!(response.usage.cache_read_tokens, Some(8));
}

#[tokio::test]
async fn a_refusal_is_a_refusal_stop_with_its_words_as_content() {
    let message = json!({"role": "assistant", "content": null, "refusal": "I can't help with that."});
    let server = MockServer::start(Canned::json(answer(message, json!("stop")))).await;
    let response = provider_at(FORMAT, &server.url, "").invoke(hi()).await.expect("invoke");
    assert_eq!(response.stop_reason, StopReason::Refusal);
    assert_eq!(response.content.as_deref(), Some("I can't help with that."));
}

#[tokio::test]
async fn defaults_and_the_max_completion_tokens_field() {
    let server = MockServer::start(Canned::json(text_answer("stop"))).await;
    let extra = "default_temperature = 1.5\nmax_tokens_param = \"max_completion_tokens\"\n[models.test-model]\nmax_output_tokens = 777\n";
    provider_at(FORMAT, &server.url, extra).invoke(hi()).await.expect("invoke");
    let body = server.only_request().json;
    assert_eq!(body["max_completion_tokens"], json!(777));
    assert_eq!(body.get("max_tokens"), None);
    assert_eq!(body["temperature"], json!(1.5));
    assert_eq!(body.get("stop"), None);
    assert_eq!(body.get("tools"), None);

    let server = MockServer::start(Canned::json(text_answer("stop"))).await;
    provider_at(FORMAT, &server.url, "").invoke(hi()).await.expect("invoke");
    let body = server.only_request().json;
    assert_eq!(body["max_tokens"], json!(4096));
    assert_eq!(body.get("temperature"), None);
}

#[tokio::test]
async fn tool_results_become_one_tool_message_each() {
    let server = MockServer::start(Canned::json(text_answer("stop"))).await;
    let request = Request::new(vec![
        Message {
            role: Role::Assistant,
            content: Content::Blocks(vec![
                ContentBlock::ToolUse(ToolUse { id: "c1".into(), name: "a".into(), arguments: "{}".into() }),
                ContentBlock::ToolUse(ToolUse {
                    id: "c2".into(),
                    name: "b".into(),
                    arguments: r#"{"x":1}"#.into(),
                }),
            ]),
        },
        Message {
            role: Role::Tool,
            content: Content::Blocks(vec![
                ContentBlock::ToolResult(ToolResult {
                    tool_use_id: "c1".into(),
                    content: "one".into(),
                    is_error: false,
                }),
                ContentBlock::ToolResult(ToolResult {
                    tool_use_id: "c2".into(),
                    content: "failed".into(),
                    is_error: true,
                }),
            ]),
        },
        Message {
            role: Role::User,
            content: Content::Blocks(vec![
                ContentBlock::ToolResult(ToolResult {
                    tool_use_id: "c3".into(),
                    content: "late".into(),
                    is_error: false,
                }),
                ContentBlock::Text("and".into()),
                ContentBlock::Text("more".into()),
            ]),
        },
        Message {
            role: Role::Assistant,
            content: Content::Blocks(vec![ContentBlock::Text("a".into()), ContentBlock::Text("b".into())]),
        },
    ]);
    provider_at(FORMAT, &server.url, "").invoke(request).await.expect("invoke");
    assert_eq!(
        server.only_request().json["messages"],
        json!([
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{\"x\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": "Error: failed"},
            {"role": "tool", "tool_call_id": "c3", "content": "late"},
            {"role": "user", "content": "and\nmore"},
            {"role": "assistant", "content": "ab"}
        ])
    );
}

#[tokio::test]
async fn requests_that_cannot_be_encoded_fail_before_sending() {
    let server = MockServer::start(Canned::json(text_answer("stop"))).await;
    let provider = provider_at(FORMAT, &server.url, "");
    let cases = [
        (
            Message {
                role: Role::Assistant,
                content: Content::Blocks(vec![ContentBlock::ToolUse(ToolUse {
                    id: "call_bad".into(),
                    name: "f".into(),
                    arguments: "[1]".into(),
                })]),
            },
            "call_bad",
        ),
        (
            Message {
                role: Role::User,
                content: Content::Blocks(vec![ContentBlock::ToolUse(ToolUse {
                    id: "call_user".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                })]),
            },
            "call_user",
        ),
        (
            Message {
                role: Role::Assistant,
                content: Content::Blocks(vec![ContentBlock::Image(Image {
                    media_type: "image/png".into(),
                    data: "AA==".into(),
                })]),
            },
            "messages[0]",
        ),
        (Message::text(Role::Tool, "no id"), "messages[0]"),
    ];
    for (message, named) in cases {
        let error = provider.invoke(Request::new(vec![message])).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Parse, "{error}");
        assert!(error.message.contains(named), "{error} should name {named}");
    }
    let mut bad_extra = hi();
    bad_extra.options.extra = Some("not json".into());
    let error = provider.invoke(bad_extra).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Config);
    assert!(error.message.contains("options.extra"), "{error}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn keyless_servers_get_no_authorization_header() {
    let server = MockServer::start(Canned::json(text_answer("stop"))).await;
    let catalog = catalog_with("localai", &provider_toml(FORMAT, &server.url, "api_key_required = false"));
    let provider = catalog.create_with_env("localai", None, &|_| None).expect("create");
    provider.invoke(hi()).await.expect("invoke");
    assert_eq!(server.only_request().header("authorization"), None);
}

#[tokio::test]
async fn extra_headers_are_sent_with_every_request() {
    let server = MockServer::start(Canned::json(text_answer("stop"))).await;
    let provider = provider_at(
        FORMAT,
        &server.url,
        "[provider.extra_headers]\nPrefer = \"code=200\"\nx-proxy-route = \"eu\"\n",
    );
    provider.invoke(hi()).await.expect("invoke");
    provider.invoke(hi()).await.expect("invoke");
    for sent in server.requests() {
        assert_eq!(sent.header("prefer"), Some("code=200"));
        assert_eq!(sent.header("x-proxy-route"), Some("eu"));
    }
}

#[tokio::test]
async fn a_custom_tool_call_is_a_clear_parse_error() {
    // The official spec's `custom` tool call has no `function`: the whole answer used to
    // fail with serde's "missing field `function`".
    let message = json!({
        "role": "assistant", "content": "Running it.",
        "tool_calls": [{"id": "call_c", "type": "custom", "custom": {"name": "shell", "input": "ls -la"}}]
    });
    let server = MockServer::start(Canned::json(answer(message, json!("tool_calls")))).await;
    let error = provider_at(FORMAT, &server.url, "").invoke(hi()).await.expect_err("custom tool call");
    assert_eq!(error.kind, ErrorKind::Parse);
    assert!(error.message.contains("custom tool calls are not supported"), "{}", error.message);
    assert!(error.message.contains("call_c"), "{}", error.message);
    assert!(error.body.as_deref().is_some_and(|b| b.contains("ls -la")), "{error:?}");
}
