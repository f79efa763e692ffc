//! The wasm runtime: loading modules and running chains of them.

pub mod bindings;
mod chain;
mod engine;
mod linker;
mod module;
mod pool;
pub mod registry;
mod sandbox;

pub use chain::Chain;
pub use engine::{Limits, Runtime, RuntimeBuilder, RuntimeError};
pub use module::{LoadError, Module, ModuleSource};
pub use registry::{EmptyRegistry, LazyRegistry, Registry};
pub use sandbox::RandomSource;
