//! Bindings of the `arc:llm@0.3.0` contract (`wit/v0.3`).
//!
//! Imports are not bound through generated `Host` traits: the `provider` import must call
//! into the next layer's instance, which needs the whole store, so `runtime::imports`
//! defines every import by hand with `func_wrap_async`. Only the types and the typed
//! export accessors are used from here.

// Generated from wit/v0.3: the WIT's own comments become the docs of what they describe;
// the structure bindgen adds around them (modules, `Pre` types, traits) has none.
#[allow(missing_docs)]
mod generated {
    wasmtime::component::bindgen!({
        world: "middleware",
        path: "../wit/v0.3",
        imports: { default: async },
        exports: { default: async },
        with: {
            "arc:llm/types.request-handle": crate::runtime::imports::HeldRequest,
            "arc:llm/streaming.event-stream": crate::runtime::imports::HeldStream,
        },
        // Equality for tests and callers; serde for `arcllm invoke --json` and logs.
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}
pub use generated::*;

/// The version these bindings are generated from, as a literal: the one place it is
/// written, so that [`VERSION`], [`WORLD`] and every `arc_llm!` name agree.
macro_rules! version {
    () => {
        "0.3.0"
    };
}
pub(crate) use version;

/// The full name of an item of the `arc:llm` package at this version:
/// `arc_llm!("provider")` is `"arc:llm/provider@0.3.0"`.
macro_rules! arc_llm {
    ($item:literal) => {
        concat!("arc:llm/", $item, "@", $crate::runtime::wit::since_v0_3::version!())
    };
}

/// The version of the `arc:llm` package these bindings speak.
pub const VERSION: &str = version!();

/// The world a module built for this version implements.
pub const WORLD: &str = arc_llm!("middleware");

/// This version, as the host selects it for a module that names it.
pub(super) const CONTRACT: super::Contract =
    super::Contract { version: VERSION, world: WORLD, bind: super::MiddlewarePre::v0_3 };

/// This version's types, as the hand-linked imports speak them.
pub(crate) struct V0_3;

impl super::Bindings for V0_3 {
    const VERSION: &'static str = VERSION;
    const STREAMING: bool = true;
    type Request = arc::llm::types::Request;
    type Response = arc::llm::types::Response;
    type Error = arc::llm::types::Error;
    type Level = arc::llm::logging::Level;
}
