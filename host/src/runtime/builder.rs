//! [`RuntimeBuilder`]: the settings a [`Runtime`] is created with, and its creation (the
//! engine, the linker, the epoch thread).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::{Config, Engine};

use super::artifacts::Artifacts;
use super::background::Background;
use super::bounds::HostLimits;
use super::disk_cache::DiskCache;
use super::engine::{Limits, Runtime, RuntimeError, RuntimeInner, DEFAULT_MAX_INSTANCES};
use super::engine_config::EngineSettings;
use super::imports;
use super::limits::CallLimits;
use super::module::ComponentCache;
use super::pool::IdleBudget;

/// The default [`RuntimeBuilder::ready_stores`]: enough for a stack's calls arriving one
/// at a time or in small bursts.
pub const DEFAULT_READY_STORES: usize = 2;

/// Configures a [`Runtime`]: limits, pooling and the epoch tick.
///
/// ```no_run
/// # fn main() -> Result<(), arcllm::runtime::RuntimeError> {
/// let runtime = arcllm::runtime::Runtime::builder()
///     .memory_limit(32 << 20)
///     .cpu_budget(std::time::Duration::from_millis(200))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RuntimeBuilder {
    limits: Limits,
    pooling: bool,
    max_instances: u32,
    max_idle_instances: Option<usize>,
    ready_stores: usize,
    epoch_tick: Duration,
    // Sandbox bounds on host work (timeouts, calls, file sizes, slot shares).
    call_limits: CallLimits,
    // Bounds on what the host holds and does for modules.
    host_limits: HostLimits,
    /// Set explicitly; else 4× the memory limit.
    max_request_bytes_per_call: Option<usize>,
    /// `None`: [`DiskCache::from_env`]; `Some(None)`: no disk cache.
    disk_cache: Option<Option<PathBuf>>,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            limits: Limits::default(),
            pooling: true,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_idle_instances: None,
            ready_stores: DEFAULT_READY_STORES,
            epoch_tick: Duration::from_millis(5),
            call_limits: CallLimits::default(),
            host_limits: HostLimits::for_memory_limit(Limits::default().memory_bytes),
            max_request_bytes_per_call: None,
            disk_cache: None,
        }
    }
}

impl RuntimeBuilder {
    /// Most bytes one module's memory may grow to (default 64 MiB).
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.limits.memory_bytes = bytes;
        self
    }
    /// Most CPU time a module may spend on one call (default 1 s).
    pub fn cpu_budget(mut self, budget: Duration) -> Self {
        self.limits.cpu_budget = budget;
        self
    }
    /// Most native stack wasm code may use (default 512 KiB).
    pub fn wasm_stack_limit(mut self, bytes: usize) -> Self {
        self.limits.wasm_stack_bytes = bytes;
        self
    }
    /// Whether to use the pooling instance allocator (default on). Without it every new
    /// instance maps fresh memory and stacks, 4–8× the instantiation cost
    /// (docs/benchmarks.md).
    pub fn pooling(mut self, enabled: bool) -> Self {
        self.pooling = enabled;
        self
    }
    /// Module instances that may be alive at once: calls in flight times modules, plus idle
    /// ones (default [`DEFAULT_MAX_INSTANCES`], 512). It sizes the pooling allocator,
    /// which reserves a stack per instance up front (about 3 µs each, paid once when the
    /// runtime is built); a call that would go beyond it waits for a running call to end.
    pub fn max_instances(mut self, count: u32) -> Self {
        self.max_instances = count;
        self
    }
    /// Module instances kept idle for reuse, across all stacks (default: a quarter of
    /// [`max_instances`](Self::max_instances)). Only stacks whose modules all share state
    /// ([`Module::with_share_state`](super::Module::with_share_state)) keep idle stores. A
    /// call of such a stack takes an idle store of its stack,
    /// with every layer instantiated and configured, instead of instantiating and
    /// configuring them again. Idle instances hold pool slots and resident memory; the
    /// default leaves three quarters of the pool to calls in flight. 0 gives every call
    /// fresh instances.
    pub fn max_idle_instances(mut self, count: usize) -> Self {
        self.max_idle_instances = Some(count);
        self
    }
    /// Stores each stack keeps instantiated and configured ahead of its calls, never used
    /// (default [`DEFAULT_READY_STORES`]; 0: none). After a call takes one, a background
    /// thread of low priority makes the next, so a call does not wait for its instances
    /// to be created; each still serves one call (unless its stack shares state), so
    /// isolation is unchanged. Ready stores count against
    /// [`max_idle_instances`](Self::max_idle_instances) and the stack's share of
    /// [`max_instances`](Self::max_instances), are only made when no call waits for
    /// instance slots, and are dropped with their stack.
    pub fn ready_stores(mut self, count: usize) -> Self {
        self.ready_stores = count;
        self
    }
    // ---- bounds on what the host holds and does for modules ----

    /// Most bytes of requests that `request-handle`s made by modules may hold at once in
    /// one call (default 4× the memory limit). Beyond it the module making the handle traps,
    /// and the call fails with a `module` error naming it.
    pub fn max_request_bytes_per_call(mut self, bytes: usize) -> Self {
        self.max_request_bytes_per_call = Some(bytes);
        self
    }
    /// Most stream events (each splice counts one more) and bytes of them that the modules
    /// of one call may hand the host in `event-stream.splice` (default 65,536 events and 4×
    /// the memory limit). Beyond either the module splicing traps, and the call fails with
    /// a `module` error naming it.
    pub fn max_stream_splices_per_call(mut self, events: usize, bytes: usize) -> Self {
        self.host_limits.stream_events_per_call = events;
        self.host_limits.stream_bytes_per_call = bytes;
        self
    }

    /// Most bytes of one line a module logs (default 4 KiB); a longer line is cut and marked.
    pub fn max_log_line_bytes(mut self, bytes: usize) -> Self {
        self.host_limits.log_line_bytes = bytes;
        self
    }
    /// Most lines the modules of one call may log (default 256); after them one warning
    /// says that further lines are dropped.
    pub fn max_log_lines_per_call(mut self, lines: usize) -> Self {
        self.host_limits.log_lines_per_call = lines;
        self
    }
    /// Most shared-state operations (`arc:llm/state`) the modules of one call may make
    /// together (default 256); the module making one more is stopped with a `module` error.
    pub fn max_state_ops_per_call(mut self, ops: usize) -> Self {
        self.host_limits.state_ops_per_call = ops;
        self
    }
    /// Most bytes of linear memory a store may hold and still be kept idle for reuse
    /// (default 8 MiB): a store whose modules grew their memory beyond it is dropped after
    /// its call, returning the memory.
    pub fn max_idle_store_memory(mut self, bytes: usize) -> Self {
        self.host_limits.idle_store_memory_bytes = bytes;
        self
    }
    /// Most bytes of linear memory all idle stores of this runtime may hold together
    /// (default 256 MiB); beyond it a store is dropped after its call instead of kept.
    pub fn max_idle_memory(mut self, bytes: usize) -> Self {
        self.host_limits.idle_memory_bytes = bytes;
        self
    }

    /// How often the CPU budget is checked (default 5 ms).
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick.max(Duration::from_micros(100));
        self
    }
    /// Time, call and file limits of stacks and module loads made with this runtime
    /// (default [`CallLimits::default`]); [`Runtime::with_call_limits`] changes them for one
    /// user of the runtime.
    pub fn call_limits(mut self, limits: CallLimits) -> Self {
        self.call_limits = limits;
        self
    }
    /// Where compiled modules are cached across processes (default:
    /// [`DiskCache::from_env`], that is `$XDG_CACHE_HOME/arcllm` or `~/.cache/arcllm`,
    /// none when `ARCLLM_CACHE=off`); `None` compiles in every process. A directory that
    /// is not the current user's alone is not used (see [`DiskCache::open`]).
    pub fn disk_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.disk_cache = Some(dir);
        self
    }
    /// Creates the engine. When the pooling allocator cannot reserve its memory (a low
    /// `ulimit -v`, say), falls back to on-demand allocation and logs a warning.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let (engine, pooling) = if self.pooling {
            match Engine::new(&self.config(true)) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!("pooling allocator unavailable ({e:#}); using on-demand allocation");
                    (self.engine_on_demand()?, false)
                }
            }
        } else {
            (self.engine_on_demand()?, false)
        };
        let linker = imports::linker(&engine).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        spawn_epoch_ticker(&engine, self.epoch_tick);
        let disk_dir = self.disk_cache.clone().unwrap_or_else(DiskCache::from_env);
        let artifacts = Artifacts::new(&engine, disk_dir);
        let budget_ticks =
            (self.limits.cpu_budget.as_nanos() / self.epoch_tick.as_nanos().max(1)).max(1) as u64;
        let host_limits = HostLimits {
            request_bytes_per_call: self
                .max_request_bytes_per_call
                .unwrap_or(self.limits.memory_bytes.saturating_mul(4)),
            ..self.host_limits.clone()
        };
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                artifacts,
                engine,
                linker,
                limits: self.limits,
                budget_ticks,
                pooling,
                components: ComponentCache::default(),
                idle: IdleBudget::new(
                    self.max_idle_instances.unwrap_or(self.max_instances as usize / 4),
                    self.host_limits.idle_memory_bytes,
                ),
                host_limits,
                instance_slots: Arc::new(Semaphore::new(self.max_instances as usize)),
                max_instances: self.max_instances as usize,
                ready_stores: self.ready_stores,
                background: Background::new(),
            }),
            call_limits: Arc::new(self.call_limits),
            disk_override: None,
            idle_share: None,
        })
    }

    fn engine_on_demand(&self) -> Result<Engine, RuntimeError> {
        Engine::new(&self.config(false)).map_err(|e| RuntimeError::Engine(format!("{e:#}")))
    }

    fn config(&self, pooling: bool) -> Config {
        EngineSettings {
            memory_bytes: self.limits.memory_bytes,
            wasm_stack_bytes: self.limits.wasm_stack_bytes,
            pooling: pooling.then_some(self.max_instances),
        }
        .config()
    }
}

/// Ticks the engine's epoch from a plain thread (never a tokio task: a busy runtime would
/// delay the very ticks meant to stop a busy module). Ends when the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("arcllm-epoch".into()).spawn(move || loop {
        std::thread::sleep(tick);
        match weak.upgrade() {
            Some(engine) => engine.increment_epoch(),
            None => break,
        }
    });
    if let Err(e) = spawned {
        tracing::error!("could not start the epoch thread ({e}); module CPU budgets will not be enforced");
    }
}
