//! Bounds on what one client can make the gateway hold: body size, slots and a bounded
//! queue for them, and time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::errors::ApiError;

/// Seconds a client turned away for capacity is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Slots for requests being served, and a bounded queue of requests waiting for one.
#[derive(Debug)]
pub struct Limiter {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

/// Counts a request as waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    /// `max_concurrent` slots and room for `queue` waiting requests.
    pub fn new(max_concurrent: usize, queue: usize) -> Self {
        Limiter { slots: Arc::new(Semaphore::new(max_concurrent)), waiting: AtomicUsize::new(0), queue }
    }

    /// A slot: at once if one is free; else after waiting in the queue until `deadline`.
    /// A full queue is `Overloaded` (503 with `Retry-After`), a deadline passed in the queue
    /// `Deadline`.
    pub async fn acquire(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::Overloaded { retry_after: RETRY_AFTER_SECONDS });
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(ApiError::Internal("the gateway is shutting down".into())),
            Err(_) => Err(ApiError::Deadline(timeout.as_secs_f64())),
        }
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// Reads a request body of at most `limit` bytes within `timeout` (a client that trickles
/// its body holds no slot: the body is read before one is taken).
///
/// A body over the limit is read on and dropped (up to [`DRAIN_FACTOR`] times the limit,
/// within the same time) before the 413 goes out: a client still sending when the
/// connection closed would see a broken connection instead of the answer.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared =
        headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let drain_limit = (limit as u64).saturating_mul(DRAIN_FACTOR);
    if declared.is_some_and(|n| n > drain_limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let read = async {
        let mut body = body;
        let mut kept = BytesMut::new();
        let mut seen: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::invalid(format!("cannot read the request body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            seen += data.len() as u64;
            if seen > drain_limit {
                break;
            }
            if seen <= limit as u64 {
                kept.extend_from_slice(&data);
            }
        }
        if seen > limit as u64 {
            return Err(ApiError::TooLarge { limit });
        }
        Ok(kept.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::invalid(format!(
            "the request body did not arrive within {} s",
            timeout.as_secs_f64()
        ))),
    }
}

/// How much of a body over the limit is read (and dropped) before answering 413.
pub const DRAIN_FACTOR: u64 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_is_overloaded_and_a_long_wait_a_deadline() {
        let limiter = Arc::new(Limiter::new(1, 1));
        let far = Instant::now() + Duration::from_secs(60);
        let held = limiter.acquire(far, Duration::from_secs(60)).await.unwrap();
        let queued = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire(far, Duration::from_secs(60)).await.map(drop) })
        };
        while limiter.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let third = limiter.acquire(far, Duration::from_secs(60)).await;
        assert!(matches!(third, Err(ApiError::Overloaded { retry_after: 1 })), "{third:?}");
        drop(held);
        queued.await.unwrap().unwrap();
        let held = limiter.acquire(far, Duration::from_secs(60)).await.unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        let late = limiter.acquire(soon, Duration::from_millis(20)).await;
        assert!(matches!(late, Err(ApiError::Deadline(_))), "{late:?}");
        assert_eq!(limiter.queued(), 0);
        drop(held);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_too_large() {
        let big = read_body(Body::from(vec![b'x'; 11]), &HeaderMap::new(), 10, Duration::from_secs(1)).await;
        assert!(matches!(big, Err(ApiError::TooLarge { limit: 10 })));
        let fine = read_body(Body::from("0123456789"), &HeaderMap::new(), 10, Duration::from_secs(1)).await;
        assert_eq!(fine.unwrap(), "0123456789");
    }
}
