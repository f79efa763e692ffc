//! The in-process backend: state shared by every model of one process.
//!
//! Keys are spread over shards, each a small map behind its own mutex (held only for the
//! arithmetic of one operation: never across an await, never while a module runs). A
//! key's hash is computed once per operation from its parts; the map is keyed by that hash
//! and each entry keeps its full key to compare, so a lookup allocates nothing and two
//! keys never share state. Only the first operation on a key allocates (to store it).
//! Entries expire when their state is no longer distinguishable from a new one (a bucket
//! full again, a counter whose windows have passed, a value past its time-to-live); the
//! store holds at most `max_keys`, and sweeps expired entries before refusing a new key.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::clock::Clock;
use super::key::StateKey;
use super::ops::{self, Bucket, BucketState, CounterState, Stored, Swap, Take, Window};
use super::StateError;

const SHARDS: usize = 32;

/// Default for [`MemoryBackend::new`]'s `max_keys`.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Shared state in this process's memory.
pub struct MemoryBackend {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    clock: Clock,
    max_keys_per_shard: usize,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").field("clock", &self.clock).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Vec<Entry>, BuildHasherDefault<PreHashed>>,
    len: usize,
}

struct Entry {
    key: Box<[u8]>,
    expires_ns: u64,
    data: Data,
}

enum Data {
    Bucket(BucketState),
    Counter(CounterState),
    Value { bytes: Vec<u8>, set_ns: u64 },
}

/// The map's keys are hashes already.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl MemoryBackend {
    /// A store reading `clock`, holding at most `max_keys` keys.
    pub fn new(clock: Clock, max_keys: usize) -> Self {
        MemoryBackend {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            clock,
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    /// Takes `cost` tokens from the bucket at `key` (created full on first use).
    pub fn take(&self, key: StateKey<'_>, bucket: Bucket, cost: f64) -> Result<Take, StateError> {
        ops::check_key(key.key)?;
        bucket.check(cost)?;
        let now = self.clock.now_ns();
        let ttl = nanos(bucket.refill_time());
        self.update(
            key,
            now,
            || Data::Bucket(BucketState::full(&bucket, now)),
            |entry| {
                entry.expires_ns = now.saturating_add(ttl);
                match &mut entry.data {
                    Data::Bucket(state) => state.take(&bucket, cost, now),
                    _ => unreachable!("a bucket key holds a bucket"),
                }
            },
        )
    }

    /// Adds `by` to the counter at `key` and returns its count in `window`.
    pub fn incr(&self, key: StateKey<'_>, window: Window, by: u64) -> Result<u64, StateError> {
        ops::check_key(key.key)?;
        window.check()?;
        let now = self.clock.now_ns();
        let now_ms = now / 1_000_000;
        let ttl = nanos(window.length).saturating_mul(2);
        let fresh = CounterState { index: now_ms / window.length_ms(), ..CounterState::default() };
        self.update(
            key,
            now,
            || Data::Counter(fresh),
            |entry| {
                entry.expires_ns = now.saturating_add(ttl);
                match &mut entry.data {
                    Data::Counter(state) => {
                        state.roll(&window, now_ms);
                        state.current = state.current.saturating_add(by);
                        state.count(&window, now_ms)
                    }
                    _ => unreachable!("a counter key holds a counter"),
                }
            },
        )
    }

    /// The count of the counter at `key` in `window` (0 for a counter never incremented).
    pub fn read(&self, key: StateKey<'_>, window: Window) -> Result<u64, StateError> {
        ops::check_key(key.key)?;
        window.check()?;
        let now = self.clock.now_ns();
        let now_ms = now / 1_000_000;
        let hash = key.hash_with(&self.hasher);
        let mut shard = self.shard_of(hash);
        Ok(match find(&mut shard, key, hash, now).map(|e| &e.data) {
            Some(Data::Counter(state)) => {
                let mut state = *state;
                state.roll(&window, now_ms);
                state.count(&window, now_ms)
            }
            _ => 0,
        })
    }

    /// The value at `key`, if one is set and alive.
    pub fn get(&self, key: StateKey<'_>) -> Result<Option<Stored>, StateError> {
        ops::check_key(key.key)?;
        let now = self.clock.now_ns();
        let hash = key.hash_with(&self.hasher);
        let mut shard = self.shard_of(hash);
        Ok(stored(find(&mut shard, key, hash, now).map(|e| &e.data), now))
    }

    /// Sets the value at `key` to `new` (`None`: removes it) with time-to-live `ttl`, if
    /// its current value is `expected` (`None`: if there is none).
    pub fn cas(
        &self,
        key: StateKey<'_>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<Swap, StateError> {
        ops::check_key(key.key)?;
        ops::check_value(new, ttl)?;
        let now = self.clock.now_ns();
        let hash = key.hash_with(&self.hasher);
        let mut shard = self.shard_of(hash);
        let current = find(&mut shard, key, hash, now).map(|e| &e.data);
        let matched = match (current, expected) {
            (None, None) => true,
            (Some(Data::Value { bytes, .. }), Some(expected)) => bytes.as_slice() == expected,
            _ => false,
        };
        if !matched {
            return Ok(Swap { swapped: false, current: stored(current, now) });
        }
        match new {
            None => remove(&mut shard, key, hash),
            Some(bytes) => {
                let data = Data::Value { bytes: bytes.to_vec(), set_ns: now };
                let expires_ns = now.saturating_add(nanos(ttl));
                match find(&mut shard, key, hash, now) {
                    Some(entry) => {
                        entry.data = data;
                        entry.expires_ns = expires_ns;
                    }
                    None => self.insert(
                        &mut shard,
                        key,
                        hash,
                        now,
                        Entry { key: key.to_owned_bytes(), expires_ns, data },
                    )?,
                }
            }
        }
        Ok(Swap { swapped: true, current: None })
    }

    /// Forgets whatever is at `key`.
    pub fn delete(&self, key: StateKey<'_>) -> Result<(), StateError> {
        ops::check_key(key.key)?;
        let hash = key.hash_with(&self.hasher);
        remove(&mut self.shard_of(hash), key, hash);
        Ok(())
    }

    /// How many keys the store holds (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len).sum()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(&self, hash: u64) -> MutexGuard<'_, Shard> {
        lock(&self.shards[(hash as usize) % SHARDS])
    }

    /// Runs `f` on the live entry at `key` under its shard's lock, first making one with
    /// `make`'s data when there is none.
    fn update<R>(
        &self,
        key: StateKey<'_>,
        now: u64,
        make: impl FnOnce() -> Data,
        f: impl FnOnce(&mut Entry) -> R,
    ) -> Result<R, StateError> {
        let hash = key.hash_with(&self.hasher);
        let mut shard = self.shard_of(hash);
        if find(&mut shard, key, hash, now).is_none() {
            let entry = Entry { key: key.to_owned_bytes(), expires_ns: u64::MAX, data: make() };
            self.insert(&mut shard, key, hash, now, entry)?;
        }
        let entry = find(&mut shard, key, hash, now).expect("present: found or just inserted");
        Ok(f(entry))
    }

    fn insert(
        &self,
        shard: &mut Shard,
        key: StateKey<'_>,
        hash: u64,
        now: u64,
        entry: Entry,
    ) -> Result<(), StateError> {
        if shard.len >= self.max_keys_per_shard {
            sweep(shard, now);
            if shard.len >= self.max_keys_per_shard {
                return Err(StateError::unavailable(
                    "memory",
                    format!(
                        "the in-process store is full ({} keys per shard, [state] max_keys); cannot add a key for module `{}`",
                        self.max_keys_per_shard, key.module
                    ),
                ));
            }
        }
        shard.map.entry(hash).or_default().push(entry);
        shard.len += 1;
        Ok(())
    }
}

fn stored(data: Option<&Data>, now: u64) -> Option<Stored> {
    match data {
        Some(Data::Value { bytes, set_ns }) => {
            Some(Stored { value: bytes.clone(), age: Duration::from_nanos(now.saturating_sub(*set_ns)) })
        }
        _ => None,
    }
}

/// The live entry for `key`; an expired one is removed on the way.
fn find<'a>(shard: &'a mut Shard, key: StateKey<'_>, hash: u64, now: u64) -> Option<&'a mut Entry> {
    let (index, expired) = {
        let bucket = shard.map.get_mut(&hash)?;
        let index = bucket.iter().position(|e| key.matches(&e.key))?;
        (index, bucket[index].expires_ns <= now)
    };
    if expired {
        remove(shard, key, hash);
        return None;
    }
    shard.map.get_mut(&hash)?.get_mut(index)
}

fn remove(shard: &mut Shard, key: StateKey<'_>, hash: u64) {
    if let Some(bucket) = shard.map.get_mut(&hash) {
        if let Some(index) = bucket.iter().position(|e| key.matches(&e.key)) {
            bucket.swap_remove(index);
            shard.len -= 1;
        }
        if bucket.is_empty() {
            shard.map.remove(&hash);
        }
    }
}

fn sweep(shard: &mut Shard, now: u64) {
    let mut removed = 0;
    shard.map.retain(|_, bucket| {
        let before = bucket.len();
        bucket.retain(|e| e.expires_ns > now);
        removed += before - bucket.len();
        !bucket.is_empty()
    });
    shard.len -= removed;
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A poisoned shard is still consistent: every operation leaves it whole before anything
/// that could panic.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
