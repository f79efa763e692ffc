//! The process's wasmtime engine and the limits every module runs under.
//!
//! One [`Runtime`] owns one `wasmtime::Engine` (async, epoch interruption, pooling
//! allocator where the OS allows it), the linker that grants modules their imports, and a
//! std thread that ticks the engine's epoch. Modules are compiled and type-checked against
//! it once; a store then instantiates them cheaply from their `InstancePre`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Linker;
use wasmtime::Engine;

use super::artifacts::Artifacts;
use super::background::Background;
use super::bounds::HostLimits;
use super::builder::RuntimeBuilder;
use super::disk_cache::DiskCache;
use super::limits::CallLimits;
use super::module::ComponentCache;
use super::pool::IdleBudget;
use super::sandbox::CallState;

/// Limits applied to each module on each call.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most bytes one module's linear memory may grow to.
    pub memory_bytes: usize,
    /// Most CPU time one module may spend on one call (time it spends waiting on the host,
    /// sleeping in a backoff or on the inner provider, does not count).
    pub cpu_budget: Duration,
    /// Most bytes of native stack wasm code may use.
    pub wasm_stack_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 64 << 20, cpu_budget: Duration::from_secs(1), wasm_stack_bytes: 512 << 10 }
    }
}

/// The default [`RuntimeBuilder::max_instances`]. The pooling allocator makes one guard
/// page per possible concurrent call when it is created, which costs about 3 µs each (a
/// pool of 4,096 took 11–14 ms, 1,024 about 3–5 ms, most of a cold
/// `load_model().build()`); 512 keeps that near 2 ms and still lets one stack run 128
/// concurrent calls of two modules. Long-running servers with more concurrent calls size
/// it themselves ([`Runtime::configure_shared`]; `arcllm serve` does).
pub const DEFAULT_MAX_INSTANCES: u32 = 512;

/// Why a [`Runtime`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Wasmtime refused the engine configuration or the linker (the text is wasmtime's).
    #[error("could not create the wasm engine: {0}")]
    Engine(String),
    /// [`Runtime::configure_shared`] was called after the shared runtime was created.
    #[error("the process-wide runtime already exists; configure it before its first use")]
    SharedExists,
}

pub(crate) struct RuntimeInner {
    /// Where compiled code comes from: precompiled, the disk cache, or Cranelift.
    pub(crate) artifacts: Artifacts,
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    pub(crate) limits: Limits,
    /// The CPU budget in epoch ticks.
    pub(crate) budget_ticks: u64,
    pub(crate) pooling: bool,
    pub(crate) components: ComponentCache,
    /// How many more idle instances, and bytes of their memory, may be kept, across stacks.
    pub(crate) idle: IdleBudget,
    pub(crate) host_limits: HostLimits,
    /// One permit per instance that may be alive at once (`max_instances`).
    pub(super) instance_slots: Arc<Semaphore>,
    pub(super) max_instances: usize,
    /// Never-used stores each stack keeps ready for its calls.
    pub(crate) ready_stores: usize,
    /// Where ready stores are made and finished stores dropped, off the request path.
    pub(crate) background: Background,
}

impl RuntimeInner {
    /// Waits until `count` more instances may be alive; the permit returns them when
    /// dropped. Errs with `max_instances` when `count` exceeds it (waiting would be forever).
    pub(crate) async fn reserve_instances(&self, count: usize) -> Result<OwnedSemaphorePermit, usize> {
        let count = u32::try_from(count).ok().filter(|&n| n as usize <= self.max_instances);
        let count = count.ok_or(self.max_instances)?;
        self.instance_slots.clone().acquire_many_owned(count).await.map_err(|_| self.max_instances)
    }

    /// `count` more instances if they may be alive now and no call waits for slots.
    pub(crate) fn try_reserve_instances(&self, count: usize) -> Option<OwnedSemaphorePermit> {
        let count = u32::try_from(count).ok()?;
        self.instance_slots.clone().try_acquire_many_owned(count).ok()
    }

    /// How many instances may be alive at once.
    pub(crate) fn max_instances(&self) -> usize {
        self.max_instances
    }
}

/// The process-wide runtime ([`Runtime::shared`]).
static SHARED: OnceLock<Runtime> = OnceLock::new();
/// What the shared runtime is to be built with; its lock also makes one caller build it.
static SHARED_SETTINGS: Mutex<Option<RuntimeBuilder>> = Mutex::new(None);

/// A wasm runtime: the engine, the linker that grants modules their imports, and limits.
/// Cheap to clone; share one per process ([`Runtime::shared`]).
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
    /// Limits of the stacks and loads made with this handle (clones of one runtime may
    /// differ: each model applies its own config.toml `[limits]`).
    pub(crate) call_limits: Arc<CallLimits>,
    /// The compile cache loads made with this handle use, when not the runtime's own:
    /// `Some(None)` for none (config.toml's `[cache]`).
    pub(crate) disk_override: Option<Option<Arc<PathBuf>>>,
    /// The idle memory allowance of the stacks made with this handle
    /// (`CallLimits::max_idle_memory_bytes`), on top of the runtime-wide one.
    pub(crate) idle_share: Option<Arc<IdleBudget>>,
}

impl Runtime {
    /// Configures a new runtime; [`Runtime::shared`] is the process-wide default one.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The process-wide runtime, created on first use (once: the engine, its pool's address
    /// space and its epoch thread are made by one caller while any others wait) with the
    /// settings given to [`Runtime::configure_shared`], else the defaults. A process that
    /// never loads a module never creates it.
    pub fn shared() -> Result<Runtime, RuntimeError> {
        if let Some(runtime) = SHARED.get() {
            return Ok(runtime.clone());
        }
        let mut configured = SHARED_SETTINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(runtime) = SHARED.get() {
            return Ok(runtime.clone());
        }
        let runtime = configured.take().unwrap_or_default().build()?;
        Ok(SHARED.get_or_init(|| runtime).clone())
    }

    /// Sets what [`Runtime::shared`] will be built with: a server expecting more
    /// concurrent calls than [`DEFAULT_MAX_INSTANCES`] allows raises `max_instances`, a
    /// one-shot command lowers it to start faster. Nothing is created now. Errs with
    /// [`RuntimeError::SharedExists`] once the shared runtime exists (its settings can no
    /// longer change).
    pub fn configure_shared(builder: RuntimeBuilder) -> Result<(), RuntimeError> {
        let mut configured = SHARED_SETTINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if SHARED.get().is_some() {
            return Err(RuntimeError::SharedExists);
        }
        *configured = Some(builder);
        Ok(())
    }

    /// The wasmtime engine modules are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The memory, CPU and stack limits every module runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The bounds on what the host holds and does for modules.
    pub fn host_limits(&self) -> &HostLimits {
        &self.inner.host_limits
    }

    /// The time, call and file limits stacks and module loads made with this handle get.
    pub fn call_limits(&self) -> &CallLimits {
        &self.call_limits
    }

    /// This runtime (the same engine, pool and compiled components) with other call
    /// limits for the stacks and loads made with the returned handle.
    pub fn with_call_limits(&self, limits: CallLimits) -> Runtime {
        let idle_share =
            limits.max_idle_memory_bytes.map(|bytes| Arc::new(IdleBudget::new(usize::MAX, bytes)));
        Runtime { call_limits: Arc::new(limits), idle_share, ..self.clone() }
    }

    /// This runtime with another compile cache on disk for the loads made with the
    /// returned handle: `Some(dir)` (opened and checked as [`DiskCache::open`] does, once per
    /// directory), or `None` to compile in every process. config.toml's `[cache]` table
    /// reaches the runtime this way.
    pub fn with_disk_cache(&self, dir: Option<PathBuf>) -> Runtime {
        Runtime { disk_override: Some(dir.map(Arc::new)), ..self.clone() }
    }

    /// Whether this runtime uses the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    /// Whether the built-in modules load precompiled (embedded in the binary) into this
    /// runtime. False when its engine's code-shaping settings differ from the default ones
    /// the build precompiled for (a [`memory_limit`](RuntimeBuilder::memory_limit) other
    /// than 64 MiB, or pooling off or unavailable), or the CPU differs from the build
    /// machine's: the built-ins are then compiled (and cached on disk).
    pub fn uses_precompiled_builtins(&self) -> bool {
        self.inner.artifacts.builtins_precompiled()
    }

    /// The compile cache on disk that loads made with this handle use, if any.
    pub fn disk_cache(&self) -> Option<DiskCache> {
        match &self.disk_override {
            None => self.inner.artifacts.disk().cloned(),
            Some(None) => None,
            Some(Some(dir)) => self.inner.artifacts.disk_at(dir),
        }
    }

    /// How many compiled components are cached and alive (shared by identical bytes).
    pub fn compiled_components(&self) -> usize {
        self.inner.components.len()
    }
}
