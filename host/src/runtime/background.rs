//! Store work done off the request path: making never-used stores ahead of calls (a
//! stack's ready stores, `pool::StorePool`) on one low-priority thread per runtime, and
//! dropping stores whose call has ended (returning an instance's memory to the pool resets
//! its dirty pages, which a caller waiting for its answer should not pay for) in a task of
//! their own (`Stack::discard`).
//!
//! The thread is started on first use, so a process that never calls a module never has
//! it, and ends when the runtime is dropped. On Linux it runs under `SCHED_IDLE`, so a
//! thread serving calls comes first; under saturation it may not run for a while, which is
//! why drops do not wait for it (a store keeps its slots, its memory and its modules until
//! it is dropped) and why a queued refill holds its stack weakly.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use wasmtime::Store;

use super::sandbox::CallState;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs on the background thread's own tokio runtime.
type Job = Task;

/// The runtime's background thread, started on first use.
pub(crate) struct Background {
    sender: OnceLock<Option<UnboundedSender<Job>>>,
}

impl Background {
    pub(crate) fn new() -> Self {
        Background { sender: OnceLock::new() }
    }

    fn sender(&self) -> Option<&UnboundedSender<Job>> {
        self.sender.get_or_init(start).as_ref()
    }

    /// Runs `task` on the background thread. Returns false (and drops `task` unrun) when
    /// there is no background thread.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> bool {
        match self.sender() {
            Some(sender) => sender.send(Box::pin(task)).is_ok(),
            None => false,
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
fn start() -> Option<UnboundedSender<Job>> {
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
        runtime.block_on(serve(receiver));
    });
    match spawned {
        Ok(_) => Some(sender),
        Err(e) => {
            tracing::warn!("no background thread for module stores ({e}); calls instantiate their own");
            None
        }
    }
}

async fn serve(mut receiver: UnboundedReceiver<Job>) {
    while let Some(task) = receiver.recv().await {
        drop(tokio::spawn(task));
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
