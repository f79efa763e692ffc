//! The decoder against the event-stream framing rules.

use super::*;

fn event(name: Option<&str>, data: &str) -> SseEvent {
    SseEvent { event: name.map(str::to_string), data: data.to_string(), id: None }
}

/// Every event of `body` fed in `chunk`-byte pieces, then ended.
fn decode_in(body: &[u8], chunk: usize) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new(1 << 20);
    let mut events = Vec::new();
    for piece in body.chunks(chunk) {
        decoder.push(piece);
        while let Some(event) = decoder.next_event().unwrap() {
            events.push(event);
        }
    }
    decoder.end();
    while let Some(event) = decoder.next_event().unwrap() {
        events.push(event);
    }
    events
}

/// Decodes `body` whole and in every chunk size up to 7 bytes; all must agree.
fn decode(body: &[u8]) -> Vec<SseEvent> {
    let whole = decode_in(body, body.len().max(1));
    for size in 1..=7 {
        assert_eq!(decode_in(body, size), whole, "in {size}-byte chunks");
    }
    whole
}

#[test]
fn events_with_names_and_multi_line_data() {
    let body = b"event: message_start\ndata: {\"a\":1}\n\ndata: one\ndata: two\n\n";
    assert_eq!(decode(body), vec![event(Some("message_start"), "{\"a\":1}"), event(None, "one\ntwo")]);
}

#[test]
fn crlf_cr_and_lf_line_ends_mix() {
    let body = b"data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n";
    assert_eq!(decode(body), vec![event(None, "a"), event(None, "b"), event(None, "c"), event(None, "d")]);
}

#[test]
fn comments_and_keep_alives_are_ignored() {
    let body = b": keep-alive\n\n:\ndata: x\n: in the middle\ndata: y\n\n: ping\n\n";
    assert_eq!(decode(body), vec![event(None, "x\ny")]);
}

#[test]
fn multi_byte_characters_split_across_chunks_arrive_whole() {
    let body = "data: héllo, 世界 🦀\n\n".as_bytes();
    assert_eq!(decode(body), vec![event(None, "héllo, 世界 🦀")]);
}

#[test]
fn field_rules() {
    // No space after the colon; only one space stripped; a field without a colon;
    // an empty data line; unknown fields and `retry` ignored; the event name resets.
    let body = b"data:tight\n\ndata:  two spaces\n\ndata\n\nretry: 10\nfoo: bar\ndata: d\n\nevent: e\n\ndata: after\n\n";
    assert_eq!(
        decode(body),
        vec![
            event(None, "tight"),
            event(None, " two spaces"),
            event(None, ""),
            event(None, "d"),
            event(None, "after"),
        ]
    );
}

#[test]
fn ids_persist_until_changed() {
    let events = decode(b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n");
    let ids: Vec<_> = events.iter().map(|e| e.id.as_deref()).collect();
    assert_eq!(ids, vec![Some("7"), Some("7"), Some("")]);
}

#[test]
fn a_byte_order_mark_is_skipped() {
    assert_eq!(decode(b"\xEF\xBB\xBFdata: x\n\n"), vec![event(None, "x")]);
}

#[test]
fn an_event_without_its_blank_line_is_dispatched_at_the_end() {
    assert_eq!(decode(b"data: [DONE]"), vec![event(None, "[DONE]")]);
    assert_eq!(decode(b"data: [DONE]\n"), vec![event(None, "[DONE]")]);
    assert_eq!(decode(b"event: x\n"), vec![]);
}

#[test]
fn nothing_is_dispatched_before_the_blank_line() {
    let mut decoder = SseDecoder::new(1024);
    decoder.push(b"data: a\n");
    assert_eq!(decoder.next_event().unwrap(), None);
    decoder.push(b"\n");
    assert_eq!(decoder.next_event().unwrap(), Some(event(None, "a")));
    assert_eq!(decoder.next_event().unwrap(), None);
}

#[test]
fn an_event_over_the_limit_is_an_error() {
    // Many data lines, each small.
    let mut decoder = SseDecoder::new(64);
    for _ in 0..10 {
        decoder.push(b"data: 0123456789\n");
    }
    assert!(matches!(decoder.next_event(), Err(SseError::EventTooLarge { limit: 64 })));

    // One line that never ends, fed a byte at a time.
    let mut decoder = SseDecoder::new(64);
    let mut result = Ok(None);
    for _ in 0..100 {
        decoder.push(b"x");
        result = decoder.next_event();
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(SseError::EventTooLarge { limit: 64 })));
}

#[test]
fn many_events_in_one_chunk_are_not_over_the_limit() {
    let mut body = Vec::new();
    for i in 0..100 {
        body.extend_from_slice(format!("data: {i:08}\n\n").as_bytes());
    }
    let mut decoder = SseDecoder::new(32);
    decoder.push(&body);
    let mut count = 0;
    while let Some(_) = decoder.next_event().unwrap() {
        count += 1;
    }
    assert_eq!(count, 100);
}
