//! Shared state for modules: what lets a module decide across calls (a rate limit, a
//! circuit breaker, a retry budget) when each call runs in a store of its own.
//!
//! A small set of atomic operations ([`StateStore`]): take tokens from a bucket, count in a
//! fixed or sliding window, compare-and-set a value with a time-to-live. The host names
//! every key ([`StateKey`]): the module's name and the kind of state around the module's
//! own key, so one module can never read or write another's state. Backends:
//! - in-process ([`MemoryBackend`], the default): shared by every model of the process;
//! - Redis ([`RedisBackend`]): shared by every replica pointed at the same server.
//!
//! config.toml's `[state]` table chooses ([`StateConfig`]), and `on_error` says what an
//! operation answers when the backend cannot ([`OnError`]).

mod clock;
mod error;
mod key;
mod memory;
mod ops;
mod redis;
mod scripts;
mod store;

use std::time::Duration;

pub use clock::{Clock, ManualClock};
pub use error::StateError;
pub use key::StateKey;
pub use memory::{MemoryBackend, DEFAULT_MAX_KEYS};
pub use ops::{
    Bucket, Slot, Stored, Swap, Take, Window, WindowKind, MAX_AMOUNT, MAX_KEY_BYTES, MAX_PERIOD,
    MAX_VALUE_BYTES,
};
pub use redis::{RedisBackend, RedisSettings, RECHECK_AFTER};
pub use store::{StateStore, WARN_EVERY};

/// What an operation answers when the backend cannot (Redis unreachable or too slow, the
/// in-process store full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnError {
    /// The operation succeeds with the answer that lets the call through (a take granted,
    /// a count of 0, no value, a compare-and-set done), and a warning is logged: calls keep
    /// flowing without the shared limits.
    #[default]
    Open,
    /// The operation fails; the built-in modules then refuse the call.
    Closed,
}

/// Which backend, and how it is reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendConfig {
    /// In this process's memory.
    Memory {
        /// Most keys held at once (`[state] max_keys`).
        max_keys: usize,
    },
    /// In a Redis server.
    Redis {
        /// The environment variable holding the server's URL (`[state] url_env`).
        url_env: String,
        /// Prepended to every key (`[state] key_prefix`).
        key_prefix: String,
        /// Longest one operation may take (`[state] timeout_seconds`).
        timeout: Duration,
        /// Longest connecting may take (`[state] connect_timeout_seconds`).
        connect_timeout: Duration,
    },
}

/// config.toml's `[state]` table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StateConfig {
    /// Where the state lives.
    pub backend: BackendConfig,
    /// What operations answer when it cannot be reached.
    pub on_error: OnError,
}

/// Default of `[state] url_env`.
pub const DEFAULT_URL_ENV: &str = "ARCLLM_REDIS_URL";
/// Default of `[state] key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "arcllm";
/// Default of `[state] timeout_seconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default of `[state] connect_timeout_seconds`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { backend: BackendConfig::Memory { max_keys: DEFAULT_MAX_KEYS }, on_error: OnError::Open }
    }
}
