//! Compiles the built-in modules in `guest-modules/` to components and embeds them (see
//! `src/builtin.rs`), so the `arcllm` binary is self-contained; then precompiles them to
//! native code with the runtime's own engine configuration (`src/runtime/engine_config.rs`),
//! so that a process loads them without compiling anything (`src/runtime/artifacts.rs`).

use std::path::{Path, PathBuf};

#[path = "src/runtime/engine_config.rs"]
#[allow(dead_code)]
mod engine_config;

const BUILTINS: &[&str] =
    &["arcllm-passthrough", "arcllm-retry", "arcllm-fallback", "arcllm-rate-limit", "arcllm-circuit-breaker"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed=src/runtime/engine_config.rs");
    let built = arcllm_guest_build::build(&root.join("guest-modules").join("Cargo.toml"), BUILTINS);
    precompile(&built);
}

/// Writes `precompiled.rs` into `OUT_DIR`: the engine fingerprint the artifacts were made
/// for, and each built-in's SHA-256 beside its precompiled form. When the build targets
/// another machine than the one running this script (cross-compiling), the table is empty
/// and the runtime compiles the built-ins itself.
fn precompile(built: &[PathBuf]) {
    use sha2::Digest;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    let cross = std::env::var("TARGET").ok() != std::env::var("HOST").ok();
    let mut table = String::new();
    let mut fingerprint = [0u8; 32];
    if !cross {
        let engine = wasmtime::Engine::new(&engine_config::EngineSettings::default().compile_only_config())
            .unwrap_or_else(|e| {
                panic!("could not create the wasm engine to precompile the built-ins: {e:#}")
            });
        fingerprint = engine_config::fingerprint(&engine);
        for wasm_path in built {
            let wasm = std::fs::read(wasm_path).unwrap_or_else(|e| panic!("{}: {e}", wasm_path.display()));
            let artifact = engine
                .precompile_component(&wasm)
                .unwrap_or_else(|e| panic!("precompiling {}: {e:#}", wasm_path.display()));
            let artifact_path = wasm_path.with_extension("cwasm");
            std::fs::write(&artifact_path, artifact)
                .unwrap_or_else(|e| panic!("{}: {e}", artifact_path.display()));
            let digest: [u8; 32] = sha2::Sha256::digest(&wasm).into();
            table.push_str(&format!(
                "    ({digest:?}, include_bytes!({:?})),\n",
                artifact_path.display().to_string()
            ));
        }
    }
    let code = format!(
        "/// The fingerprint (`engine_config::fingerprint`) of the engine that made [`PRECOMPILED`].\n\
         pub(crate) const FINGERPRINT: [u8; 32] = {fingerprint:?};\n\
         /// Each built-in's SHA-256 and its precompiled component.\n\
         pub(crate) static PRECOMPILED: &[([u8; 32], &[u8])] = &[\n{table}];\n"
    );
    std::fs::write(out_dir.join("precompiled.rs"), code).expect("writing precompiled.rs");
}
