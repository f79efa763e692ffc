//! The Redis backend: state shared by every replica that points at the same server.
//!
//! One multiplexed connection ([`redis::aio::ConnectionManager`]) serves every call of the
//! process and reconnects in the background when it breaks. Each operation is one
//! `EVALSHA` of a script in `scripts.rs` (the script is loaded on the first `NOSCRIPT`),
//! bounded by the operation timeout. After a failure the backend answers "unavailable" at
//! once for [`RECHECK_AFTER`] instead of making every call wait for the timeout again; the
//! next operation after that tries the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::key::StateKey;
use super::ops::{self, Bucket, Stored, Swap, Take, Window, WindowKind};
use super::scripts;
use super::StateError;

/// How long the backend answers "unavailable" without trying, after a failure.
pub const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// How a Redis backend connects and how long it waits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RedisSettings {
    /// `redis://host:port/db` (or `rediss://`, not supported by this build).
    pub url: String,
    /// Prepended to every key (`{prefix}:…`), so that deployments can share a server.
    pub key_prefix: String,
    /// Longest one operation may take, round trip included.
    pub timeout: Duration,
    /// Longest connecting may take.
    pub connect_timeout: Duration,
}

/// Shared state in a Redis server.
pub struct RedisBackend {
    connection: ConnectionManager,
    settings: RedisSettings,
    take: Script,
    counter: Script,
    get: Script,
    cas: Script,
    /// Milliseconds since `origin` before which operations fail without trying.
    down_until_ms: AtomicU64,
    origin: Instant,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: only the prefix is shown.
        f.debug_struct("RedisBackend").field("key_prefix", &self.settings.key_prefix).finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A backend for `settings`. Connects lazily: a server that is down now makes the first
    /// operations unavailable, not this call fail. Must be called within a tokio runtime.
    pub fn connect(settings: RedisSettings) -> Result<Self, StateError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StateError::Config(
                "the Redis backend must be created within a tokio runtime".into(),
            ));
        }
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| StateError::Config(format!("the Redis URL is not valid: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = client
            .get_connection_manager_lazy(config)
            .map_err(|e| StateError::Config(format!("cannot set up the Redis connection: {e}")))?;
        Ok(RedisBackend {
            connection,
            settings,
            take: Script::new(scripts::TAKE),
            counter: Script::new(scripts::COUNTER),
            get: Script::new(scripts::GET),
            cas: Script::new(scripts::CAS),
            down_until_ms: AtomicU64::new(0),
            origin: Instant::now(),
        })
    }

    /// Takes `cost` tokens from the bucket at `key`.
    pub async fn take(&self, key: StateKey<'_>, bucket: Bucket, cost: f64) -> Result<Take, StateError> {
        ops::check_key(key.key)?;
        bucket.check(cost)?;
        let ttl_ms = ms(bucket.refill_time()) + 1000;
        let mut call = self.take.key(key.redis_key(&self.settings.key_prefix));
        call.arg(bucket.capacity).arg(bucket.refill_per_second).arg(cost).arg(ttl_ms);
        let value = self.run(call.invoke_async(&mut self.connection.clone())).await?;
        match value {
            Value::Array(items) if items.len() == 3 => {
                let granted = int(&items[0])? == 1;
                let wait = Duration::from_millis(int(&items[1])?.max(0) as u64);
                let remaining = text(&items[2])?.parse::<f64>().map_err(|_| malformed())?;
                Ok(Take { granted, wait: if granted { Duration::ZERO } else { wait }, remaining })
            }
            _ => Err(malformed()),
        }
    }

    /// Adds `by` to the counter at `key` (0: reads it) and returns its count in `window`.
    pub async fn incr(&self, key: StateKey<'_>, window: Window, by: u64) -> Result<u64, StateError> {
        ops::check_key(key.key)?;
        window.check()?;
        let sliding = if window.kind == WindowKind::Sliding { "1" } else { "0" };
        let mut call = self.counter.key(key.redis_key(&self.settings.key_prefix));
        call.arg(window.length_ms()).arg(sliding).arg(by);
        let value = self.run(call.invoke_async(&mut self.connection.clone())).await?;
        Ok(int(&value)?.max(0) as u64)
    }

    /// The count of the counter at `key` in `window`.
    pub async fn read(&self, key: StateKey<'_>, window: Window) -> Result<u64, StateError> {
        self.incr(key, window, 0).await
    }

    /// The value at `key`, if one is set and alive.
    pub async fn get(&self, key: StateKey<'_>) -> Result<Option<Stored>, StateError> {
        ops::check_key(key.key)?;
        let call = self.get.key(key.redis_key(&self.settings.key_prefix));
        let value = self.run(call.invoke_async(&mut self.connection.clone())).await?;
        match value {
            Value::Nil => Ok(None),
            Value::Array(items) if items.len() == 2 => Ok(Some(stored(&items[0], &items[1])?)),
            _ => Err(malformed()),
        }
    }

    /// Sets the value at `key` to `new` (`None`: removes it) if it is `expected`.
    pub async fn cas(
        &self,
        key: StateKey<'_>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<Swap, StateError> {
        ops::check_key(key.key)?;
        ops::check_value(new, ttl)?;
        let flag = |present: bool| if present { "1" } else { "0" };
        let mut call = self.cas.key(key.redis_key(&self.settings.key_prefix));
        call.arg(flag(expected.is_some()))
            .arg(expected.unwrap_or_default())
            .arg(flag(new.is_some()))
            .arg(new.unwrap_or_default())
            .arg(ms(ttl));
        let value = self.run(call.invoke_async(&mut self.connection.clone())).await?;
        match value {
            Value::Array(items) => match items.as_slice() {
                [flag] => Ok(Swap { swapped: int(flag)? == 1, current: None }),
                [_, value, age] => Ok(Swap { swapped: false, current: Some(stored(value, age)?) }),
                _ => Err(malformed()),
            },
            _ => Err(malformed()),
        }
    }

    /// Forgets whatever is at `key`.
    pub async fn delete(&self, key: StateKey<'_>) -> Result<(), StateError> {
        ops::check_key(key.key)?;
        let mut command = redis::cmd("DEL");
        command.arg(key.redis_key(&self.settings.key_prefix));
        let mut connection = self.connection.clone();
        self.run(async move { command.query_async::<Value>(&mut connection).await }).await?;
        Ok(())
    }

    /// Runs one round trip within the timeout; fails at once while the server is known to
    /// be down.
    async fn run(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<Value>>,
    ) -> Result<Value, StateError> {
        let now = self.elapsed_ms();
        let down_until = self.down_until_ms.load(Ordering::Relaxed);
        if now < down_until {
            return Err(StateError::unavailable(
                "redis",
                format!("the server failed less than {} s ago; not retried yet", RECHECK_AFTER.as_secs_f64()),
            ));
        }
        let failed = |reason: String, source: Option<redis::RedisError>| {
            self.down_until_ms.store(self.elapsed_ms() + ms(RECHECK_AFTER), Ordering::Relaxed);
            StateError::Unavailable {
                backend: "redis",
                reason,
                source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            }
        };
        match tokio::time::timeout(self.settings.timeout, call).await {
            Ok(Ok(value)) => {
                self.down_until_ms.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(error)) => Err(failed(format!("{error}"), Some(error))),
            Err(_) => Err(failed(
                format!(
                    "no answer within {} s ([state] timeout_seconds)",
                    self.settings.timeout.as_secs_f64()
                ),
                None,
            )),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        ms(self.origin.elapsed())
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn malformed() -> StateError {
    StateError::unavailable("redis", "the server's answer to a state script was malformed")
}

fn int(value: &Value) -> Result<i64, StateError> {
    match value {
        Value::Int(n) => Ok(*n),
        _ => Err(malformed()),
    }
}

fn text(value: &Value) -> Result<String, StateError> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).map_err(|_| malformed()),
        Value::SimpleString(s) => Ok(s.clone()),
        _ => Err(malformed()),
    }
}

fn stored(value: &Value, age: &Value) -> Result<Stored, StateError> {
    let Value::BulkString(bytes) = value else { return Err(malformed()) };
    Ok(Stored { value: bytes.clone(), age: Duration::from_millis(int(age)?.max(0) as u64) })
}
