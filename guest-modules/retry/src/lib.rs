//! The retry module: re-sends a failed invoke with exponential backoff and jitter.
//!
//! It decides and sleeps inside the sandbox: the wait runs on the WASI monotonic clock and
//! the jitter comes from WASI random, both granted (and, in tests, controlled) by the host.
//!
//! Rules (the seed's, plus what the official SDKs and Envoy add):
//! - retried: `api` errors whose status is in `retryable_status_codes`, and every
//!   `connection` and `timeout` error;
//! - never retried: 400, 401 and 403, statuses outside the set, `config`, `parse` and
//!   `module` errors;
//! - the vendor's `x-should-retry` verdict overrides the status rule (but never makes
//!   400/401/403 retryable);
//! - wait before retry n (from 0): `min(retry_after, max_wait)` when the error carries
//!   one, else `b = base * 2^n` and `min(b + uniform(0, b), max_wait)`;
//! - `max_elapsed_seconds` bounds all attempts together: no wait starts that would end
//!   past it;
//! - when attempts run out, the last error is returned unchanged.

use std::sync::OnceLock;
use std::time::Duration;

use arcllm_module_sdk::config::Config;
use arcllm_module_sdk::time::{now_ns, random_unit, sleep};
use arcllm_module_sdk::{
    export, inner, log, Error, ErrorKind, Guest, Level, ModuleGuest, RequestHandle, Response,
};

/// Statuses that a retry cannot fix: the request itself was rejected.
const NEVER_RETRIED: [u16; 3] = [400, 401, 403];

#[derive(Debug, Clone)]
struct Settings {
    max_retries: u32,
    backoff_base: f64,
    max_wait: f64,
    retryable: Vec<u16>,
    max_elapsed: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_retries: 3,
            backoff_base: 1.0,
            max_wait: 60.0,
            retryable: vec![429, 500, 502, 503, 529],
            max_elapsed: None,
        }
    }
}

impl Settings {
    fn from_json(text: &str) -> Result<Self, String> {
        let config = Config::parse(text)?;
        config.deny_unknown(&[
            "max_retries",
            "backoff_base_seconds",
            "max_wait_seconds",
            "retryable_status_codes",
            "max_elapsed_seconds",
        ])?;
        let defaults = Settings::default();
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
        Ok(Settings {
            max_retries: config.u32("max_retries", defaults.max_retries)?,
            backoff_base: config.positive_f64("backoff_base_seconds")?.unwrap_or(defaults.backoff_base),
            max_wait: config.positive_f64("max_wait_seconds")?.unwrap_or(defaults.max_wait),
            retryable,
            max_elapsed: config.positive_f64("max_elapsed_seconds")?,
        })
    }

    fn is_retryable(&self, error: &Error) -> bool {
        match error.kind {
            ErrorKind::Api => {
                let status = error.status.unwrap_or(0);
                if NEVER_RETRIED.contains(&status) {
                    return false;
                }
                error.should_retry.unwrap_or_else(|| self.retryable.contains(&status))
            }
            ErrorKind::Connection | ErrorKind::Timeout => error.should_retry.unwrap_or(true),
            ErrorKind::Config | ErrorKind::Parse | ErrorKind::Module => false,
        }
    }

    /// Seconds to wait before retry number `n` (0-based).
    fn wait_seconds(&self, n: u32, error: &Error) -> f64 {
        if let Some(ms) = error.retry_after_ms {
            return (ms as f64 / 1000.0).min(self.max_wait);
        }
        let b = self.backoff_base * 2f64.powi(n.min(1023) as i32);
        (b + random_unit() * b).min(self.max_wait)
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(Settings::default)
}

struct Retry;

impl Guest for Retry {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let s = settings();
        let attempts = s.max_retries + 1;
        let started = now_ns();
        let mut attempt = 1;
        loop {
            let error = match inner::invoke(request) {
                Ok(mut response) => {
                    response.add_metadata("arcllm.retry.attempts", attempt);
                    return Ok(response);
                }
                Err(error) => error,
            };
            if !s.is_retryable(&error) {
                return Err(error);
            }
            if attempt == attempts {
                log(Level::Error, &format!("giving up after {attempts} attempts: {}", error.summary()));
                return Err(error);
            }
            let wait = s.wait_seconds(attempt - 1, &error);
            if let Some(limit) = s.max_elapsed {
                let elapsed = (now_ns() - started) as f64 / 1e9;
                if elapsed + wait > limit {
                    log(
                        Level::Error,
                        &format!(
                            "giving up after {attempt} of {attempts} attempts: waiting {wait:.3}s would pass \
                             max_elapsed_seconds ({limit}s, {elapsed:.3}s used): {}",
                            error.summary()
                        ),
                    );
                    return Err(error);
                }
            }
            log(
                Level::Warn,
                &format!(
                    "attempt {attempt} of {attempts} failed ({}); retrying in {wait:.3}s",
                    error.summary()
                ),
            );
            sleep(Duration::from_secs_f64(wait));
            attempt += 1;
        }
    }
    arcllm_module_sdk::delegate_to_inner!();
}

impl ModuleGuest for Retry {
    fn configure(config: String) -> Result<(), String> {
        let parsed = Settings::from_json(&config)?;
        let _ = SETTINGS.set(parsed);
        Ok(())
    }
}

export!(Retry);
