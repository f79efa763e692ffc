//! The retry module's decisions, as plain Rust: which failures are retried and how long to
//! wait. Nothing here touches the WIT bindings, so the host's test suite compiles this file
//! natively and unit-tests it (`tests/tests/retry_policy.rs`); the module (`lib.rs`) only
//! converts its `Error` into a [`Failure`] and sleeps.

use crate::budget::{self, Budget};
use crate::config::Config;

/// Statuses that a retry cannot fix: the request itself was rejected.
pub const NEVER_RETRIED: [u16; 3] = [400, 401, 403];

/// The keys of the module's table (besides the budget's, [`budget::KEYS`]).
pub const KEYS: [&str; 7] = [
    "max_retries",
    "backoff_base_seconds",
    "max_wait_seconds",
    "retryable_status_codes",
    "max_elapsed_seconds",
    "first_token_timeout_seconds",
    "resume",
];

/// What went wrong, as far as the retry decision needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The vendor answered with a non-2xx status.
    Api,
    /// No connection, or it broke.
    Connection,
    /// The vendor did not answer in time.
    Timeout,
    /// Configuration, parse and module errors: a retry would fail the same way.
    Permanent,
}

/// One failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    /// The HTTP status, for `Api` failures.
    pub status: Option<u16>,
    /// The vendor's `Retry-After`, in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// The vendor's `x-should-retry` verdict.
    pub should_retry: Option<bool>,
}

/// The module's settings, read from its table.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub max_retries: u32,
    pub backoff_base: f64,
    pub max_wait: f64,
    pub retryable: Vec<u16>,
    pub max_elapsed: Option<f64>,
    /// The retry budget shared across calls (`budget_percent`, …); none by default.
    pub budget: Option<Budget>,
    /// Streaming calls: seconds within which an attempt must deliver its first content
    /// event, else it fails as a `timeout` (and is retried like one).
    pub first_token_timeout: Option<f64>,
    /// Streaming calls: an answer that fails after its commit point is re-sent with the
    /// text delivered so far as an assistant prefix and continued (within `max_retries`).
    pub resume: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_retries: 3,
            backoff_base: 1.0,
            max_wait: 60.0,
            retryable: vec![429, 500, 502, 503, 529],
            max_elapsed: None,
            budget: None,
            first_token_timeout: None,
            resume: false,
        }
    }
}

impl Policy {
    /// Reads the module's table (JSON text); an unknown key or a bad value is an error
    /// naming the key.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let config = Config::parse(text)?;
        let known: Vec<&str> = KEYS.iter().chain(budget::KEYS.iter()).copied().collect();
        config.deny_unknown(&known)?;
        let defaults = Policy::default();
        let retryable = config
            .list(
                "retryable_status_codes",
                |v| v.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|s| (100..=599).contains(s)),
                "HTTP status codes (100-599)",
            )?
            .unwrap_or(defaults.retryable);
        if let Some(code) = retryable.iter().find(|c| NEVER_RETRIED.contains(c)) {
            return Err(format!(
                "retryable_status_codes must not contain {code}: 400, 401 and 403 are never retried"
            ));
        }
        Ok(Policy {
            max_retries: config.u32("max_retries", defaults.max_retries)?,
            backoff_base: config.positive_f64("backoff_base_seconds")?.unwrap_or(defaults.backoff_base),
            max_wait: config.positive_f64("max_wait_seconds")?.unwrap_or(defaults.max_wait),
            retryable,
            max_elapsed: config.positive_f64("max_elapsed_seconds")?,
            budget: Budget::from_config(&config)?,
            first_token_timeout: config.positive_f64("first_token_timeout_seconds")?,
            resume: config.bool("resume", defaults.resume)?,
        })
    }

    /// Whether another attempt could succeed where this one failed. The vendor's
    /// `x-should-retry` overrides the status rule, but never makes 400/401/403 retryable.
    pub fn is_retryable(&self, failure: &Failure) -> bool {
        match failure.kind {
            Kind::Api => {
                let status = failure.status.unwrap_or(0);
                if NEVER_RETRIED.contains(&status) {
                    return false;
                }
                failure.should_retry.unwrap_or_else(|| self.retryable.contains(&status))
            }
            Kind::Connection | Kind::Timeout => failure.should_retry.unwrap_or(true),
            Kind::Permanent => false,
        }
    }

    /// Seconds to wait before retry number `n` (0-based): the vendor's `Retry-After` (at
    /// most `max_wait`), else the backoff. `unit` draws uniformly from `[0, 1)`.
    pub fn wait_seconds(&self, n: u32, failure: &Failure, unit: impl FnMut() -> f64) -> f64 {
        match failure.retry_after_ms {
            Some(ms) => (ms as f64 / 1000.0).min(self.max_wait),
            None => self.backoff_seconds(n, unit),
        }
    }

    /// Exponential backoff with jitter: `b + U(0, b)` where `b = base · 2ⁿ`, while that is
    /// below `max_wait`. At the cap, a wait drawn from `(0.75 · cap, cap]` instead of the cap
    /// itself: clients that all reached the cap would otherwise retry in lockstep.
    pub fn backoff_seconds(&self, n: u32, mut unit: impl FnMut() -> f64) -> f64 {
        let b = self.backoff_base * 2f64.powi(n.min(1023) as i32);
        let wait = b + unit() * b;
        if wait < self.max_wait {
            wait
        } else {
            self.max_wait * (1.0 - 0.25 * unit())
        }
    }

    /// The first-event timeout of one streaming attempt, in milliseconds: the table's
    /// `first_token_timeout_seconds`, or the caller's when that is shorter.
    pub fn first_event_timeout_ms(&self, caller_ms: Option<u64>) -> Option<u64> {
        let own =
            self.first_token_timeout.map(|seconds| (seconds * 1000.0).ceil().min(u64::MAX as f64) as u64);
        match (own, caller_ms) {
            (Some(own), Some(caller)) => Some(own.min(caller)),
            (own, caller) => own.or(caller),
        }
    }

    /// Whether a wait of `wait` seconds, `elapsed` seconds after the first attempt, would
    /// end past `max_elapsed_seconds`.
    pub fn past_deadline(&self, elapsed: f64, wait: f64) -> bool {
        self.max_elapsed.is_some_and(|limit| elapsed + wait > limit)
    }
}
