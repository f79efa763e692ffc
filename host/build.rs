//! Compiles the built-in modules in `guest-modules/` to components and embeds them (see
//! `src/builtin.rs`), so the `arcllm` binary is self-contained.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    arcllm_guest_build::build(
        &root.join("guest-modules").join("Cargo.toml"),
        &["arcllm-passthrough", "arcllm-retry", "arcllm-fallback"],
    );
}
