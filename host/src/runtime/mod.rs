//! The wasm runtime: loading modules and running stacks of them.

mod artifacts;
pub mod bindings;
mod disk_cache;
mod engine;
mod engine_config;
mod linker;
mod module;
mod pool;
pub mod registry;
mod sandbox;
mod stack;

pub use disk_cache::{CacheError, DiskCache, CACHE_ENV};
pub use engine::{Limits, Runtime, RuntimeBuilder, RuntimeError};
pub use module::{LoadError, Module, ModuleSource};
pub use registry::{EmptyRegistry, LazyRegistry, Registry};
pub use sandbox::RandomSource;
pub use stack::Stack;
