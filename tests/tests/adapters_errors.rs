//! Every way a vendor call can fail, and the typed error each becomes: what retry and
//! fallback decide on. Both wire formats share this code path, so most cases run for both.

use std::time::{Duration, Instant, SystemTime};

use arcllm::adapters::http::{excerpt, retry_after_ms, should_retry};
use arcllm::adapters::ApiKey;
use arcllm::types::*;
use arcllm_tests::http::*;
use axum::http::{HeaderMap, HeaderValue};
use serde_json::json;

const FORMATS: [&str; 2] = ["anthropic-messages", "openai-chat"];

fn hi() -> Request {
    Request::new(vec![Message::user("hi")])
}

fn anthropic_ok() -> serde_json::Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 1, "output_tokens": 1}
    })
}

async fn error_from(format: &str, reply: Canned, extra: &str) -> Error {
    let server = MockServer::start(reply).await;
    let error = provider_at(format, &server.url, extra).invoke(hi()).await.expect_err("the call must fail");
    assert_no_key(&error);
    error
}

#[tokio::test]
async fn every_error_status_is_an_api_error_with_the_vendor_message() {
    for format in FORMATS {
        for status in [400u16, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529] {
            let body = json!({"type": "error", "error": {"type": "some_error", "message": format!("vendor says {status}")}});
            let error = error_from(format, Canned::status(status, body.to_string()), "").await;
            assert_eq!(error.kind, ErrorKind::Api, "{format} {status}");
            assert_eq!(error.status, Some(status), "{format}");
            assert_eq!(error.provider, "testvendor");
            assert!(error.message.contains(&format!("vendor says {status}")), "{format}: {error}");
            assert!(error.message.contains(&status.to_string()), "{format}: {error}");
            assert_eq!(error.body.as_deref(), Some(body.to_string().as_str()));
            assert_eq!(error.retry_after_ms, None);
            assert_eq!(error.should_retry, None);
        }
    }
}

#[tokio::test]
async fn a_non_json_error_body_still_gives_status_and_excerpt() {
    let html = "<html><body>502 Bad Gateway</body></html>";
    let error =
        error_from("openai-chat", Canned::status(502, html).header("content-type", "text/html"), "").await;
    assert_eq!(error.kind, ErrorKind::Api);
    assert_eq!(error.status, Some(502));
    assert_eq!(error.message, "HTTP 502 Bad Gateway");
    assert_eq!(error.body.as_deref(), Some(html));

    let error = error_from("anthropic-messages", Canned::status(503, ""), "").await;
    assert_eq!(error.status, Some(503));
    assert_eq!(error.body, None);
}

/// Response headers, and the inclusive range `retry_after_ms` must fall in (`None`: unset).
type RetryCase<'a> = (Vec<(&'a str, &'a str)>, Option<(u64, u64)>);

#[tokio::test]
async fn every_retry_after_form_is_understood() {
    let in_30s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    let cases: Vec<RetryCase> = vec![
        (vec![("retry-after-ms", "1500")], Some((1500, 1500))),
        (vec![("retry-after-ms", "12.2")], Some((13, 13))),
        (vec![("retry-after", "2")], Some((2000, 2000))),
        (vec![("retry-after", "0.25")], Some((250, 250))),
        (vec![("retry-after", in_30s.as_str())], Some((28_000, 30_000))),
        (vec![("retry-after", past.as_str())], Some((0, 0))),
        // retry-after-ms wins over retry-after; an unparseable one falls through to it.
        (vec![("retry-after-ms", "700"), ("retry-after", "9")], Some((700, 700))),
        (vec![("retry-after-ms", "soon"), ("retry-after", "3")], Some((3000, 3000))),
        (vec![("retry-after", "whenever")], None),
        (vec![("retry-after", "-5")], None),
        (vec![], None),
    ];
    for format in FORMATS {
        for (headers, expected) in &cases {
            let mut reply = Canned::status(429, r#"{"error":{"message":"slow down"}}"#);
            for (name, value) in headers {
                reply = reply.header(name, value);
            }
            let error = error_from(format, reply, "").await;
            assert_eq!(error.status, Some(429));
            match (expected, error.retry_after_ms) {
                (Some((low, high)), Some(ms)) => {
                    assert!((*low..=*high).contains(&ms), "{format} {headers:?}: {ms}")
                }
                (None, None) => {}
                (expected, got) => panic!("{format} {headers:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }
}

#[test]
fn retry_after_parsing_is_exact_against_a_fixed_clock() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut headers = HeaderMap::new();
    headers.insert(
        "retry-after",
        HeaderValue::from_str(&httpdate::fmt_http_date(now + Duration::from_secs(42))).unwrap(),
    );
    assert_eq!(retry_after_ms(&headers, now), Some(42_000));
    headers.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
    assert_eq!(retry_after_ms(&headers, now), Some(0), "a date in the past means: now");
    headers.insert("retry-after", HeaderValue::from_static(" 1.5 "));
    assert_eq!(retry_after_ms(&headers, now), Some(1500));
    headers.insert("retry-after", HeaderValue::from_static("inf"));
    assert_eq!(retry_after_ms(&headers, now), None);
}

#[tokio::test]
async fn x_should_retry_is_passed_on_as_a_hint() {
    for format in FORMATS {
        for (value, expected) in
            [("true", Some(true)), ("false", Some(false)), ("TRUE", Some(true)), ("maybe", None)]
        {
            let error =
                error_from(format, Canned::status(500, "{}").header("x-should-retry", value), "").await;
            assert_eq!(error.should_retry, expected, "{format} x-should-retry: {value}");
        }
        // The hint travels on any status, including ones that would not normally be retried.
        let error = error_from(format, Canned::status(400, "{}").header("x-should-retry", "true"), "").await;
        assert_eq!((error.status, error.should_retry), (Some(400), Some(true)));
    }
    let mut headers = HeaderMap::new();
    assert_eq!(should_retry(&headers), None);
    headers.insert("x-should-retry", HeaderValue::from_static(" false "));
    assert_eq!(should_retry(&headers), Some(false));
}

#[tokio::test]
async fn long_bodies_are_cut_to_500_characters_on_a_char_boundary() {
    // 3-byte characters: a byte-based cut would split one.
    let message = "€".repeat(3000);
    let body = json!({"error": {"message": message}}).to_string();
    let error = error_from("openai-chat", Canned::status(500, body.clone()), "").await;
    let excerpt_text = error.body.expect("body excerpt");
    assert_eq!(excerpt_text.chars().count(), 500);
    assert!(body.starts_with(&excerpt_text));
    assert!(
        error.message.chars().count() <= 560,
        "message is bounded: {} chars",
        error.message.chars().count()
    );

    assert_eq!(excerpt("short"), "short");
    assert_eq!(excerpt(&"é".repeat(501)).chars().count(), 500);
}

#[tokio::test]
async fn a_huge_error_body_is_still_an_api_error() {
    let body = vec![b'x'; 10 << 20];
    let error = error_from("anthropic-messages", Canned::status(500, body), "").await;
    assert_eq!((error.kind, error.status), (ErrorKind::Api, Some(500)));
    assert_eq!(error.body.map(|b| b.len()), Some(500));
}

#[tokio::test]
async fn a_refused_port_is_a_connection_error() {
    let port = refused_port().await;
    for format in FORMATS {
        let provider = provider_at(format, &format!("http://127.0.0.1:{port}"), "");
        let error = provider.invoke(hi()).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Connection, "{error}");
        assert_eq!(error.provider, "testvendor");
        assert_eq!(error.status, None);
        assert!(error.message.to_lowercase().contains("connect"), "{error}");
        assert_no_key(&error);
    }
}

#[tokio::test]
async fn a_server_that_hangs_past_the_timeout_is_a_timeout() {
    for format in FORMATS {
        let server = MockServer::start(Canned::json(anthropic_ok()).delayed(Duration::from_secs(30))).await;
        let provider = provider_at(format, &server.url, "timeout_seconds = 0.5");
        let started = Instant::now();
        let error = provider.invoke(hi()).await.unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
        assert!(error.message.contains("0.5"), "the message names the timeout: {error}");
        assert!(elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
}

#[tokio::test]
async fn a_body_that_stalls_past_the_timeout_is_a_timeout() {
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n".to_string();
    let url = raw_server(head, b"{\"id\":".to_vec(), Some(Duration::from_secs(30))).await;
    let provider = provider_at("openai-chat", &url, "timeout_seconds = 0.5");
    let started = Instant::now();
    let error = provider.invoke(hi()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_connection_closed_mid_body_is_a_connection_error() {
    for format in FORMATS {
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n".to_string();
        let url = raw_server(head, br#"{"id":"msg_1","content":[{"type":"te"#.to_vec(), None).await;
        let error = provider_at(format, &url, "").invoke(hi()).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Connection, "{format}: {error}");
        assert!(error.message.contains("reading the response body"), "{error}");
    }
}

#[tokio::test]
async fn invalid_json_in_a_2xx_answer_is_a_parse_error_with_the_excerpt() {
    for format in FORMATS {
        let error = error_from(format, Canned::status(200, "{\"this is\": not json"), "").await;
        assert_eq!(error.kind, ErrorKind::Parse, "{error}");
        assert_eq!(error.status, None);
        assert_eq!(error.body.as_deref(), Some("{\"this is\": not json"));
    }
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_parse_error() {
    for format in FORMATS {
        let error = error_from(format, Canned::json(json!({"hello": "world"})), "").await;
        assert_eq!(error.kind, ErrorKind::Parse, "{format}: {error}");
        assert!(error.body.as_deref().is_some_and(|b| b.contains("hello")));
    }
    // OpenAI-shaped, but no choice to read.
    let error = error_from("openai-chat", Canned::json(json!({"model": "m", "choices": []})), "").await;
    assert_eq!(error.kind, ErrorKind::Parse);
    assert!(error.message.contains("no choices"), "{error}");
    // Anthropic-shaped, but a count is a string.
    let mut body = anthropic_ok();
    body["usage"]["input_tokens"] = json!("many");
    let error = error_from("anthropic-messages", Canned::json(body), "").await;
    assert_eq!(error.kind, ErrorKind::Parse);
}

/// A valid Anthropic answer padded with a long string to about `size` bytes.
fn padded_answer(size: usize) -> Vec<u8> {
    let mut body = anthropic_ok();
    body["content"][0]["text"] = json!("a".repeat(size));
    body.to_string().into_bytes()
}

#[tokio::test]
async fn a_10_mb_body_over_the_limit_is_a_parse_error() {
    // With a Content-Length (rejected before reading) ...
    let error = error_from("anthropic-messages", Canned::status(200, padded_answer(10 << 20)), "").await;
    assert_eq!(error.kind, ErrorKind::Parse, "{error}");
    assert!(error.message.contains("exceeds the limit of 8388608 bytes"), "{error}");

    // ... and without one (read in chunks until the limit is crossed).
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n".to_string();
    let url = raw_server(head, padded_answer(10 << 20), None).await;
    let error = provider_at("anthropic-messages", &url, "").invoke(hi()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Parse, "{error}");
    assert!(error.message.contains("exceeds the limit"), "{error}");
    assert_eq!(error.body.map(|b| b.chars().count()), Some(500));
}

#[tokio::test]
async fn a_10_mb_body_within_a_raised_limit_is_read() {
    let server = MockServer::start(Canned::status(200, padded_answer(10 << 20))).await;
    let provider = provider_at("anthropic-messages", &server.url, "max_response_bytes = 16777216");
    let response = provider.invoke(hi()).await.expect("a 10 MB answer within a 16 MiB limit");
    assert_eq!(response.content.map(|c| c.len()), Some(10 << 20));
}

#[tokio::test]
async fn the_api_key_never_reaches_an_error() {
    // A server that echoes the key back, in the body and in the message.
    let body = json!({"error": {"message": format!("Incorrect API key provided: {TEST_KEY}")}}).to_string();
    for format in FORMATS {
        let error = error_from(format, Canned::status(401, body.clone()), "").await;
        assert_eq!(error.status, Some(401));
        assert!(error.message.contains("Incorrect API key provided: ***"), "{error}");
        assert!(error.body.as_deref().is_some_and(|b| b.contains("***")));
        let error = error_from(format, Canned::status(200, format!("not json {TEST_KEY}")), "").await;
        assert_eq!(error.kind, ErrorKind::Parse);
    }
    assert_eq!(format!("{:?}", ApiKey::new(TEST_KEY)), "ApiKey(***)");
}

#[tokio::test]
async fn redirects_are_not_followed_so_the_key_stays_home() {
    for format in FORMATS {
        let elsewhere = MockServer::start(Canned::json(anthropic_ok())).await;
        let location = format!("{}/v1/messages", elsewhere.url);
        let error = error_from(format, Canned::status(307, "").header("location", &location), "").await;
        assert_eq!((error.kind, error.status), (ErrorKind::Api, Some(307)), "{format}: {error}");
        assert!(
            elsewhere.requests().is_empty(),
            "{format}: the request (and its key) went to the redirect target"
        );
    }
}
