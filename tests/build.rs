//! Builds the test fixture modules in `guest-fixtures/` to components.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    arcllm_guest_build::build(
        &root.join("guest-fixtures").join("Cargo.toml"),
        &["fixture-tag", "fixture-tag-v0-2", "fixture-hostile", "fixture-reads-files"],
    );
}
