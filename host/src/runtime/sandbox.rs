//! What one call's store holds, and the limits around each module in it.
//!
//! A `Store<CallState>` holds one instance per layer and serves one call at a time: calls
//! in flight never share module state, so they never block each other. A store outlives
//! its call only when every module of its stack shares state, the call ended cleanly (nothing trapped, no request handle leaked,
//! the caller did not give up mid-call) and the runtime's allowance of idle instances is
//! not spent; its stack's pool (`pool::StorePool`) then keeps it for a later call.
//! Otherwise it is dropped with its call. Each module runs under a memory cap and a CPU
//! budget enforced by epoch interruption; what it may import, and the WASI context that
//! grants nothing, are in `runtime::imports`.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bounds::{self, CallUsage, HostLimits, MeteredLimits, RequestBytesExceeded, StreamBoundExceeded};
use super::engine::RuntimeInner;
use super::imports::{self, HeldRequest, HeldStream};
use super::limits::{CallBudget, LimitExceeded};
use super::module::Module;
use super::registry::Registry;
use super::resume;
use super::wit::Middleware;
use crate::provider::Provider;
use crate::state::StateStore;
use crate::types::{Error, ErrorKind, Request};

/// Makes the random number generator a call's modules read from (WASI `random`).
#[derive(Clone)]
pub struct RandomSource(Arc<dyn Fn() -> Box<dyn wasmtime_wasi::Rng + Send> + Send + Sync>);

impl RandomSource {
    /// The operating system's randomness, through a CSPRNG per store.
    pub fn os() -> Self {
        RandomSource(Arc::new(wasmtime_wasi::thread_rng))
    }
    /// The same byte sequence for every store, cycled: all zeros makes the retry module's
    /// jitter zero, so its waits are exactly `base * 2^n`.
    pub fn repeating(bytes: Vec<u8>) -> Self {
        RandomSource(Arc::new(move || Box::new(wasmtime_wasi::Deterministic::new(bytes.clone()))))
    }
    /// Any generator, made afresh for each store.
    pub fn custom(make: impl Fn() -> Box<dyn wasmtime_wasi::Rng + Send> + Send + Sync + 'static) -> Self {
        RandomSource(Arc::new(make))
    }
    pub(crate) fn make(&self) -> Box<dyn wasmtime_wasi::Rng + Send> {
        (self.0)()
    }
}

/// The data of one call's store.
pub(crate) struct CallState {
    /// This store's share of the runtime's instances, returned when the store is dropped.
    _slots: OwnedSemaphorePermit,
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap, and how much memory the store's instances hold.
    pub(crate) limits: MeteredLimits,
    /// The stack's modules, outermost first.
    pub(crate) modules: Arc<[Arc<Module>]>,
    /// This call's instances of `modules`, filled in as they are created.
    pub(crate) instances: Vec<Arc<Middleware>>,
    /// What the innermost layer's `provider` import calls.
    pub(crate) inner: Arc<dyn Provider>,
    pub(crate) registry: Arc<dyn Registry>,
    /// Shared state across calls and replicas (`arc:llm/state`).
    pub(crate) state: StateStore,
    /// The layer whose code runs now: imports are attributed to it, CPU is charged to it.
    pub(crate) current: usize,
    /// Epoch ticks each layer has been seen running in this call.
    ticks: Vec<u64>,
    budget_ticks: u64,
    /// `request-handle`s in the resource table: the call's own, and any a module made.
    held_requests: usize,
    /// `event-stream`s in the resource table: each may hold a connection to a vendor.
    held_streams: usize,
    /// While a layer's `invoke-stream` asked for a first event within a time: when that
    /// time is up. Every wait beneath it (on the vendor, on a stream) ends there.
    pub(crate) first_event_deadline: Option<tokio::time::Instant>,
    /// A layer handed a stream on as resumable in this call: the stack keeps the store
    /// until the stream ends, and pulls serve resumptions (`runtime::resume`).
    pub(crate) resume_armed: bool,
    /// Resumptions the call's resumable streams wait for.
    pub(crate) resumes: resume::Queue,
    /// The resumptions being served, innermost last (what `resumption-of` answers).
    pub(crate) resuming: Vec<resume::Resuming>,
    /// The layer that trapped, once one has: the trap unwinds the whole call, and no
    /// instance of this store is entered again.
    trapped_layer: Option<usize>,
    // Sandbox bounds on host work: provider calls made, module errors issued, slot share.
    pub(crate) budget: CallBudget,

    // ---- bounds on what the host holds and does for the modules of this store ----
    pub(crate) host_limits: HostLimits,
    /// What the current call has used of `host_limits`.
    pub(crate) usage: CallUsage,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl CallState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        slots: OwnedSemaphorePermit,
        runtime: &RuntimeInner,
        host_limits: HostLimits,
        modules: Arc<[Arc<Module>]>,
        inner: Arc<dyn Provider>,
        registry: Arc<dyn Registry>,
        state: StateStore,
        random: &RandomSource,
        budget: CallBudget,
    ) -> Self {
        let wasi = imports::wasi_context(random);
        let limits = StoreLimitsBuilder::new()
            .memory_size(runtime.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let limits = MeteredLimits::new(limits);
        let n = modules.len();
        let mut budget = budget;
        budget.tick =
            runtime.limits.cpu_budget / u32::try_from(runtime.budget_ticks.max(1)).unwrap_or(u32::MAX);
        CallState {
            _slots: slots,
            wasi,
            table: ResourceTable::new(),
            limits,
            modules,
            instances: Vec::with_capacity(n),
            inner,
            registry,
            state,
            current: 0,
            ticks: vec![0; n],
            budget_ticks: runtime.budget_ticks,
            held_requests: 0,
            held_streams: 0,
            first_event_deadline: None,
            resume_armed: false,
            resumes: resume::Queue::default(),
            resuming: Vec::new(),
            trapped_layer: None,
            budget,
            host_limits,
            usage: CallUsage::default(),
        }
    }

    /// Readies a store for its next call: the outermost layer runs first, and every
    /// layer's CPU budget is whole again.
    pub(crate) fn begin_call(&mut self) {
        self.current = 0;
        self.ticks.fill(0);
        self.budget.begin_call();
        self.usage.log_lines = 0;
        self.usage.state_ops = 0;
        self.usage.stream_bytes = 0;
        self.usage.stream_events = 0;
        self.first_event_deadline = None;
        if self.resume_armed {
            // A resumption an abandoned stream left queued must not reach this call.
            self.resumes = resume::Queue::default();
            self.resume_armed = false;
        }
        self.resuming.clear();
    }

    /// Whether the store can serve another call: nothing trapped, and no request handle a
    /// module made outlived the call (a leak would otherwise grow with every call).
    pub(crate) fn reusable(&self) -> bool {
        self.trapped_layer.is_none() && self.held_requests == 0 && self.held_streams == 0
    }

    /// Puts a stream in the resource table, for a module to pull from or pass on.
    pub(crate) fn hold_stream(
        &mut self,
        stream: crate::stream::EventStream,
    ) -> wasmtime::Result<Resource<HeldStream>> {
        let handle = self.table.push(HeldStream(stream))?;
        self.held_streams += 1;
        Ok(handle)
    }

    /// The stream behind `handle`, to pull from.
    pub(crate) fn stream(&mut self, handle: &Resource<HeldStream>) -> wasmtime::Result<&mut HeldStream> {
        Ok(self.table.get_mut(handle)?)
    }

    /// Takes an owned handle's stream out of the table (it is dropped, or spliced into
    /// another).
    pub(crate) fn take_stream(
        &mut self,
        handle: Resource<HeldStream>,
    ) -> wasmtime::Result<crate::stream::EventStream> {
        let held = self.table.delete(handle)?;
        self.held_streams -= 1;
        Ok(held.0)
    }

    /// Charges `events` events of `bytes` bytes that a module hands the host (a splice) to
    /// the call: beyond `HostLimits::stream_events_per_call` or `stream_bytes_per_call` the
    /// module traps.
    pub(crate) fn charge_stream(&mut self, events: usize, bytes: usize) -> wasmtime::Result<()> {
        let limits = &self.host_limits;
        let total_events = self.usage.stream_events.saturating_add(events);
        let total_bytes = self.usage.stream_bytes.saturating_add(bytes);
        if total_events > limits.stream_events_per_call || total_bytes > limits.stream_bytes_per_call {
            return Err(wasmtime::Error::new(StreamBoundExceeded {
                events: limits.stream_events_per_call,
                bytes: limits.stream_bytes_per_call,
            }));
        }
        self.usage.stream_events = total_events;
        self.usage.stream_bytes = total_bytes;
        Ok(())
    }

    /// Puts the caller's `request` in the resource table; the handle can be lent to any
    /// layer.
    pub(crate) fn hold_request(&mut self, request: Request) -> wasmtime::Result<Resource<HeldRequest>> {
        let handle = self.table.push(HeldRequest(request, 0))?;
        self.held_requests += 1;
        Ok(handle)
    }

    /// Puts a request a module made in the resource table, charging its size to the call:
    /// beyond `HostLimits::request_bytes_per_call` the module traps instead.
    pub(crate) fn hold_module_request(
        &mut self,
        request: Request,
    ) -> wasmtime::Result<Resource<HeldRequest>> {
        let bytes = bounds::request_bytes(&request);
        let limit = self.host_limits.request_bytes_per_call;
        let total = self.usage.request_bytes.saturating_add(bytes);
        if total > limit {
            return Err(wasmtime::Error::new(RequestBytesExceeded { limit }));
        }
        let handle = self.table.push(HeldRequest(request, bytes))?;
        self.usage.request_bytes = total;
        self.held_requests += 1;
        Ok(handle)
    }

    /// How many more bytes of requests modules may make handles for in this call, and the
    /// bound itself.
    pub(crate) fn request_bytes_left(&self) -> (usize, usize) {
        let limit = self.host_limits.request_bytes_per_call;
        (limit.saturating_sub(self.usage.request_bytes), limit)
    }

    /// The request behind `handle` (owned or borrowed).
    pub(crate) fn request(&self, handle: &Resource<HeldRequest>) -> wasmtime::Result<&Request> {
        Ok(&self.table.get(handle)?.0)
    }

    /// Removes an owned handle's request from the table.
    pub(crate) fn drop_request(&mut self, handle: Resource<HeldRequest>) -> wasmtime::Result<()> {
        let held = self.table.delete(handle)?;
        self.usage.request_bytes -= held.1;
        self.held_requests -= 1;
        Ok(())
    }

    /// Called when the epoch deadline passes while wasm runs: charges a tick to the
    /// running layer and stops it once its budget is spent. A module blocked on the host
    /// (sleeping, waiting on the inner provider) runs no wasm and is not charged, however
    /// long it waits.
    pub(crate) fn on_epoch(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if self.budget.take_wait() {
            // The deadline passed while the module slept in WASI, not while it ran.
            return Ok(UpdateDeadline::Yield(1));
        }
        let layer = self.current;
        let spent = &mut self.ticks[layer];
        *spent += 1;
        if *spent > self.budget_ticks {
            return Err(wasmtime::Error::new(CpuBudgetExceeded));
        }
        // Let other calls run on this worker thread between slices.
        Ok(UpdateDeadline::Yield(1))
    }

    /// The resource table and the call's budget, together: a WASI wait polls the one and
    /// notes the wait in the other.
    pub(crate) fn waits(&mut self) -> (&mut ResourceTable, &mut CallBudget) {
        (&mut self.table, &mut self.budget)
    }

    /// Records that layer `index` trapped, and passes the trap on: it unwinds every layer
    /// above (an outer layer cannot go on in a store where an instance died, and the
    /// request it lent is still held by the dead callee).
    pub(crate) fn unwind(&mut self, index: usize, trap: wasmtime::Error) -> wasmtime::Error {
        self.trapped_layer.get_or_insert(index);
        trap
    }

    /// Stops the running layer for running into `limit`: like a trap, it unwinds the
    /// call, and the error names that layer.
    pub(crate) fn exceeded(&mut self, limit: LimitExceeded) -> wasmtime::Error {
        self.trapped_layer.get_or_insert(self.current);
        wasmtime::Error::new(limit)
    }

    /// Turns a trap (or any failure to run) seen at layer `index` into a `module` error
    /// that names the module that trapped, which may be further in.
    pub(crate) fn trapped(&mut self, index: usize, error: wasmtime::Error) -> Error {
        let layer = *self.trapped_layer.get_or_insert(index);
        module_error(&self.modules[layer].name, error)
    }
}

/// The CPU budget of a module was spent within one call.
#[derive(Debug)]
pub(crate) struct CpuBudgetExceeded;

impl std::fmt::Display for CpuBudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("exceeded its CPU budget")
    }
}

impl std::error::Error for CpuBudgetExceeded {}

/// A `module` error naming `module`, with the trap's cause in words.
pub(crate) fn module_error(module: &str, error: wasmtime::Error) -> Error {
    let reason = if error.downcast_ref::<CpuBudgetExceeded>().is_some() {
        "exceeded its CPU budget for one call (runaway loop?)".to_string()
    } else if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
        limit.to_string()
    } else if let Some(exceeded) = error.downcast_ref::<RequestBytesExceeded>() {
        exceeded.to_string()
    } else if let Some(exceeded) = error.downcast_ref::<StreamBoundExceeded>() {
        exceeded.to_string()
    } else if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::UnreachableCodeReached => {
                "trapped: unreachable executed (a panic or abort)".into()
            }
            wasmtime::Trap::StackOverflow => "trapped: stack overflow".into(),
            wasmtime::Trap::Interrupt => "was interrupted".into(),
            other => format!("trapped: {other}"),
        }
    } else {
        let text = format!("{error:#}");
        if text.contains("forcing trap when growing memory")
            || text.contains("memory") && text.contains("limit")
        {
            format!("exceeded its memory limit: {text}")
        } else {
            format!("failed: {text}")
        }
    };
    Error::new(ErrorKind::Module, module, format!("module `{module}` {reason}"))
}
