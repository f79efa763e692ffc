//! The clock the in-process backend reads: tokio's (so that under a paused test clock the
//! state agrees with the modules' sleeps, which run on tokio timers), or a manual one that
//! tests move by hand. The Redis backend reads the server's clock instead, so that replicas
//! agree whatever their own clocks say.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the in-process backend reads "now", in nanoseconds since an arbitrary origin.
#[derive(Clone, Debug)]
pub enum Clock {
    /// `tokio::time::Instant`: real time, or the paused and auto-advancing clock of a
    /// `#[tokio::test(start_paused = true)]`.
    Tokio(tokio::time::Instant),
    /// Moved only by [`ManualClock::advance`].
    Manual(ManualClock),
}

impl Default for Clock {
    fn default() -> Self {
        Clock::Tokio(tokio::time::Instant::now())
    }
}

impl Clock {
    /// A clock at 0 that moves only when told; the handle moves it.
    pub fn manual() -> (Clock, ManualClock) {
        let handle = ManualClock(Arc::new(AtomicU64::new(0)));
        (Clock::Manual(handle.clone()), handle)
    }

    /// Nanoseconds since the clock's origin.
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Tokio(origin) => u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::Manual(handle) => handle.0.load(Ordering::Relaxed),
        }
    }
}

/// The handle of a manual [`Clock`].
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(ns, Ordering::Relaxed);
    }
}
