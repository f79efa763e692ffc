//! The Messages front end, both directions.

use arcllm::stream::{response_events, StreamEvent};
use arcllm::types::{ToolCall, Usage};
use serde_json::json;

use super::*;

fn decode_json(body: Value) -> Result<Decoded, ApiError> {
    decode(body.to_string().as_bytes())
}

#[test]
fn decodes_every_mapped_field() {
    let decoded = decode_json(json!({
        "model": "openai/gpt-4o-mini",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Searching."},
                {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "rust"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Rust."}], "is_error": true}
            ]}
        ],
        "tools": [{"name": "search", "description": "Search", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "temperature": 0.2,
        "top_k": 5,
        "stop_sequences": ["STOP"],
        "metadata": {"user_id": "u1"},
        "stream": true
    }))
    .unwrap();
    assert_eq!(decoded.model, "openai/gpt-4o-mini");
    assert!(decoded.stream);
    let r = &decoded.request;
    assert_eq!(
        r.messages[0],
        Message {
            role: Role::System,
            content: Content::Blocks(vec![ContentBlock::Text("Be terse.".into())])
        }
    );
    assert_eq!(r.messages[1].role, Role::User);
    assert_eq!(
        r.messages[2].content,
        Content::Blocks(vec![
            ContentBlock::Text("Searching.".into()),
            ContentBlock::ToolUse(ToolUse {
                id: "toolu_1".into(),
                name: "search".into(),
                arguments: r#"{"q":"rust"}"#.into()
            }),
        ]),
        "thinking from an earlier turn is dropped"
    );
    assert_eq!(r.messages[3].role, Role::Tool);
    assert_eq!(
        r.messages[3].content,
        Content::Blocks(vec![ContentBlock::ToolResult(ToolResult {
            tool_use_id: "toolu_1".into(),
            content: "Rust.".into(),
            is_error: true
        })])
    );
    assert_eq!(r.tools[0].parameters, r#"{"type":"object"}"#);
    assert_eq!(r.options.max_tokens, Some(100));
    assert_eq!(r.options.temperature, Some(0.2));
    assert_eq!(r.options.stop_sequences, vec!["STOP".to_string()]);
    assert_eq!(r.options.extra.as_deref(), Some(r#"{"top_k":5}"#));
}

#[test]
fn refuses_what_it_does_not_translate_naming_the_field() {
    let base = |extra: Value| {
        let mut body =
            json!({"model": "anthropic", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    for (body, needle) in [
        (base(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})), "`thinking`"),
        (base(json!({"tool_choice": {"type": "any"}})), "tool_choice"),
        (json!({"model": "anthropic", "messages": []}), "`max_tokens`"),
        (base(json!({"messages": [{"role": "system", "content": "x"}]})), "messages[0].role"),
        (
            base(json!({"messages": [{"role": "user", "content": [{"type": "document"}]}]})),
            "messages[0].content[0].type",
        ),
        (
            base(
                json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]}),
            ),
            "tool_use",
        ),
        (base(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})), "tools[0].type"),
        (
            base(
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}),
            ),
            "source.type",
        ),
    ] {
        let error = decode_json(body.clone()).expect_err(&body.to_string());
        assert_eq!(error.status(), 400);
        assert!(error.to_string().contains(needle), "{body}: {error}");
    }
}

fn response() -> Response {
    Response {
        content: Some("Hello".into()),
        tool_calls: vec![ToolCall {
            id: "call_9".into(),
            name: "search".into(),
            arguments: r#"{"q":"x"}"#.into(),
        }],
        // OpenAI-style counts: prompt tokens include the cached ones.
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            total_tokens: 15,
            cache_read_tokens: Some(4),
            cache_write_tokens: None,
            reasoning_tokens: None,
        },
        model: "gpt-x".into(),
        stop_reason: StopReason::ToolUse,
        thinking: Some("hmm".into()),
        metadata: vec![],
    }
}

#[test]
fn encodes_a_response_as_a_message() {
    let body = encode(&response(), "msg_1").unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["content"][0], json!({"type": "thinking", "thinking": "hmm", "signature": ""}));
    assert_eq!(body["content"][1], json!({"type": "text", "text": "Hello"}));
    assert_eq!(
        body["content"][2],
        json!({"type": "tool_use", "id": "call_9", "name": "search", "input": {"q": "x"}})
    );
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 6, "output_tokens": 5, "cache_read_input_tokens": 4, "cache_creation_input_tokens": null})
    );
    let mut bad = response();
    bad.tool_calls[0].arguments = "[1]".into();
    assert_eq!(encode(&bad, "msg_1").unwrap_err().status(), 500);
}

/// `(event, data)` of each frame.
fn frames(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (event, data) = f.split_once('\n').unwrap();
            let event = event.strip_prefix("event: ").unwrap().to_string();
            (event, serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap())
        })
        .collect()
}

#[test]
fn streams_anthropic_events_in_order() {
    let mut encoder = EventEncoder::new("msg_1".into());
    let text: String = response_events(response()).into_iter().flat_map(|e| encoder.event(e)).collect();
    let frames = frames(&text);
    let names: Vec<&str> = frames.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert!(frames.iter().all(|(event, data)| data["type"] == event.as_str()));
    assert_eq!(frames[0].1["message"]["id"], "msg_1");
    assert_eq!(frames[1].1["content_block"]["type"], "thinking");
    assert_eq!(frames[5].1["delta"], json!({"type": "text_delta", "text": "Hello"}));
    assert_eq!(frames[7].1["content_block"]["name"], "search");
    assert_eq!(frames[8].1["delta"], json!({"type": "input_json_delta", "partial_json": r#"{"q":"x"}"#}));
    let indexes: Vec<u64> = frames[1..10].iter().map(|(_, d)| d["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert_eq!(frames[10].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(frames[10].1["usage"]["output_tokens"], 5);
    assert_eq!(frames[10].1["usage"]["input_tokens"], 6);
}

#[test]
fn consecutive_text_stays_one_block_and_errors_are_error_events() {
    let mut encoder = EventEncoder::new("m".into());
    let mut text = String::new();
    for event in [
        StreamEvent::MessageStart { model: "m".into() },
        StreamEvent::TextDelta("a".into()),
        StreamEvent::TextDelta("b".into()),
    ] {
        text.extend(encoder.event(event));
    }
    let names: Vec<String> = frames(&text).into_iter().map(|(e, _)| e).collect();
    assert_eq!(names, ["message_start", "content_block_start", "content_block_delta", "content_block_delta"]);
    let error = encoder.error(&ApiError::Upstream {
        error: arcllm::types::Error::api("anthropic", 529, "busy"),
        retried: false,
    });
    let (event, data) = frames(&error).remove(0);
    assert_eq!(event, "error");
    assert_eq!(data["error"]["type"], "overloaded_error");
}
