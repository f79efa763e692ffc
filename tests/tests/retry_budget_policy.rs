//! Retry's budget (`guest-modules/retry/src/budget.rs`), compiled natively and run against
//! the host's in-process state under a manual clock.

#[path = "../../guest-modules/retry/src/budget.rs"]
mod budget;
// Only part of the SDK's config reader and state trait is used by each policy.
#[allow(dead_code)]
#[path = "../../guest-modules/sdk/src/config.rs"]
mod config;
#[allow(dead_code)]
#[path = "../../guest-modules/sdk/src/shared.rs"]
mod shared;
#[path = "support/shared_state.rs"]
mod support;

use std::time::Duration;

use arcllm::state::OnError;
use budget::{Budget, Verdict};
use support::HostState;

fn budget(json: &str) -> Option<Budget> {
    Budget::from_config(&config::Config::parse(json).unwrap()).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn no_budget_percent_no_budget_and_its_other_keys_alone_are_errors() {
    assert_eq!(budget("{}"), None);
    let b = budget(r#"{"budget_percent": 20}"#).unwrap();
    assert_eq!((b.percent, b.min_retries_per_second, b.window), (20.0, 0.0, Duration::from_secs(10)));
    for (json, needle) in [
        (r#"{"min_retries_per_second": 1}"#, "needs budget_percent"),
        (r#"{"budget_window_seconds": 5}"#, "needs budget_percent"),
        (r#"{"budget_percent": 101}"#, "budget_percent"),
        (r#"{"budget_percent": 10, "min_retries_per_second": -1}"#, "min_retries_per_second"),
        (r#"{"budget_percent": 10, "budget_window_seconds": 0}"#, "budget_window_seconds"),
    ] {
        let err = Budget::from_config(&config::Config::parse(json).unwrap()).unwrap_err();
        assert!(err.contains(needle), "{json}: {err}");
    }
}

#[test]
fn retries_stay_within_the_percent_of_requests_in_the_window() {
    let (mut state, clock) = HostState::memory("retry");
    let b = budget(r#"{"budget_percent": 20, "budget_window_seconds": 10}"#).unwrap();
    for _ in 0..50 {
        b.request(&mut state, "openai").unwrap();
    }
    // 20% of 50: ten retries, then none.
    let verdicts: Vec<Verdict> = (0..15).map(|_| b.allow_retry(&mut state, "openai")).collect();
    assert!(verdicts[..10].iter().all(|v| *v == Verdict::Allowed), "{verdicts:?}");
    let Verdict::Denied { reason } = &verdicts[10] else { panic!("{verdicts:?}") };
    assert!(reason.contains("retry budget") && reason.contains("50 requests"), "{reason}");
    assert!(verdicts[10..].iter().all(|v| *v != Verdict::Allowed));
    // Another provider has its own budget: 20% of 5 requests is one retry.
    for _ in 0..5 {
        b.request(&mut state, "groq").unwrap();
    }
    assert_eq!(b.allow_retry(&mut state, "groq"), Verdict::Allowed);
    assert!(matches!(b.allow_retry(&mut state, "groq"), Verdict::Denied { .. }));
    // Once the window has slid past, requests and retries are both forgotten.
    clock.advance(Duration::from_secs(25));
    for _ in 0..10 {
        b.request(&mut state, "openai").unwrap();
    }
    assert_eq!(b.allow_retry(&mut state, "openai"), Verdict::Allowed);
    assert_eq!(b.allow_retry(&mut state, "openai"), Verdict::Allowed);
    assert!(matches!(b.allow_retry(&mut state, "openai"), Verdict::Denied { .. }));
}

#[test]
fn min_retries_per_second_allows_retries_when_requests_are_few() {
    let (mut state, _clock) = HostState::memory("retry");
    let b = budget(r#"{"budget_percent": 10, "min_retries_per_second": 0.5, "budget_window_seconds": 10}"#)
        .unwrap();
    b.request(&mut state, "openai").unwrap();
    // 10% of one request is 0.1, but 0.5 a second over 10 s is 5.
    assert_eq!(b.allowed(1), 5.0);
    for _ in 0..5 {
        assert_eq!(b.allow_retry(&mut state, "openai"), Verdict::Allowed);
    }
    assert!(matches!(b.allow_retry(&mut state, "openai"), Verdict::Denied { .. }));
}

#[test]
fn with_the_state_down_open_allows_and_closed_denies() {
    let b = budget(r#"{"budget_percent": 0}"#).unwrap();
    let mut open = HostState::down("retry", OnError::Open);
    b.request(&mut open, "openai").unwrap();
    assert_eq!(b.allow_retry(&mut open, "openai"), Verdict::Allowed);
    let mut closed = HostState::down("retry", OnError::Closed);
    assert!(b.request(&mut closed, "openai").is_err());
    let Verdict::Denied { reason } = b.allow_retry(&mut closed, "openai") else { panic!("closed denies") };
    assert!(reason.contains("unavailable"), "{reason}");
}
