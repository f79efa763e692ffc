//! Sleeps that end within tens of microseconds of their deadline: one thread keeps the
//! pending deadlines in a heap and waits on a condition variable until the earliest
//! (`Condvar::wait_timeout` sleeps with nanosecond resolution, where tokio's timer wheel
//! has millisecond ticks), then wakes the sleeping task through a oneshot channel.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A deadline and the task waiting for it. Ordered by deadline only.
struct Pending(Instant, oneshot::Sender<()>);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

struct Timer {
    pending: Mutex<BinaryHeap<Reverse<Pending>>>,
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer =
            Box::leak(Box::new(Timer { pending: Mutex::new(BinaryHeap::new()), changed: Condvar::new() }));
        std::thread::Builder::new()
            .name("mock-timer".into())
            .spawn(move || timer.run())
            .expect("the mock vendor could not start its timer thread");
        timer
    })
}

impl Timer {
    fn run(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            while pending.peek().is_some_and(|Reverse(p)| p.0 <= now) {
                let Reverse(Pending(_, wake)) = pending.pop().expect("peeked");
                // The sleeper may be gone (its request was cancelled): nothing to wake.
                let _ = wake.send(());
            }
            pending = match pending.peek() {
                None => self.changed.wait(pending).unwrap_or_else(|e| e.into_inner()),
                Some(Reverse(next)) => {
                    let wait = next.0.saturating_duration_since(now);
                    self.changed.wait_timeout(pending, wait).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }
}

/// Waits `duration`, ending within tens of microseconds after it (tokio's `sleep` may end up
/// to a millisecond late).
#[allow(dead_code)] // not every binary including this file sleeps by duration
pub async fn sleep(duration: Duration) {
    sleep_until(Instant::now() + duration).await
}

/// Waits until `deadline`, returning at once if it has passed.
pub async fn sleep_until(deadline: Instant) {
    if deadline <= Instant::now() {
        return;
    }
    let (wake, woken) = oneshot::channel();
    let timer = timer();
    timer.pending.lock().unwrap_or_else(|e| e.into_inner()).push(Reverse(Pending(deadline, wake)));
    timer.changed.notify_one();
    // The timer thread never drops a sender without sending, and lives as long as the process.
    let _ = woken.await;
}
