//! The circuit breaker's decisions (`guest-modules/circuit_breaker/src/policy.rs`),
//! compiled natively and run against the host's in-process state under a manual clock.

// Only part of the SDK's config reader and state trait is used by each policy.
#[allow(dead_code)]
#[path = "../../guest-modules/sdk/src/config.rs"]
mod config;
#[path = "../../guest-modules/circuit_breaker/src/policy.rs"]
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
use policy::{Gate, Outcome, Policy, Transition};
use support::HostState;

fn policy(json: &str) -> Policy {
    Policy::from_json(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// One call through the breaker that ends with `outcome` if it goes.
fn call(p: &Policy, state: &mut HostState, outcome: Outcome) -> (Gate, Option<Transition>) {
    let gate = p.gate(state, "openai");
    let transition = p.record(state, "openai", &gate, outcome).unwrap();
    (gate, transition)
}

#[test]
fn the_table_reads_and_mistakes_name_the_key() {
    assert_eq!(policy("{}"), Policy::default());
    assert_eq!(policy("{}").target("openai", "gpt-4o"), "openai");
    assert_eq!(policy(r#"{"scope": "model"}"#).target("openai", "gpt-4o"), "openai/gpt-4o");
    let p = policy(
        r#"{"failure_threshold": 2, "window_seconds": 10, "cooldown_seconds": 5, "failure_status_codes": [503]}"#,
    );
    assert_eq!(
        (p.failure_threshold, p.window, p.cooldown),
        (2, Duration::from_secs(10), Duration::from_secs(5))
    );
    assert!(
        p.counts(Outcome::Status(503)) && !p.counts(Outcome::Status(500)) && p.counts(Outcome::Unreachable)
    );
    assert!(!p.counts(Outcome::Status(400)) && !p.counts(Outcome::Other) && !p.counts(Outcome::Success));
    for (json, needle) in [
        (r#"{"failure_threshold": 0}"#, "failure_threshold"),
        (r#"{"window_seconds": 0}"#, "window_seconds"),
        (r#"{"cooldown_seconds": 100000}"#, "cooldown_seconds"),
        (r#"{"failure_status_codes": [700]}"#, "failure_status_codes"),
        (r#"{"scope": 1}"#, "scope"),
        (r#"{"threshold": 1}"#, "unknown key `threshold`"),
    ] {
        let err = Policy::from_json(json).unwrap_err();
        assert!(err.contains(needle), "{json}: {err}");
    }
}

#[test]
fn it_opens_at_the_threshold_rejects_during_cooldown_and_one_probe_closes_it() {
    let (mut state, clock) = HostState::memory("circuit_breaker");
    let p = policy(r#"{"failure_threshold": 3, "window_seconds": 60, "cooldown_seconds": 30}"#);
    // Failures that are not the provider's health do not count.
    assert_eq!(call(&p, &mut state, Outcome::Status(400)), (Gate::Closed, None));
    assert_eq!(call(&p, &mut state, Outcome::Other), (Gate::Closed, None));
    assert_eq!(call(&p, &mut state, Outcome::Status(503)), (Gate::Closed, None));
    assert_eq!(call(&p, &mut state, Outcome::Unreachable), (Gate::Closed, None));
    assert_eq!(
        call(&p, &mut state, Outcome::Status(500)),
        (Gate::Closed, Some(Transition::Opened { failures: 3 }))
    );
    // Open: fast rejections, telling when to come back.
    clock.advance(Duration::from_secs(10));
    let Gate::Reject { retry_after, reason } = p.gate(&mut state, "openai") else { panic!("not open") };
    assert_eq!(retry_after, Duration::from_secs(20));
    assert!(reason.contains("openai") && reason.contains("open"), "{reason}");
    // Another target is unaffected.
    assert_eq!(p.gate(&mut state, "groq"), Gate::Closed);
    // Half-open: one probe, the others still rejected.
    clock.advance(Duration::from_secs(20));
    let probe = p.gate(&mut state, "openai");
    assert_eq!(probe, Gate::Probe);
    assert!(matches!(p.gate(&mut state, "openai"), Gate::Reject { .. }));
    assert_eq!(p.record(&mut state, "openai", &probe, Outcome::Success).unwrap(), Some(Transition::Closed));
    // Closed, and counting from zero again.
    assert_eq!(call(&p, &mut state, Outcome::Status(503)), (Gate::Closed, None));
    assert_eq!(call(&p, &mut state, Outcome::Status(503)), (Gate::Closed, None));
}

#[test]
fn a_failed_probe_opens_it_for_another_cooldown() {
    let (mut state, clock) = HostState::memory("circuit_breaker");
    let p = policy(r#"{"failure_threshold": 1, "cooldown_seconds": 5}"#);
    assert_eq!(call(&p, &mut state, Outcome::Unreachable).1, Some(Transition::Opened { failures: 1 }));
    clock.advance(Duration::from_secs(5));
    let (gate, transition) = call(&p, &mut state, Outcome::Status(503));
    assert_eq!((gate, transition), (Gate::Probe, Some(Transition::Reopened)));
    clock.advance(Duration::from_secs(4));
    assert!(
        matches!(p.gate(&mut state, "openai"), Gate::Reject { retry_after, .. } if retry_after == Duration::from_secs(1))
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(p.gate(&mut state, "openai"), Gate::Probe);
}

#[test]
fn failures_older_than_the_window_are_forgotten() {
    let (mut state, clock) = HostState::memory("circuit_breaker");
    let p = policy(r#"{"failure_threshold": 2, "window_seconds": 10}"#);
    assert_eq!(call(&p, &mut state, Outcome::Status(503)).1, None);
    clock.advance(Duration::from_secs(25));
    assert_eq!(call(&p, &mut state, Outcome::Status(503)).1, None);
    assert_eq!(call(&p, &mut state, Outcome::Status(503)).1, Some(Transition::Opened { failures: 2 }));
}

#[test]
fn a_probe_that_never_reports_is_forgotten_after_the_cooldown() {
    let (mut state, clock) = HostState::memory("circuit_breaker");
    let p = policy(r#"{"failure_threshold": 1, "cooldown_seconds": 5}"#);
    call(&p, &mut state, Outcome::Unreachable);
    clock.advance(Duration::from_secs(5));
    assert_eq!(p.gate(&mut state, "openai"), Gate::Probe);
    clock.advance(Duration::from_secs(4));
    assert!(matches!(p.gate(&mut state, "openai"), Gate::Reject { .. }));
    clock.advance(Duration::from_secs(1));
    assert_eq!(p.gate(&mut state, "openai"), Gate::Closed);
}

#[test]
fn with_the_state_down_open_lets_calls_through_and_closed_rejects_them() {
    let p = policy(r#"{"failure_threshold": 1}"#);
    let mut open = HostState::down("circuit_breaker", OnError::Open);
    for _ in 0..3 {
        assert_eq!(call(&p, &mut open, Outcome::Status(503)).0, Gate::Closed);
    }
    let mut closed = HostState::down("circuit_breaker", OnError::Closed);
    let Gate::Reject { reason, .. } = p.gate(&mut closed, "openai") else {
        panic!("closed lets nothing through")
    };
    assert!(reason.contains("unavailable"), "{reason}");
}
