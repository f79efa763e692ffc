//! The retry module's decisions (`guest-modules/retry/src/policy.rs`), compiled natively and
//! unit-tested here; `retry.rs` tests the same rules through the compiled component.

#[allow(dead_code)]
#[path = "../../guest-modules/retry/src/budget.rs"]
mod budget;
#[path = "../../guest-modules/sdk/src/commit.rs"]
mod commit;
#[path = "../../guest-modules/sdk/src/config.rs"]
mod config;
#[path = "../../guest-modules/retry/src/policy.rs"]
mod policy;
// The budget's state operations are tested in retry_budget_policy.rs.
#[allow(dead_code)]
#[path = "../../guest-modules/sdk/src/shared.rs"]
mod shared;

use policy::{Failure, Kind, Policy};

fn api(status: u16) -> Failure {
    Failure { kind: Kind::Api, status: Some(status), retry_after_ms: None, should_retry: None }
}

fn of(kind: Kind) -> Failure {
    Failure { kind, status: None, retry_after_ms: None, should_retry: None }
}

fn policy(json: &str) -> Policy {
    Policy::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn the_default_table_retries_the_seed_statuses_and_transport_failures() {
    let p = policy("{}");
    assert_eq!(p, Policy::default());
    for status in [429, 500, 502, 503, 529] {
        assert!(p.is_retryable(&api(status)), "{status}");
    }
    for status in [400, 401, 403, 404, 409, 422, 501] {
        assert!(!p.is_retryable(&api(status)), "{status}");
    }
    assert!(p.is_retryable(&of(Kind::Connection)));
    assert!(p.is_retryable(&of(Kind::Timeout)));
    assert!(!p.is_retryable(&of(Kind::Permanent)));
    // An api failure without a status is not one of the retryable statuses.
    assert!(!p.is_retryable(&Failure { status: None, ..api(0) }));
}

#[test]
fn the_vendor_verdict_overrides_the_status_rule_but_never_for_400_401_403() {
    let p = Policy::default();
    assert!(p.is_retryable(&Failure { should_retry: Some(true), ..api(409) }));
    assert!(!p.is_retryable(&Failure { should_retry: Some(false), ..api(503) }));
    assert!(!p.is_retryable(&Failure { should_retry: Some(false), ..of(Kind::Timeout) }));
    for status in [400, 401, 403] {
        assert!(!p.is_retryable(&Failure { should_retry: Some(true), ..api(status) }), "{status}");
    }
}

#[test]
fn tables_are_validated_key_by_key() {
    let p = policy(
        r#"{"max_retries": 5, "backoff_base_seconds": 0.5, "max_wait_seconds": 8,
            "retryable_status_codes": [503], "max_elapsed_seconds": 30, "first_token_timeout_seconds": 2.5,
            "resume": true}"#,
    );
    assert_eq!(
        p,
        Policy {
            max_retries: 5,
            backoff_base: 0.5,
            max_wait: 8.0,
            retryable: vec![503],
            max_elapsed: Some(30.0),
            budget: None,
            first_token_timeout: Some(2.5),
            resume: true,
        }
    );
    assert!(!policy("{}").resume, "resuming is opt-in");
    assert!(p.is_retryable(&api(503)) && !p.is_retryable(&api(429)));
    // Null means unset: the default stays.
    assert_eq!(policy(r#"{"max_retries": null}"#).max_retries, 3);
    for (json, phrase) in [
        (r#"{"max_retry": 1}"#, "unknown key `max_retry`"),
        (r#"{"max_retries": -1}"#, "max_retries must be an integer >= 0"),
        (r#"{"max_retries": 1.5}"#, "max_retries must be an integer >= 0"),
        (r#"{"backoff_base_seconds": 0}"#, "backoff_base_seconds must be a number > 0"),
        (r#"{"max_wait_seconds": "soon"}"#, "max_wait_seconds must be a number > 0"),
        (r#"{"first_token_timeout_seconds": 0}"#, "first_token_timeout_seconds must be a number > 0"),
        (r#"{"resume": "yes"}"#, "resume must be true or false"),
        (r#"{"resume": 1}"#, "resume must be true or false"),
        (r#"{"retryable_status_codes": [503, 401]}"#, "must not contain 401"),
        (r#"{"retryable_status_codes": [99]}"#, "HTTP status codes (100-599)"),
        (r#"{"retryable_status_codes": 503}"#, "must be a list"),
        (r#"[1]"#, "configuration must be a table"),
        (r#"{"#, "not valid JSON"),
    ] {
        let error = Policy::from_json(json).expect_err(json);
        assert!(error.contains(phrase), "{json}: {error}");
    }
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap() {
    let p = Policy { backoff_base: 1.0, max_wait: 60.0, ..Policy::default() };
    let waits: Vec<f64> = (0..4).map(|n| p.backoff_seconds(n, || 0.0)).collect();
    assert_eq!(waits, [1.0, 2.0, 4.0, 8.0]);
    let waits: Vec<f64> = (0..4).map(|n| p.backoff_seconds(n, || 0.5)).collect();
    assert_eq!(waits, [1.5, 3.0, 6.0, 12.0]);
    // Huge retry numbers do not overflow into NaN: they sit at the cap.
    let at_cap = p.backoff_seconds(u32::MAX, || 0.0);
    assert_eq!(at_cap, 60.0);
}

#[test]
fn at_the_cap_the_wait_keeps_its_jitter_within_three_quarters_of_the_cap_and_the_cap() {
    let p = Policy { backoff_base: 10.0, max_wait: 15.0, ..Policy::default() };
    // Below the cap the seed's rule: 10 + U(0, 10) with a draw of 0.2 is 12.
    assert_eq!(p.backoff_seconds(0, || 0.2), 12.0);
    // 10 + 0.6 * 10 = 16 reaches the cap: the wait is drawn again in (11.25, 15].
    let mut draws = [0.6, 0.0].into_iter();
    assert_eq!(p.backoff_seconds(0, || draws.next().unwrap()), 15.0);
    let mut draws = [0.6, 0.5].into_iter();
    assert_eq!(p.backoff_seconds(0, || draws.next().unwrap()), 13.125);
    let mut draws = [0.6, 0.999_999].into_iter();
    let low = p.backoff_seconds(0, || draws.next().unwrap());
    assert!(low > 11.25 && low < 11.26, "{low}");
    // Across many draws at the cap, waits spread over the whole band and never exceed it.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut unit = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let waits: Vec<f64> = (0..1000).map(|_| p.backoff_seconds(5, &mut unit)).collect();
    assert!(waits.iter().all(|w| *w > 11.25 && *w <= 15.0), "{waits:?}");
    let (min, max) = waits.iter().fold((f64::MAX, 0f64), |(lo, hi), w| (lo.min(*w), hi.max(*w)));
    assert!(min < 11.5 && max > 14.75, "waits at the cap do not spread: {min}..{max}");
}

#[test]
fn retry_after_wins_over_backoff_and_is_capped() {
    let p = Policy { max_wait: 10.0, ..Policy::default() };
    let with = |ms| Failure { retry_after_ms: Some(ms), ..api(429) };
    assert_eq!(p.wait_seconds(0, &with(2500), || 0.9), 2.5);
    assert_eq!(p.wait_seconds(3, &with(0), || 0.9), 0.0);
    assert_eq!(p.wait_seconds(0, &with(60_000), || 0.9), 10.0);
    assert_eq!(p.wait_seconds(2, &api(503), || 0.0), 4.0);
}

#[test]
fn the_deadline_covers_every_attempt_together() {
    let p = policy(r#"{"max_elapsed_seconds": 5}"#);
    assert!(!p.past_deadline(1.0, 4.0));
    assert!(p.past_deadline(1.0, 4.5));
    assert!(!Policy::default().past_deadline(1e9, 1e9));
}

#[test]
fn the_first_event_timeout_is_the_tables_or_the_callers_whichever_is_shorter() {
    let unset = policy("{}");
    assert_eq!(unset.first_event_timeout_ms(None), None);
    assert_eq!(unset.first_event_timeout_ms(Some(700)), Some(700));
    let set = policy(r#"{"first_token_timeout_seconds": 1.5}"#);
    assert_eq!(set.first_event_timeout_ms(None), Some(1500));
    assert_eq!(set.first_event_timeout_ms(Some(700)), Some(700));
    assert_eq!(set.first_event_timeout_ms(Some(9000)), Some(1500));
}

/// Events as the commit point sees them: content, a stop, or neither.
#[derive(Debug, PartialEq)]
enum Ev {
    Start,
    Text,
    Stop,
}

impl commit::Event for Ev {
    fn carries_content(&self) -> bool {
        *self == Ev::Text
    }
    fn is_stop(&self) -> bool {
        *self == Ev::Stop
    }
}

fn pull(items: Vec<Result<Ev, &'static str>>) -> (Result<commit::Head<Ev>, &'static str>, usize) {
    let mut items = items.into_iter();
    let mut pulled = 0;
    let head = commit::pull_to_commit(
        || {
            let item = items.next();
            pulled += item.is_some() as usize;
            item
        },
        || "cut short",
    );
    (head, pulled)
}

#[test]
fn a_stream_is_pulled_up_to_its_first_content_and_no_further() {
    let (head, pulled) = pull(vec![Ok(Ev::Start), Ok(Ev::Text), Ok(Ev::Text), Ok(Ev::Stop)]);
    assert_eq!(head, Ok(commit::Head { events: vec![Ev::Start, Ev::Text], ended: false }));
    assert_eq!(pulled, 2, "nothing after the commit point is pulled");
    // A failure before it is the attempt's failure.
    assert_eq!(pull(vec![Ok(Ev::Start), Err("503")]).0, Err("503"));
    // Ending before any content without a stop: cut short.
    assert_eq!(pull(vec![Ok(Ev::Start)]).0, Err("cut short"));
    assert_eq!(pull(vec![]).0, Err("cut short"));
    // A complete answer without content is an answer.
    assert_eq!(
        pull(vec![Ok(Ev::Start), Ok(Ev::Stop)]).0,
        Ok(commit::Head { events: vec![Ev::Start, Ev::Stop], ended: true })
    );
    // Endless events without content are handed on after MAX_HEAD of them.
    let (head, pulled) = pull((0..1000).map(|_| Ok(Ev::Start)).collect());
    assert_eq!(pulled, commit::MAX_HEAD);
    assert!(!head.unwrap().ended);
}
