//! [`StateStore`]: a backend, and what happens when it cannot answer.
//!
//! With `on_error = "open"` (the default) an operation the backend cannot serve succeeds
//! anyway, with the answer that lets the call through: a take is granted, a counter reads
//! 0, a value is absent, a compare-and-set succeeds, a delete is done. Traffic keeps
//! flowing without the shared limits while the backend is down. With `on_error = "closed"`
//! the operation fails with [`StateError::Unavailable`] and each module decides (the
//! built-ins refuse the call). Either way a warning is logged, at most one per
//! [`WARN_EVERY`] per store, saying how many were held back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clock::Clock;
use super::key::StateKey;
use super::memory::MemoryBackend;
use super::ops::{Bucket, Stored, Swap, Take, Window};
use super::redis::{RedisBackend, RedisSettings};
use super::{BackendConfig, OnError, StateConfig, StateError};

/// At most one warning about an unavailable backend per this period, per store.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Shared state for modules: one per process (or per configuration), shared by every model
/// built with it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StateStore {
    inner: Arc<Inner>,
    on_error: OnError,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    warnings: WarnLimiter,
}

#[derive(Debug)]
enum Backend {
    Memory(MemoryBackend),
    Redis(RedisBackend),
}

impl StateStore {
    /// An in-process store reading `clock`, holding at most `max_keys` keys.
    pub fn memory(clock: Clock, max_keys: usize) -> Self {
        Self::new(Backend::Memory(MemoryBackend::new(clock, max_keys)), OnError::default())
    }

    /// A store in the Redis server `settings` names (connected lazily; within a tokio
    /// runtime).
    pub fn redis(settings: RedisSettings) -> Result<Self, StateError> {
        Ok(Self::new(Backend::Redis(RedisBackend::connect(settings)?), OnError::default()))
    }

    /// The store `config` describes; a Redis URL is read from its environment variable now.
    pub fn from_config(config: &StateConfig) -> Result<Self, StateError> {
        let store = match &config.backend {
            BackendConfig::Memory { max_keys } => Self::memory(Clock::default(), *max_keys),
            BackendConfig::Redis { url_env, key_prefix, timeout, connect_timeout } => {
                let url = std::env::var(url_env).ok().filter(|url| !url.trim().is_empty()).ok_or_else(|| {
                    StateError::Config(format!(
                        "backend = \"redis\" reads the server's URL from ${url_env} (url_env), which is not set"
                    ))
                })?;
                Self::redis(RedisSettings {
                    url,
                    key_prefix: key_prefix.clone(),
                    timeout: *timeout,
                    connect_timeout: *connect_timeout,
                })?
            }
        };
        Ok(store.with_on_error(config.on_error))
    }

    /// The process-wide in-process store with the default settings: what a stack uses
    /// unless given another.
    pub fn process_default() -> Self {
        static DEFAULT: std::sync::OnceLock<StateStore> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(|| Self::memory(Clock::default(), super::DEFAULT_MAX_KEYS)).clone()
    }

    /// The process-wide store for `config`: every model built with an equal `[state]` table
    /// shares one (and so one in-process map, or one Redis connection).
    pub fn shared(config: &StateConfig) -> Result<Self, StateError> {
        if *config == StateConfig::default() {
            return Ok(Self::process_default());
        }
        static SHARED: std::sync::Mutex<Vec<(StateConfig, StateStore)>> = std::sync::Mutex::new(Vec::new());
        let mut shared = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, store)) = shared.iter().find(|(c, _)| c == config) {
            return Ok(store.clone());
        }
        let store = Self::from_config(config)?;
        shared.push((config.clone(), store.clone()));
        Ok(store)
    }

    /// The same backend (and state), answering its failures as `on_error` says.
    pub fn with_on_error(self, on_error: OnError) -> Self {
        StateStore { on_error, ..self }
    }

    fn new(backend: Backend, on_error: OnError) -> Self {
        StateStore { inner: Arc::new(Inner { backend, warnings: WarnLimiter::default() }), on_error }
    }

    /// What the store answers when its backend cannot.
    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    /// `memory` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// Takes `cost` tokens from the bucket at `key`.
    pub async fn take(&self, key: StateKey<'_>, bucket: Bucket, cost: f64) -> Result<Take, StateError> {
        let result = match &self.inner.backend {
            Backend::Memory(m) => m.take(key, bucket, cost),
            Backend::Redis(r) => r.take(key, bucket, cost).await,
        };
        self.guard(key, "take", result, Take::granted_blind)
    }

    /// Adds `by` to the counter at `key`; its count in `window` after.
    pub async fn incr(&self, key: StateKey<'_>, window: Window, by: u64) -> Result<u64, StateError> {
        let result = match &self.inner.backend {
            Backend::Memory(m) => m.incr(key, window, by),
            Backend::Redis(r) => r.incr(key, window, by).await,
        };
        self.guard(key, "incr", result, || 0)
    }

    /// The count of the counter at `key` in `window`.
    pub async fn read(&self, key: StateKey<'_>, window: Window) -> Result<u64, StateError> {
        let result = match &self.inner.backend {
            Backend::Memory(m) => m.read(key, window),
            Backend::Redis(r) => r.read(key, window).await,
        };
        self.guard(key, "read", result, || 0)
    }

    /// The value at `key`.
    pub async fn get(&self, key: StateKey<'_>) -> Result<Option<Stored>, StateError> {
        let result = match &self.inner.backend {
            Backend::Memory(m) => m.get(key),
            Backend::Redis(r) => r.get(key).await,
        };
        self.guard(key, "get", result, || None)
    }

    /// Sets the value at `key` to `new` (`None`: removes it) if it is `expected`.
    pub async fn cas(
        &self,
        key: StateKey<'_>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<Swap, StateError> {
        let result = match &self.inner.backend {
            Backend::Memory(m) => m.cas(key, expected, new, ttl),
            Backend::Redis(r) => r.cas(key, expected, new, ttl).await,
        };
        self.guard(key, "cas", result, || Swap { swapped: true, current: None })
    }

    /// Forgets whatever is at `key`.
    pub async fn delete(&self, key: StateKey<'_>) -> Result<(), StateError> {
        let result = match &self.inner.backend {
            Backend::Memory(m) => m.delete(key),
            Backend::Redis(r) => r.delete(key).await,
        };
        self.guard(key, "delete", result, || ())
    }

    /// The in-process backend, for callers that run its operations synchronously (the
    /// modules' policy tests); `None` for Redis.
    pub fn as_memory(&self) -> Option<&MemoryBackend> {
        match &self.inner.backend {
            Backend::Memory(m) => Some(m),
            Backend::Redis(_) => None,
        }
    }

    fn guard<T>(
        &self,
        key: StateKey<'_>,
        op: &str,
        result: Result<T, StateError>,
        open: impl FnOnce() -> T,
    ) -> Result<T, StateError> {
        let error = match result {
            Err(error) if error.is_unavailable() => error,
            other => return other,
        };
        if let Some(held_back) = self.inner.warnings.allow() {
            let answer = match self.on_error {
                OnError::Open => "answering as if allowed (on_error = \"open\")",
                OnError::Closed => "failing the operation (on_error = \"closed\")",
            };
            tracing::warn!(
                module = %key.module,
                "shared state: `{op}` for module `{}` failed: {error}; {answer}{}",
                key.module,
                if held_back > 0 { format!(" ({held_back} similar warnings held back)") } else { String::new() }
            );
        }
        match self.on_error {
            OnError::Open => Ok(open()),
            OnError::Closed => Err(error),
        }
    }
}

/// Lets one warning through per [`WARN_EVERY`], counting the others.
#[derive(Debug)]
struct WarnLimiter {
    origin: Instant,
    /// Milliseconds since `origin` of the last warning let through, plus one (0: none yet).
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl Default for WarnLimiter {
    fn default() -> Self {
        WarnLimiter { origin: Instant::now(), last_ms: AtomicU64::new(0), held_back: AtomicU64::new(0) }
    }
}

impl WarnLimiter {
    /// `Some(n)` when a warning may be logged now (`n` held back since the last one).
    fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let every = WARN_EVERY.as_millis() as u64;
        if (last == 0 || now >= last + every)
            && self.last_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}
