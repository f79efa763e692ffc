//! Everything a module may import, decided in one place: [`IMPORTS`].
//!
//! Each file here serves one host interface and declares, next to the code that links it,
//! the interface names it grants. The linker every module is instantiated with is built
//! from [`IMPORTS`], and the check at load time (a module that imports anything else is
//! refused, before it is type-checked) reads the same list, so what is linked and what is
//! allowed cannot drift apart.

use std::future::Future;

use wasmtime::component::Linker;
use wasmtime::Engine;

use super::sandbox::CallState;

mod lazy_events;
mod lazy_request;
mod logging;
mod provider;
mod registry;
mod state;
mod streaming;
mod types;
mod wasi;

pub use streaming::HeldStream;
pub use types::HeldRequest;
pub(crate) use wasi::context as wasi_context;

/// One interface a module may import, and how the host serves it.
pub(crate) struct Import {
    /// `namespace:package/interface`, without the version: any version of it is granted
    /// (type-checking decides whether the module's version fits the host's).
    pub(crate) interface: &'static str,
    /// Defines the interface in the linker.
    add_to_linker: fn(&mut Linker<CallState>) -> wasmtime::Result<()>,
}

/// What a module may import, one host interface per line.
const IMPORTS: &[&[Import]] = &[
    types::IMPORTS,     // arc:llm/types: the request-handle resource
    streaming::IMPORTS, // arc:llm/streaming (0.3 on): the event-stream resource
    provider::IMPORTS,  // arc:llm/provider: the next layer inward
    registry::IMPORTS,  // arc:llm/registry: other providers, by name
    logging::IMPORTS,   // arc:llm/logging: tracing events tagged with the module's name
    state::IMPORTS,     // arc:llm/state (0.3 on): shared state, in the module's namespace
    wasi::IMPORTS,      // WASI clocks, random, I/O and CLI basics, over a context granting nothing
];

/// The linker every module is instantiated with: exactly the interfaces of [`IMPORTS`].
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    for import in IMPORTS.iter().copied().flatten() {
        (import.add_to_linker)(&mut linker)?;
    }
    Ok(linker)
}

/// Whether a module may import `import` (`namespace:package/interface@version`).
pub(crate) fn granted(import: &str) -> bool {
    let unversioned = import.split_once('@').map_or(import, |(name, _)| name);
    IMPORTS.iter().copied().flatten().any(|granted| granted.interface == unversioned)
}

/// Runs `work` as a task of its own on the caller's runtime, and waits for it; `None` when
/// the runtime cancels the task (it is shutting down).
///
/// What a host function awaits runs on the calling module's fiber stack, and a fiber stack
/// keeps every page it ever touched. The host's own work under a module (an HTTP call, the
/// parsing of a vendor's events, another provider's whole stack) goes deeper than the
/// module's frames: polled on the fiber, it took fibers from 8–12 KiB resident to 20–40,
/// and a streaming call in flight holds one fiber per layer (docs/benchmarks.md). Dropping
/// the wait (a timeout, a caller gone) aborts the task, so cancelling works as before.
pub(super) async fn off_fiber<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    // Boxed, the task's cell is made on the fiber's stack with a pointer in it instead of
    // the whole future.
    let mut task = AbortOnDrop(tokio::spawn(Box::pin(work)));
    match (&mut task.0).await {
        Ok(done) => Some(done),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels the task while it is awaited here.
        Err(_) => None,
    }
}

/// [`off_fiber`] for a call to `provider` that answers `Result`, until the first-event
/// `deadline` if there is one (see [`streaming::within_first_event_deadline`]).
pub(super) async fn call_off_fiber<T: Send + 'static>(
    provider: &str,
    deadline: Option<tokio::time::Instant>,
    call: impl Future<Output = Result<T, crate::types::Error>> + Send + 'static,
) -> Result<T, crate::types::Error> {
    let task = off_fiber(call);
    streaming::within_first_event_deadline(deadline, provider, async {
        task.await.unwrap_or_else(|| Err(shutting_down(provider)))
    })
    .await
}

/// The error of host work under `provider` that [`off_fiber`] saw cancelled.
pub(super) fn shutting_down(provider: &str) -> crate::types::Error {
    crate::types::Error::new(
        crate::types::ErrorKind::Connection,
        provider,
        format!("the call to `{provider}` was cancelled: the runtime is shutting down"),
    )
}
