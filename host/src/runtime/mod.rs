//! The wasm runtime: loading modules and running stacks of them.

pub mod bindings;
mod engine;
mod linker;
mod module;
mod pool;
pub mod registry;
mod sandbox;
mod stack;

pub use engine::{Limits, Runtime, RuntimeBuilder, RuntimeError};
pub use module::{LoadError, Module, ModuleSource};
pub use registry::{EmptyRegistry, LazyRegistry, Registry};
pub use sandbox::RandomSource;
pub use stack::Stack;
