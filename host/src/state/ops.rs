//! The operations a module may perform on shared state, their arguments and answers, and
//! the arithmetic both backends apply (the Redis backend runs the same rules in Lua:
//! `scripts.rs`).

use std::time::Duration;

use super::StateError;

/// Most bytes of a key a module names (the host adds its own namespace around it).
pub const MAX_KEY_BYTES: usize = 256;
/// Most bytes of a value stored with compare-and-set.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Longest window, and longest time-to-live of a value: a day.
pub const MAX_PERIOD: Duration = Duration::from_secs(86_400);
/// Largest bucket capacity, refill rate or cost.
pub const MAX_AMOUNT: f64 = 1e12;

/// Which kind of state a key names. Each kind has its own keys: a counter and a bucket
/// with the same name are two things.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// A token bucket.
    Bucket,
    /// A windowed counter.
    Counter,
    /// A value set by compare-and-set.
    Value,
}

impl Slot {
    /// One letter for the key: `b`, `c`, `v`.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Slot::Bucket => b'b',
            Slot::Counter => b'c',
            Slot::Value => b'v',
        }
    }
}

/// A token bucket's shape: it holds at most `capacity` tokens, starts full, and gains
/// `refill_per_second` tokens a second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Most tokens the bucket holds (the burst).
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

impl Bucket {
    /// Errs unless capacity, rate and `cost` are finite, positive (cost may be 0) and
    /// `cost` fits in the bucket (a cost above capacity could never be granted).
    pub fn check(&self, cost: f64) -> Result<(), StateError> {
        let positive = |x: f64| x.is_finite() && x > 0.0 && x <= MAX_AMOUNT;
        if !positive(self.capacity) || !positive(self.refill_per_second) {
            return Err(StateError::invalid(format!(
                "a bucket needs a capacity and a refill rate in (0, {MAX_AMOUNT}], got {} and {}",
                self.capacity, self.refill_per_second
            )));
        }
        if !(cost.is_finite() && cost >= 0.0 && cost <= self.capacity) {
            return Err(StateError::invalid(format!(
                "a take costs from 0 to the bucket's capacity ({}), got {cost}",
                self.capacity
            )));
        }
        Ok(())
    }

    /// How long an untouched bucket takes to fill up: past it, its state is the same as a
    /// new bucket's, so the backends forget it.
    pub fn refill_time(&self) -> Duration {
        Duration::try_from_secs_f64(self.capacity / self.refill_per_second).unwrap_or(MAX_PERIOD)
    }
}

/// The answer to a token-bucket take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Take {
    /// Whether the tokens were taken.
    pub granted: bool,
    /// When not granted: how long until enough tokens will be there (nothing is reserved:
    /// the caller takes again after waiting, and may find another caller took them).
    pub wait: Duration,
    /// Tokens left in the bucket after the take.
    pub remaining: f64,
}

impl Take {
    /// What a take answers when the backend is down and `on_error = "open"`.
    pub(crate) fn granted_blind() -> Self {
        Take { granted: true, wait: Duration::ZERO, remaining: 0.0 }
    }
}

/// How a counter counts over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Counts within aligned windows (`[k·length, (k+1)·length)`); resets at each boundary.
    Fixed,
    /// The current fixed window plus the previous one weighted by how much of it still
    /// lies within `length` of now: a sliding count in constant memory.
    Sliding,
}

/// A counter's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// How long the window is.
    pub length: Duration,
    /// Fixed or sliding.
    pub kind: WindowKind,
}

impl Window {
    /// Errs unless the length is from 1 ms to [`MAX_PERIOD`].
    pub fn check(&self) -> Result<(), StateError> {
        if self.length < Duration::from_millis(1) || self.length > MAX_PERIOD {
            return Err(StateError::invalid(format!(
                "a window lasts from 1 ms to {} s, got {:?}",
                MAX_PERIOD.as_secs(),
                self.length
            )));
        }
        Ok(())
    }

    pub(crate) fn length_ms(&self) -> u64 {
        u64::try_from(self.length.as_millis()).unwrap_or(u64::MAX).max(1)
    }
}

/// A value and how long ago it was set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The bytes.
    pub value: Vec<u8>,
    /// Time since it was set (by the backend's clock: the Redis server's, for Redis).
    pub age: Duration,
}

/// The answer to a compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swap {
    /// Whether the value was replaced.
    pub swapped: bool,
    /// When not swapped: the value that did not match (`None`: there was none).
    pub current: Option<Stored>,
}

/// Checks a key a module names.
pub(crate) fn check_key(key: &[u8]) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StateError::invalid(format!("a key has 1 to {MAX_KEY_BYTES} bytes, got {}", key.len())));
    }
    Ok(())
}

/// Checks a value and its time-to-live.
pub(crate) fn check_value(value: Option<&[u8]>, ttl: Duration) -> Result<(), StateError> {
    if let Some(value) = value.filter(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(StateError::invalid(format!(
            "a value has at most {MAX_VALUE_BYTES} bytes, got {}",
            value.len()
        )));
    }
    if ttl < Duration::from_millis(1) || ttl > MAX_PERIOD {
        return Err(StateError::invalid(format!(
            "a time-to-live lasts from 1 ms to {} s, got {ttl:?}",
            MAX_PERIOD.as_secs()
        )));
    }
    Ok(())
}

/// A token bucket's state: tokens at a moment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BucketState {
    pub(crate) tokens: f64,
    pub(crate) at_ns: u64,
}

impl BucketState {
    /// A full bucket at `now`.
    pub(crate) fn full(bucket: &Bucket, now_ns: u64) -> Self {
        BucketState { tokens: bucket.capacity, at_ns: now_ns }
    }

    /// Refills to `now`, then takes `cost` if there is enough.
    pub(crate) fn take(&mut self, bucket: &Bucket, cost: f64, now_ns: u64) -> Take {
        if now_ns > self.at_ns {
            let gained = (now_ns - self.at_ns) as f64 / 1e9 * bucket.refill_per_second;
            self.tokens = (self.tokens + gained).min(bucket.capacity);
            self.at_ns = now_ns;
        }
        // A bucket whose shape shrank since it was filled holds no more than it may.
        self.tokens = self.tokens.min(bucket.capacity);
        if self.tokens >= cost {
            self.tokens -= cost;
            return Take { granted: true, wait: Duration::ZERO, remaining: self.tokens };
        }
        let seconds = (cost - self.tokens) / bucket.refill_per_second;
        // Rounded up to the next millisecond, so that waiting that long always suffices.
        let wait = Duration::from_millis((seconds * 1000.0).ceil() as u64);
        Take { granted: false, wait, remaining: self.tokens }
    }
}

/// A windowed counter's state: the index of the current fixed window, its count, and the
/// previous window's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CounterState {
    pub(crate) index: u64,
    pub(crate) current: u64,
    pub(crate) previous: u64,
}

impl CounterState {
    /// Moves to the window holding `now`.
    pub(crate) fn roll(&mut self, window: &Window, now_ms: u64) {
        let index = now_ms / window.length_ms();
        if index == self.index {
            return;
        }
        self.previous = if index == self.index + 1 { self.current } else { 0 };
        self.current = 0;
        self.index = index;
    }

    /// The count at `now` (after [`roll`](Self::roll)).
    pub(crate) fn count(&self, window: &Window, now_ms: u64) -> u64 {
        match window.kind {
            WindowKind::Fixed => self.current,
            WindowKind::Sliding => {
                let length = window.length_ms();
                let into = now_ms.saturating_sub(self.index.saturating_mul(length));
                let weight = 1.0 - (into as f64 / length as f64).min(1.0);
                self.current.saturating_add((self.previous as f64 * weight).floor() as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_and_says_how_long_to_wait() {
        let bucket = Bucket { capacity: 2.0, refill_per_second: 1.0 };
        let mut state = BucketState::full(&bucket, 0);
        assert!(state.take(&bucket, 1.0, 0).granted);
        assert!(state.take(&bucket, 1.0, 0).granted);
        let denied = state.take(&bucket, 1.0, 250_000_000);
        assert_eq!((denied.granted, denied.wait), (false, Duration::from_millis(750)));
        assert!(state.take(&bucket, 1.0, 1_000_000_000).granted);
        // Never above capacity, however long it rests.
        assert_eq!(state.take(&bucket, 0.0, 100_000_000_000).remaining, 2.0);
    }

    #[test]
    fn a_sliding_count_weights_the_previous_window_by_what_is_left_of_it() {
        let window = Window { length: Duration::from_secs(10), kind: WindowKind::Sliding };
        let mut state = CounterState::default();
        state.roll(&window, 5_000);
        state.current = 10;
        state.roll(&window, 12_500);
        state.current = 2;
        // 2.5 s into the window: 75% of the previous 10 still counts.
        assert_eq!(state.count(&window, 12_500), 2 + 7);
        state.roll(&window, 35_000);
        assert_eq!(state.count(&window, 35_000), 0);
        let fixed = Window { kind: WindowKind::Fixed, ..window };
        let mut state = CounterState { index: 1, current: 4, previous: 9 };
        state.roll(&fixed, 15_000);
        assert_eq!(state.count(&fixed, 15_000), 4);
    }

    #[test]
    fn arguments_out_of_range_are_refused() {
        let bucket = Bucket { capacity: 5.0, refill_per_second: 1.0 };
        assert!(bucket.check(6.0).is_err() && bucket.check(f64::NAN).is_err() && bucket.check(5.0).is_ok());
        assert!(Bucket { capacity: 0.0, ..bucket }.check(0.0).is_err());
        assert!(Window { length: Duration::ZERO, kind: WindowKind::Fixed }.check().is_err());
        assert!(check_key(b"").is_err() && check_key(&[b'k'; MAX_KEY_BYTES + 1]).is_err());
        assert!(check_value(Some(&[0; MAX_VALUE_BYTES + 1]), Duration::from_secs(1)).is_err());
        assert!(check_value(None, Duration::ZERO).is_err());
    }
}
