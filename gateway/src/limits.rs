//! Bounds on what one client can make the gateway hold: body size, slots and a bounded
//! queue for them, and time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
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
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared =
        headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::TooLarge { limit }),
        Ok(Err(e)) => Err(ApiError::invalid(format!("cannot read the request body: {e}"))),
        Err(_) => Err(ApiError::invalid(format!(
            "the request body did not arrive within {} s",
            timeout.as_secs_f64()
        ))),
    }
}

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
