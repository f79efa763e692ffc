//! The rate-limit module's decisions (`guest-modules/rate_limit/src/policy.rs`), compiled
//! natively and run against the host's in-process state under a manual clock.

// Only part of the SDK's config reader and state trait is used by each policy.
#[allow(dead_code)]
#[path = "../../guest-modules/sdk/src/config.rs"]
mod config;
#[path = "../../guest-modules/rate_limit/src/policy.rs"]
mod policy;
#[path = "../../guest-modules/sdk/src/scope.rs"]
mod scope;
#[allow(dead_code)]
#[path = "../../guest-modules/sdk/src/shared.rs"]
mod shared;
#[path = "support/shared_state.rs"]
mod support;

use std::time::Duration;

use arcllm::state::OnError;
use policy::{Admission, Policy};
use scope::Scope;
use support::HostState;

fn policy(json: &str) -> Policy {
    Policy::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn the_arcllm_table_reads_unchanged_and_burst_defaults_to_the_rate() {
    let p = policy(r#"{"requests_per_minute": 120}"#);
    assert_eq!((p.requests_per_minute, p.burst_capacity), (120.0, 120.0));
    let p = policy(r#"{"requests_per_minute": 60, "burst_capacity": 10}"#);
    assert_eq!((p.requests_per_minute, p.burst_capacity), (60.0, 10.0));
    assert_eq!(policy("{}"), Policy::default());
    assert_eq!(policy(r#"{"scope": "model"}"#).scope, Scope::Model);
}

#[test]
fn mistakes_in_the_table_are_errors_naming_the_key() {
    for (json, needle) in [
        (r#"{"requests_per_minute": 0}"#, "requests_per_minute"),
        (r#"{"requests_per_minute": -5}"#, "requests_per_minute"),
        (r#"{"burst_capacity": 0.5}"#, "burst_capacity"),
        (r#"{"max_wait_seconds": -1}"#, "max_wait_seconds"),
        (r#"{"scope": "user"}"#, "scope"),
        (r#"{"tokens_per_minute": "many"}"#, "tokens_per_minute"),
        (r#"{"rpm": 60}"#, "unknown key `rpm`"),
    ] {
        let err = Policy::from_json(json).unwrap_err();
        assert!(err.contains(needle), "{json}: {err}");
    }
}

#[test]
fn a_burst_goes_at_once_then_calls_wait_for_the_refill() {
    let (mut state, clock) = HostState::memory("rate_limit");
    let p = policy(r#"{"requests_per_minute": 60, "burst_capacity": 3, "max_wait_seconds": 5}"#);
    let key = p.key("openai", "gpt-4o");
    let mut slept = Vec::new();
    for _ in 0..3 {
        let admitted = p.admit(&mut state, &key, |d| slept.push(d));
        assert_eq!(admitted, Admission::Admitted { waited: Duration::ZERO });
    }
    // The fourth waits one second (60 a minute), on the module's clock.
    let admitted = p.admit(&mut state, &key, |d| {
        slept.push(d);
        clock.advance(d);
    });
    assert_eq!(admitted, Admission::Admitted { waited: Duration::from_secs(1) });
    assert_eq!(slept, [Duration::from_secs(1)]);
}

#[test]
fn beyond_max_wait_the_call_is_limited_with_the_time_a_token_is_due() {
    let (mut state, clock) = HostState::memory("rate_limit");
    let p = policy(r#"{"requests_per_minute": 6, "burst_capacity": 1, "max_wait_seconds": 5}"#);
    let key = p.key("openai", "m");
    assert!(matches!(p.admit(&mut state, &key, |_| panic!("no wait")), Admission::Admitted { .. }));
    // One token every 10 s: more than 5 s away.
    let limited = p.admit(&mut state, &key, |_| panic!("no wait: it could not end in time"));
    assert_eq!(
        limited,
        Admission::Limited {
            waited: Duration::ZERO,
            retry_after: Duration::from_secs(10),
            limit: "requests_per_minute"
        }
    );
    clock.advance(Duration::from_secs(7));
    let admitted = p.admit(&mut state, &key, |d| clock.advance(d));
    assert_eq!(admitted, Admission::Admitted { waited: Duration::from_secs(3) });
}

#[test]
fn the_scope_decides_which_calls_share_a_bucket() {
    let (mut state, _clock) = HostState::memory("rate_limit");
    let per_provider = policy(r#"{"requests_per_minute": 1, "max_wait_seconds": 0}"#);
    let per_model = Policy { scope: Scope::Model, ..per_provider.clone() };
    assert_eq!(per_provider.key("openai", "a"), per_provider.key("openai", "b"));
    assert_ne!(per_model.key("openai", "a"), per_model.key("openai", "b"));
    let never = |_| panic!("no wait");
    assert!(matches!(
        per_model.admit(&mut state, &per_model.key("openai", "a"), never),
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        per_model.admit(&mut state, &per_model.key("openai", "b"), never),
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        per_model.admit(&mut state, &per_model.key("openai", "a"), never),
        Admission::Limited { .. }
    ));
    assert!(matches!(
        per_provider.admit(&mut state, &per_provider.key("groq", "x"), never),
        Admission::Admitted { .. }
    ));
}

#[test]
fn tokens_per_minute_holds_calls_while_the_last_minute_used_the_allowance() {
    let (mut state, clock) = HostState::memory("rate_limit");
    let p = policy(r#"{"requests_per_minute": 1000, "tokens_per_minute": 1000, "max_wait_seconds": 120}"#);
    let key = p.key("anthropic", "m");
    assert!(matches!(p.admit(&mut state, &key, |_| panic!()), Admission::Admitted { .. }));
    p.record_usage(&mut state, &key, 1500).unwrap();
    // The sliding minute forgets the 1,500 tokens as it slides: the count falls under 1,000
    // once a third of that minute has passed (after the fixed window that holds them).
    let admitted = p.admit(&mut state, &key, |d| clock.advance(d));
    let Admission::Admitted { waited } = admitted else { panic!("{admitted:?}") };
    assert!(waited >= Duration::from_secs(20) && waited <= Duration::from_secs(81), "{waited:?}");
    let short = Policy { max_wait: Duration::ZERO, ..p.clone() };
    short.record_usage(&mut state, &key, 5000).unwrap();
    let limited = short.admit(&mut state, &key, |_| panic!());
    assert!(matches!(limited, Admission::Limited { limit: "tokens_per_minute", .. }), "{limited:?}");
}

#[test]
fn with_the_state_down_open_admits_and_closed_refuses() {
    let p = policy(r#"{"requests_per_minute": 1, "burst_capacity": 1, "max_wait_seconds": 0}"#);
    let mut open = HostState::down("rate_limit", OnError::Open);
    for _ in 0..5 {
        assert!(matches!(p.admit(&mut open, "rpm:openai", |_| panic!()), Admission::Admitted { .. }));
    }
    let mut closed = HostState::down("rate_limit", OnError::Closed);
    let refused = p.admit(&mut closed, "rpm:openai", |_| panic!());
    let Admission::Unavailable(why) = refused else { panic!("{refused:?}") };
    assert!(why.contains("unavailable"), "{why}");
}

#[test]
fn with_the_state_down_and_closed_the_token_count_refuses_too() {
    let p = policy(r#"{"requests_per_minute": 60, "tokens_per_minute": 1000}"#);
    let mut closed = HostState::down("rate_limit", OnError::Closed);
    // Reading the minute's tokens fails first: the call is refused before any bucket.
    let refused = p.admit(&mut closed, "rpm:openai", |_| panic!("no wait without state"));
    let Admission::Unavailable(why) = refused else { panic!("{refused:?}") };
    assert!(why.contains("unavailable"), "{why}");
    // Counting an answer's tokens reports the failure rather than losing it silently.
    assert!(p.record_usage(&mut closed, "rpm:openai", 10).is_err());
    // Without tokens_per_minute, or with no tokens used, nothing is written at all.
    let plain = policy(r#"{"requests_per_minute": 60}"#);
    assert!(plain.record_usage(&mut closed, "rpm:openai", 10).is_ok());
    assert!(p.record_usage(&mut closed, "rpm:openai", 0).is_ok());
}
