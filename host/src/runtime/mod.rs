//! The wasm runtime: loading modules and running stacks of them.

mod artifacts;
mod background;
mod bounds;
mod builder;
mod disk_cache;
mod engine;
mod engine_config;
mod imports;
mod lazy_response;
mod limits;
mod load_error;
mod module;
mod pool;
pub mod registry;
mod resume;
mod sandbox;
mod stack;
mod streams;
pub mod wit;

pub use bounds::HostLimits;
pub use builder::{RuntimeBuilder, DEFAULT_READY_STORES};
pub use disk_cache::{CacheError, DiskCache, CACHE_ENV};
pub use engine::{Limits, Runtime, RuntimeError, DEFAULT_MAX_INSTANCES};
pub use limits::{CallLimits, MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_RESPONSE_BYTES};
pub use load_error::{LoadError, LoadErrorKind};
pub use module::{Module, ModuleSource};
pub use registry::{EmptyRegistry, LazyRegistry, Registry};
pub use sandbox::RandomSource;
pub use stack::Stack;
