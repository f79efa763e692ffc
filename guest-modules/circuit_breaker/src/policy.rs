//! The circuit breaker's decisions, as plain Rust, over the host's shared state: one
//! breaker per provider (or per provider and model), shared by every model of a process
//! and every replica sharing a Redis. Nothing here touches the WIT bindings: the host's
//! tests compile this file natively (`tests/tests/circuit_breaker_policy.rs`).
//!
//! - **closed**: calls go; each failure of a counted kind (what retry would retry:
//!   `failure_status_codes`, connection and timeout errors) is counted in a sliding window
//!   of `window_seconds`; at `failure_threshold` the breaker opens (the count restarts).
//! - **open**: for `cooldown_seconds` calls fail at once, without a network call, with an
//!   error of kind `api`, status 503 and `retry_after` the rest of the cooldown (fallback
//!   treats it as a failure and moves on).
//! - **half-open**: after the cooldown one call (whichever replica gets there first) goes
//!   as a probe while the others still fail fast; the probe's answer closes the breaker, its
//!   failure opens it for another cooldown. A probe that never reports (its process died)
//!   is forgotten after `cooldown_seconds`, and the breaker is closed again.

use std::time::Duration;

use crate::config::Config;
use crate::scope::Scope;
use crate::shared::{SharedState, Unavailable, Window};

/// The keys of the module's table.
pub const KEYS: [&str; 5] =
    ["failure_threshold", "window_seconds", "cooldown_seconds", "failure_status_codes", Scope::KEY];

const OPEN: &[u8] = b"open";
const PROBE: &[u8] = b"probe";

/// How long a caller that finds a probe in flight is told to wait.
pub const PROBE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What went wrong with a call, as far as the breaker needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answered.
    Success,
    /// An `api` error with this status.
    Status(u16),
    /// No connection, or no answer in time.
    Unreachable,
    /// Configuration, parse or module errors: not the provider's health.
    Other,
}

/// The module's settings, read from its table.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub failure_threshold: u32,
    pub window: Duration,
    pub cooldown: Duration,
    pub failure_status_codes: Vec<u16>,
    pub scope: Scope,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            failure_threshold: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            failure_status_codes: vec![429, 500, 502, 503, 529],
            scope: Scope::Provider,
        }
    }
}

/// Whether a call may go.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// The breaker is closed: the call goes.
    Closed,
    /// The breaker was half-open and this call is its probe.
    Probe,
    /// The call fails fast; a later one may go after `retry_after`.
    Reject { retry_after: Duration, reason: String },
}

/// A change of the breaker's state, for the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// Closed to open after `failures` counted failures.
    Opened { failures: u64 },
    /// The probe succeeded: closed.
    Closed,
    /// The probe failed: open again.
    Reopened,
}

impl Policy {
    /// Reads the module's table (JSON text); an unknown key or a bad value is an error
    /// naming the key.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let config = Config::parse(text)?;
        config.deny_unknown(&KEYS)?;
        let defaults = Policy::default();
        let failure_threshold = config.u32("failure_threshold", defaults.failure_threshold)?;
        if failure_threshold == 0 {
            return Err("failure_threshold must be at least 1, got 0".into());
        }
        let seconds = |key: &str, default: Duration| -> Result<Duration, String> {
            match config.positive_f64(key)? {
                None => Ok(default),
                Some(s) if s >= 0.001 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
                Some(s) => Err(format!("{key} must be from 0.001 to 86400 seconds, got {s}")),
            }
        };
        let scope = Scope::from_config(&config, defaults.scope)?;
        Ok(Policy {
            failure_threshold,
            window: seconds("window_seconds", defaults.window)?,
            cooldown: seconds("cooldown_seconds", defaults.cooldown)?,
            failure_status_codes: config
                .list(
                    "failure_status_codes",
                    |v| v.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|s| (100..=599).contains(s)),
                    "HTTP status codes (100-599)",
                )?
                .unwrap_or(defaults.failure_status_codes),
            scope,
        })
    }

    /// The breaker's name for calls to `provider`'s `model`.
    pub fn target(&self, provider: &str, model: &str) -> String {
        self.scope.target(provider, model)
    }

    /// Whether `outcome` counts as a failure of the provider.
    pub fn counts(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Status(status) => self.failure_status_codes.contains(&status),
            Outcome::Unreachable => true,
            Outcome::Success | Outcome::Other => false,
        }
    }

    /// Whether a call to `target` may go now.
    pub fn gate(&self, state: &mut impl SharedState, target: &str) -> Gate {
        let key = state_key(target);
        let unavailable = |Unavailable(why)| Gate::Reject {
            retry_after: Duration::ZERO,
            reason: format!("circuit breaker for {target}: shared state unavailable: {why}"),
        };
        match state.get(&key) {
            Err(e) => unavailable(e),
            Ok(None) => Gate::Closed,
            Ok(Some((value, age))) if value == OPEN => {
                if age < self.cooldown {
                    return Gate::Reject {
                        retry_after: self.cooldown - age,
                        reason: format!("circuit breaker for {target} is open"),
                    };
                }
                match state.cas(&key, Some(OPEN), Some(PROBE), self.cooldown) {
                    Err(e) => unavailable(e),
                    Ok(true) => Gate::Probe,
                    Ok(false) => self.probing(target),
                }
            }
            Ok(Some((value, _))) if value == PROBE => self.probing(target),
            // Not a value this module writes: treated as closed.
            Ok(Some(_)) => Gate::Closed,
        }
    }

    /// Records how a call that `gate` let through ended.
    pub fn record(
        &self,
        state: &mut impl SharedState,
        target: &str,
        gate: &Gate,
        outcome: Outcome,
    ) -> Result<Option<Transition>, Unavailable> {
        let key = state_key(target);
        let failed = self.counts(outcome);
        match gate {
            Gate::Reject { .. } => Ok(None),
            Gate::Closed if !failed => Ok(None),
            Gate::Closed => {
                let failures = state.incr(&failures_key(target), Window::Sliding(self.window), 1)?;
                if failures < u64::from(self.failure_threshold) {
                    return Ok(None);
                }
                if state.cas(&key, None, Some(OPEN), self.open_ttl())? {
                    state.reset(&failures_key(target))?;
                    return Ok(Some(Transition::Opened { failures }));
                }
                Ok(None)
            }
            Gate::Probe if failed => {
                Ok(state.cas(&key, Some(PROBE), Some(OPEN), self.open_ttl())?.then_some(Transition::Reopened))
            }
            Gate::Probe => {
                let closed = state.cas(&key, Some(PROBE), None, self.cooldown)?;
                state.reset(&failures_key(target))?;
                Ok(closed.then_some(Transition::Closed))
            }
        }
    }

    fn probing(&self, target: &str) -> Gate {
        Gate::Reject {
            retry_after: PROBE_RETRY_AFTER.min(self.cooldown),
            reason: format!("circuit breaker for {target} is half-open and a probe call is in flight"),
        }
    }

    /// How long an open breaker's record is kept: its cooldown, then as long again for a
    /// probe to find it; past that, nobody called, and the breaker is closed.
    fn open_ttl(&self) -> Duration {
        self.cooldown * 2
    }
}

fn state_key(target: &str) -> String {
    format!("state:{target}")
}

fn failures_key(target: &str) -> String {
    format!("failures:{target}")
}
