//! Host-side bindings of the `arc:llm/middleware` world (`wit/arcllm.wit`).
//!
//! Imports are not bound through generated `Host` traits: the `provider` import must call
//! into the next layer's instance, which needs the whole store, so `runtime::linker`
//! defines every import by hand with `func_wrap_async`. Only the types and the typed
//! export accessors are used from here.

wasmtime::component::bindgen!({
    world: "middleware",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
    with: { "arc:llm/types.request-handle": crate::runtime::bindings::HeldRequest },
    // Equality for tests and callers; serde for `arcllm invoke --json` and logs.
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});

/// The full name of an item of the `arc:llm` package, at the one version this host speaks
/// (`wit/arcllm.wit`): `arc_llm!("provider")` is `"arc:llm/provider@0.2.0"`.
macro_rules! arc_llm {
    ($item:literal) => {
        concat!("arc:llm/", $item, "@0.2.0")
    };
}
pub(crate) use arc_llm;

/// The world every module implements, with its version.
pub const WORLD: &str = arc_llm!("middleware");

/// What a `request-handle` refers to: the request itself, kept in the call's resource
/// table so that modules pass it on by handle instead of copying it into each other.
pub struct HeldRequest(pub arc::llm::types::Request);
