//! The rate-limit module's decisions, as plain Rust: a token bucket per provider (or per
//! provider and model) in the host's shared state, so every model of a process, and every
//! replica sharing a Redis, draws from one bucket. Nothing here touches the WIT bindings:
//! the host's tests compile this file natively (`tests/tests/rate_limit_policy.rs`).
//!
//! A call takes one token; when there is none it waits (sleeping in the module, which the
//! host does not charge as CPU) until one is due, up to `max_wait_seconds` in all, then
//! gives up with a rate-limit error (HTTP 429, `retry_after` set) that retry and fallback
//! understand. With `tokens_per_minute`, the tokens each answer used (its usage) are counted
//! in a sliding minute and a call waits while that count is at the limit.

use std::time::Duration;

use crate::config::Config;
use crate::scope::Scope;
use crate::shared::{SharedState, Unavailable, Window};

/// The keys of the module's table. `requests_per_minute` and `burst_capacity` are the ones
/// the ArcLLM Python library's `[modules.rate_limit]` table has.
pub const KEYS: [&str; 5] =
    ["requests_per_minute", "burst_capacity", "tokens_per_minute", "max_wait_seconds", Scope::KEY];

/// How often a call waiting on `tokens_per_minute` looks again.
pub const TOKENS_RECHECK: Duration = Duration::from_secs(1);

const MINUTE: Window = Window::Sliding(Duration::from_secs(60));

/// The module's settings, read from its table.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub requests_per_minute: f64,
    /// The bucket's capacity: how many calls may go at once after a quiet spell.
    pub burst_capacity: f64,
    pub tokens_per_minute: Option<f64>,
    pub max_wait: Duration,
    pub scope: Scope,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            requests_per_minute: 60.0,
            burst_capacity: 60.0,
            tokens_per_minute: None,
            max_wait: Duration::from_secs(60),
            scope: Scope::Provider,
        }
    }
}

/// Whether a call may go.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// It may, after waiting `waited`.
    Admitted { waited: Duration },
    /// It may not within `max_wait_seconds`: a token is due in `retry_after`. `limit` names
    /// the key that was binding.
    Limited { waited: Duration, retry_after: Duration, limit: &'static str },
    /// The shared state could not be read and the host fails closed.
    Unavailable(String),
}

impl Policy {
    /// Reads the module's table (JSON text); an unknown key or a bad value is an error
    /// naming the key.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let config = Config::parse(text)?;
        config.deny_unknown(&KEYS)?;
        let defaults = Policy::default();
        let requests_per_minute =
            config.positive_f64("requests_per_minute")?.unwrap_or(defaults.requests_per_minute);
        let burst_capacity = config.positive_f64("burst_capacity")?.unwrap_or(requests_per_minute);
        if burst_capacity < 1.0 {
            return Err(format!(
                "burst_capacity must be at least 1 (a bucket that cannot hold one request never lets one through), got {burst_capacity}"
            ));
        }
        let max_wait = match config.get("max_wait_seconds") {
            None => defaults.max_wait,
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .and_then(|x| Duration::try_from_secs_f64(x).ok())
                .ok_or_else(|| format!("max_wait_seconds must be a number >= 0, got {v}"))?,
        };
        let scope = Scope::from_config(&config, defaults.scope)?;
        Ok(Policy {
            requests_per_minute,
            burst_capacity,
            tokens_per_minute: config.positive_f64("tokens_per_minute")?,
            max_wait,
            scope,
        })
    }

    /// The bucket's key for calls to `provider`'s `model`.
    pub fn key(&self, provider: &str, model: &str) -> String {
        format!("rpm:{}", self.scope.target(provider, model))
    }

    /// Waits (with `sleep`) until the call under `key` may go, or says why it may not.
    pub fn admit(
        &self,
        state: &mut impl SharedState,
        key: &str,
        mut sleep: impl FnMut(Duration),
    ) -> Admission {
        let refill = self.requests_per_minute / 60.0;
        // Named only when it is counted: the common call makes no key at all.
        let tokens = self.tokens_per_minute.map(|limit| (limit, tokens_key(key)));
        let mut waited = Duration::ZERO;
        loop {
            // How long the binding limit asks to wait, and its key; or the call goes.
            let (wait, limit) = match at_token_limit(state, tokens.as_ref()) {
                Err(Unavailable(why)) => return Admission::Unavailable(why),
                Ok(true) => (TOKENS_RECHECK, "tokens_per_minute"),
                Ok(false) => match state.take(key, self.burst_capacity, refill, 1.0) {
                    Err(Unavailable(why)) => return Admission::Unavailable(why),
                    Ok(taken) if taken.granted => return Admission::Admitted { waited },
                    Ok(taken) => (taken.wait.max(Duration::from_millis(1)), "requests_per_minute"),
                },
            };
            if waited + wait > self.max_wait {
                return Admission::Limited { waited, retry_after: wait, limit };
            }
            sleep(wait);
            waited += wait;
        }
    }

    /// Counts the tokens an answer used against `tokens_per_minute` (nothing without it).
    pub fn record_usage(
        &self,
        state: &mut impl SharedState,
        key: &str,
        tokens: u64,
    ) -> Result<(), Unavailable> {
        if self.tokens_per_minute.is_some() && tokens > 0 {
            state.incr(&tokens_key(key), MINUTE, tokens)?;
        }
        Ok(())
    }
}

/// Whether the tokens counted in the last minute under `tokens` (the limit and its
/// counter's key) are at the limit; never without `tokens_per_minute`.
fn at_token_limit(state: &mut impl SharedState, tokens: Option<&(f64, String)>) -> Result<bool, Unavailable> {
    match tokens {
        Some((limit, key)) => Ok(state.read(key, MINUTE)? as f64 >= *limit),
        None => Ok(false),
    }
}

fn tokens_key(key: &str) -> String {
    format!("tpm:{}", key.strip_prefix("rpm:").unwrap_or(key))
}
