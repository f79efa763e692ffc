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
    // Equality for tests and callers; serde for `arcllm invoke --json` and logs.
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});
