//! Bindings and helpers for writing arcllm middleware modules in Rust.
//!
//! A module implements the `arc:llm/middleware` world: it exports [`Guest`] (the provider
//! it presents outward) and [`ModuleGuest`] (its configuration hook), and calls [`inner`]
//! for the next layer inward. Build it as a `cdylib` for `wasm32-wasip2` and register the
//! implementation with [`export!`]:
//!
//! ```ignore
//! use arcllm_module_sdk::*;
//! struct Tag;
//! impl Guest for Tag {
//!     // The request arrives by handle: forwarding it costs nothing whatever its size;
//!     // `request.get()` copies it in when the module needs to read it.
//!     fn invoke(request: &RequestHandle) -> Result<Response, Error> {
//!         let mut response = inner::invoke(request)?;
//!         response.metadata.push(("example.tag".into(), "seen".into()));
//!         Ok(response)
//!     }
//!     // name, model-name and validate-config answer for the inner provider.
//!     delegate_to_inner!();
//! }
//! impl ModuleGuest for Tag {
//!     fn configure(_config: String) -> Result<(), String> { Ok(()) }
//! }
//! export!(Tag);
//! ```

#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "middleware",
    path: "../../wit/v0.3",
    pub_export_macro: true,
    default_bindings_module: "arcllm_module_sdk",
});

pub use arc::llm::logging::{self, Level};
pub use arc::llm::provider as inner;
pub use arc::llm::registry;
pub use arc::llm::types::*;
pub use exports::arc::llm::module::Guest as ModuleGuest;
pub use exports::arc::llm::provider::Guest;

pub mod config;
/// The shared-state operations as a plain-Rust trait (what policies are written against).
pub mod shared;
/// The host's `arc:llm/state` import behind [`shared::SharedState`].
pub mod state;
pub mod target;
pub mod time;

/// Inside `impl Guest for …`: answers `name`, `model-name` and `validate-config` from the
/// inner provider, as a wrapping module should (it is the inner provider, plus behavior).
#[macro_export]
macro_rules! delegate_to_inner {
    () => {
        fn name() -> String {
            $crate::inner::name()
        }
        fn model_name() -> String {
            $crate::inner::model_name()
        }
        fn validate_config() -> Result<(), $crate::Error> {
            $crate::inner::validate_config()
        }
    };
}

/// Logs through the host's logger; the host tags the line with this module's name.
pub fn log(level: Level, message: &str) {
    logging::log(level, message);
}

impl Response {
    /// Appends a metadata entry (`key` should be dotted under the module's own prefix).
    pub fn add_metadata(&mut self, key: &str, value: impl ToString) {
        self.metadata.push((key.to_string(), value.to_string()));
    }
}

impl ErrorKind {
    /// The kind's WIT name: `api`, `connection`, …
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Api => "api",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Config => "config",
            ErrorKind::Parse => "parse",
            ErrorKind::Module => "module",
        }
    }
}

impl Error {
    /// One line for logs: "api error from openai (HTTP 503): …", as the host writes it.
    pub fn summary(&self) -> String {
        match self.status {
            Some(status) => {
                format!(
                    "{} error from {} (HTTP {status}): {}",
                    self.kind.as_str(),
                    self.provider,
                    self.message
                )
            }
            None => format!("{} error from {}: {}", self.kind.as_str(), self.provider, self.message),
        }
    }
}
