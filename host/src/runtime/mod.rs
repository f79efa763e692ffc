//! The wasm runtime: loading modules and running stacks of them.

mod bounds;
mod engine;
mod imports;
mod limits;
mod module;
mod pool;
pub mod registry;
mod sandbox;
mod stack;
pub mod wit;

pub use bounds::HostLimits;
pub use engine::{Limits, Runtime, RuntimeBuilder, RuntimeError};
pub use limits::{CallLimits, MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_RESPONSE_BYTES};
pub use module::{LoadError, LoadErrorKind, Module, ModuleSource};
pub use registry::{EmptyRegistry, LazyRegistry, Registry};
pub use sandbox::RandomSource;
pub use stack::Stack;
