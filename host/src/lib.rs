//! arcllm: resilient, pluggable middleware in front of LLM APIs, where every middleware
//! module is a sandboxed WebAssembly component.
//!
//! - [`types`]: the data model (`arc:llm/types` in `wit/v0.3/types.wit`);
//! - [`Provider`]: what a native adapter, a stack of modules, and a test double all are;
//! - [`stream`]: the events of a streamed answer, and how they fold into a response;
//! - [`runtime`]: loads modules and stacks them into a [`runtime::Stack`];
//! - [`adapters`]: the native HTTP adapters at the bottom of every stack;
//! - [`providers`]: provider files and the catalog that creates adapters by name;
//! - [`state`]: shared state for modules across calls and replicas (in-process or Redis);
//! - [`target`]: how a provider is named (`name` or `name/model`), checked in one place;
//! - [`builtin`]: the embedded retry, fallback and passthrough modules.

#![warn(missing_docs)]

pub mod adapters;
pub mod builtin;
pub mod config;
pub mod model;
pub mod provider;
pub mod providers;
pub mod runtime;
pub mod state;
pub mod stream;
pub mod target;
mod text;
pub mod types;

pub use model::{load_model, BuildError, Model, ModelBuilder, Setting};
pub use provider::Provider;
