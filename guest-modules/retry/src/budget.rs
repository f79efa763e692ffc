//! Retry's budget, as plain Rust over the host's shared state: retries may be at most
//! `budget_percent` of the requests in a sliding window of `budget_window_seconds`, plus
//! `min_retries_per_second` (so a quiet provider can still be retried), counted per
//! provider across every model of a process and every replica sharing a Redis. During an
//! outage, retries then add at most that share to the load instead of multiplying it.
//! Beyond the budget a failure is returned without retry, and the module logs why.
//!
//! Off unless `budget_percent` is set: without it retry reads and writes no shared state.
//! The host's tests compile this file natively (`tests/tests/retry_budget_policy.rs`).

use std::time::Duration;

use crate::config::Config;
use crate::shared::{SharedState, Unavailable, Window};

/// The budget's keys in retry's table.
pub const KEYS: [&str; 3] = ["budget_percent", "min_retries_per_second", "budget_window_seconds"];

/// The budget's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub percent: f64,
    pub min_retries_per_second: f64,
    pub window: Duration,
}

/// Whether one more retry fits the budget.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// It does (and is counted).
    Allowed,
    /// It does not: `retries` were counted against `allowed` for `requests` requests in the
    /// window (or the shared state is unavailable and the host fails closed: `reason`).
    Denied { reason: String },
}

impl Budget {
    /// The budget in retry's table, if `budget_percent` is set; the other budget keys
    /// without it are an error (they would do nothing).
    pub fn from_config(config: &Config) -> Result<Option<Budget>, String> {
        let percent = match config.get("budget_percent") {
            None => {
                if let Some(key) = KEYS[1..].iter().find(|k| config.get(k).is_some()) {
                    return Err(format!("{key} needs budget_percent: without it there is no retry budget"));
                }
                return Ok(None);
            }
            Some(v) => v
                .as_f64()
                .filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
                .ok_or_else(|| format!("budget_percent must be a number from 0 to 100, got {v}"))?,
        };
        let min_retries_per_second = match config.get("min_retries_per_second") {
            None => 0.0,
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("min_retries_per_second must be a number >= 0, got {v}"))?,
        };
        let window = match config.positive_f64("budget_window_seconds")? {
            None => Duration::from_secs(10),
            Some(s) if (0.001..=86_400.0).contains(&s) => Duration::from_secs_f64(s),
            Some(s) => return Err(format!("budget_window_seconds must be from 0.001 to 86400, got {s}")),
        };
        Ok(Some(Budget { percent, min_retries_per_second, window }))
    }

    /// Counts one request (a first attempt) to `provider`.
    pub fn request(&self, state: &mut impl SharedState, provider: &str) -> Result<(), Unavailable> {
        state.incr(&requests_key(provider), Window::Sliding(self.window), 1).map(drop)
    }

    /// Whether a retry to `provider` fits; when it does it is counted (a denied retry is
    /// not, so it does not eat the budget of later ones). Reading and counting are two
    /// operations: callers deciding at the same instant (in any replica) may overshoot the
    /// budget by as many as decide together.
    pub fn allow_retry(&self, state: &mut impl SharedState, provider: &str) -> Verdict {
        let window = Window::Sliding(self.window);
        let denied =
            |Unavailable(why)| Verdict::Denied { reason: format!("shared state unavailable: {why}") };
        let requests = match state.read(&requests_key(provider), window) {
            Ok(n) => n,
            Err(e) => return denied(e),
        };
        // A retry follows a counted request: none counted means the state answered blind
        // (the backend is down and the host fails open), and so does the budget.
        if requests == 0 {
            return Verdict::Allowed;
        }
        let retries = match state.read(&retries_key(provider), window) {
            Ok(n) => n,
            Err(e) => return denied(e),
        };
        let allowed = self.allowed(requests);
        if (retries + 1) as f64 <= allowed {
            return match state.incr(&retries_key(provider), window, 1) {
                Ok(_) => Verdict::Allowed,
                Err(e) => denied(e),
            };
        }
        Verdict::Denied {
            reason: format!(
                "retry budget spent: {retries} retries for {requests} requests in the last {} s (budget_percent = {}, min_retries_per_second = {}: {:.1} allowed)",
                self.window.as_secs_f64(),
                self.percent,
                self.min_retries_per_second,
                allowed
            ),
        }
    }

    /// Retries allowed in the window for `requests` requests.
    pub fn allowed(&self, requests: u64) -> f64 {
        (self.percent / 100.0 * requests as f64).max(self.min_retries_per_second * self.window.as_secs_f64())
    }
}

fn requests_key(provider: &str) -> String {
    format!("budget.requests:{provider}")
}

fn retries_key(provider: &str) -> String {
    format!("budget.retries:{provider}")
}
