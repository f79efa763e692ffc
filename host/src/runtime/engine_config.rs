//! The wasmtime `Config` of every arcllm engine, and the fingerprint of what its compiled
//! code depends on.
//!
//! This file is shared, through `#[path]`, by the runtime and by `build.rs`, which
//! precompiles the built-in modules with it: code compiled by one engine loads into
//! another only when the two agree on every setting that shapes compiled code, and one
//! function producing both configurations is what keeps them agreeing. It uses nothing but
//! `wasmtime`, `sha2` and `std`, so that the build script can include it.
//!
//! Which settings shape compiled code (wasmtime checks them all again when it deserializes,
//! and [`fingerprint`] hashes them): the target and Cranelift's flags, the wasm features,
//! and the "tunables", among which those set here are `epoch_interruption`,
//! `memory_init_cow`, and, with pooling, `memory_reservation` and `memory_guard_size`. So
//! [`EngineSettings::memory_bytes`] and [`EngineSettings::pooling`] change compatibility;
//! the wasm stack limit, the async stack size and the pool's sizes (instance counts,
//! keep-resident amounts) are runtime-only and do not.

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// What an engine's configuration is made from: the part of the runtime's settings that
/// the engine itself needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// Most bytes one module's linear memory may grow to.
    pub memory_bytes: usize,
    /// Most bytes of native stack wasm code may use.
    pub wasm_stack_bytes: usize,
    /// The pooling allocator's instance count, or `None` for on-demand allocation.
    pub pooling: Option<u32>,
}

impl Default for EngineSettings {
    /// The settings of `Runtime::shared()`, which the built-ins are precompiled for.
    fn default() -> Self {
        EngineSettings { memory_bytes: 64 << 20, wasm_stack_bytes: 512 << 10, pooling: Some(512) }
    }
}

impl EngineSettings {
    /// The engine configuration for these settings.
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(self.wasm_stack_bytes)
            // Host calls run on the fiber's stack too: leave room above the wasm limit.
            .async_stack_size(self.wasm_stack_bytes + (1 << 20))
            // Copy each module's data segments into its memory instead of mapping them
            // copy-on-write: a mapping per new instance takes the process's mmap lock for
            // writing, which stalls bursts of new instances across threads (the first burst
            // of 1,000 calls went from 1.82–2.25× to 1.60–1.98× the ideal time,
            // docs/benchmarks.md).
            .memory_init_cow(false);
        if let Some(n) = self.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(n)
                // A Rust component is a handful of core instances (its code plus the
                // canonical-ABI shims wit-component adds).
                .total_core_instances(n.saturating_mul(6))
                .total_memories(n.saturating_mul(2))
                .total_tables(n.saturating_mul(3))
                .total_stacks(n)
                .max_core_instances_per_component(16)
                .max_memories_per_component(4)
                .max_tables_per_component(8)
                .max_memory_size(self.memory_bytes)
                // Keep a module's first pages mapped when its slot is reused instead of
                // releasing and faulting them back in for every new instance (measured: about
                // 40% of a layer's instantiation). pagemap_scan (Linux 6.7+) resets only the
                // dirty pages.
                .pagemap_scan(Enabled::Auto)
                .linear_memory_keep_resident((4 << 20).min(self.memory_bytes))
                .table_keep_resident(1 << 20);
            // Reserve only what a module may use: the pool's slots are sized by this, and
            // bounds checks stay explicit instead of relying on 4 GiB guard regions.
            config
                .memory_reservation(self.memory_bytes as u64)
                .memory_guard_size(64 << 10)
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        config
    }

    /// [`config`](Self::config) with on-demand allocation: the same compiled code (the
    /// allocation strategy shapes none of it), without reserving the pool's address space.
    /// What `build.rs` precompiles with.
    #[allow(dead_code)] // used by build.rs only
    pub fn compile_only_config(&self) -> Config {
        let mut config = self.config();
        config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
        config
    }
}

/// SHA-256 of everything `engine`'s compiled code depends on
/// (`Engine::precompile_compatibility_hash`: target, Cranelift flags, tunables, wasm
/// features and wasmtime's version). Two engines with the same fingerprint load each
/// other's compiled components.
pub fn fingerprint(engine: &Engine) -> [u8; 32] {
    use sha2::Digest;
    use std::hash::Hash;

    struct Sha(sha2::Sha256);
    impl std::hash::Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0
        }
    }
    let mut hasher = Sha(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize().into()
}
