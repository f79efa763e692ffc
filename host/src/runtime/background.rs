//! Store work done off the request path, on one low-priority thread per runtime: making
//! never-used stores ahead of calls (a stack's ready stores, `pool::StorePool`) and dropping
//! stores whose call has ended (returning an instance's memory to the pool resets its dirty
//! pages, which a caller waiting for its answer should not pay for).
//!
//! The thread is started on first use, so a process that never calls a module never has
//! it, and ends when the runtime is dropped. On Linux it runs under `SCHED_IDLE`, so a
//! thread serving calls comes first. Under saturation it may not run for a while; what it
//! holds meanwhile is bounded
//! (at most [`MAX_PENDING_DROPS`] stores waiting to be dropped, beyond which a store is
//! dropped at once, and each stack's ready stores, bounded by the runtime's idle allowance).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use wasmtime::Store;

use super::sandbox::CallState;

/// Most stores waiting on the background thread to be dropped; beyond it a store is dropped
/// by its caller (each holds pool slots and resident memory until it is dropped).
pub(crate) const MAX_PENDING_DROPS: usize = 8;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

enum Job {
    /// Runs on the background thread's own tokio runtime (one at a time per poll).
    Run(Task),
    Drop(Store<CallState>),
}

/// The runtime's background thread, started on first use.
pub(crate) struct Background {
    sender: OnceLock<Option<UnboundedSender<Job>>>,
    pending_drops: Arc<AtomicUsize>,
}

impl Background {
    pub(crate) fn new() -> Self {
        Background { sender: OnceLock::new(), pending_drops: Arc::new(AtomicUsize::new(0)) }
    }

    fn sender(&self) -> Option<&UnboundedSender<Job>> {
        self.sender.get_or_init(|| start(self.pending_drops.clone())).as_ref()
    }

    /// Runs `task` on the background thread. Returns false (and drops `task` unrun) when
    /// there is no background thread.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> bool {
        match self.sender() {
            Some(sender) => sender.send(Job::Run(Box::pin(task))).is_ok(),
            None => false,
        }
    }

    /// Drops `store` on the background thread, or now when [`MAX_PENDING_DROPS`] stores
    /// already wait there (or there is no background thread).
    pub(crate) fn drop_later(&self, store: Store<CallState>) {
        if self.pending_drops.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_DROPS {
            self.pending_drops.fetch_sub(1, Ordering::AcqRel);
            return release(store);
        }
        let Some(sender) = self.sender() else {
            self.pending_drops.fetch_sub(1, Ordering::AcqRel);
            return release(store);
        };
        if let Err(unsent) = sender.send(Job::Drop(store)) {
            self.pending_drops.fetch_sub(1, Ordering::AcqRel);
            if let Job::Drop(store) = unsent.0 {
                release(store);
            }
        }
    }
}

/// Drops `store`: its instances first, then its data, whose permits give the instance slots
/// back (wasmtime's own drop order is the reverse, which would let another call take the
/// slots while the pooling allocator still counts the instances, and fail on a full pool).
pub(crate) fn release(store: Store<CallState>) {
    drop(store.into_data());
}

/// Starts the thread; `None` (and a warning) when it cannot be started: store work is then
/// done by callers, as without it.
fn start(pending_drops: Arc<AtomicUsize>) -> Option<UnboundedSender<Job>> {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!("no background thread for module stores ({e}); calls instantiate their own");
            return None;
        }
    };
    let (sender, receiver) = unbounded_channel();
    let spawned = std::thread::Builder::new().name("arcllm-stores".into()).spawn(move || {
        lower_priority();
        runtime.block_on(serve(receiver, pending_drops));
    });
    match spawned {
        Ok(_) => Some(sender),
        Err(e) => {
            tracing::warn!("no background thread for module stores ({e}); calls instantiate their own");
            None
        }
    }
}

async fn serve(mut receiver: UnboundedReceiver<Job>, pending_drops: Arc<AtomicUsize>) {
    while let Some(job) = receiver.recv().await {
        match job {
            Job::Run(task) => drop(tokio::spawn(task)),
            Job::Drop(store) => {
                release(store);
                pending_drops.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Puts the calling thread in `SCHED_IDLE`: a thread of the process that wakes up to serve a
/// call preempts it at once. (At niceness 19 it does not: the scheduler lets the running
/// thread finish its slice, and a call's wake-up waited behind an instantiation.)
#[cfg(target_os = "linux")]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: with pid 0 the call changes the calling thread's policy only, and `param` is a
    // valid `sched_param` that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::debug!("module store thread keeps its priority: {}", std::io::Error::last_os_error());
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
