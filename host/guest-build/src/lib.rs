//! Compiles a Cargo workspace of guest modules to `wasm32-wasip2` components from a build
//! script, so that `cargo build` of the host is all a user runs.
//!
//! The nested `cargo` gets its own target directory (no lock contention with the outer
//! build) and a clean environment (the outer build's RUSTFLAGS and target settings are for
//! the host, not the guest). Where rustup's auto-install is off, the `wasm32-wasip2` target
//! is added here with `rustup target add`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// Builds every cdylib of the workspace at `manifest` in release mode and copies the
/// components named in `artifacts` (crate names with `-` → `_`) into `OUT_DIR`.
/// Returns their paths in `OUT_DIR`. Panics with a readable message on failure: this runs
/// in a build script, where a panic is how an error is reported.
pub fn build(manifest: &Path, artifacts: &[&str]) -> Vec<PathBuf> {
    let workspace = manifest.parent().expect("manifest has a parent directory");
    println!("cargo:rerun-if-changed={}", workspace.display());
    println!("cargo:rerun-if-env-changed=ARCLLM_GUEST_TARGET_DIR");
    ensure_target();

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    let target_dir = guest_target_dir(&out_dir, workspace);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("CARGO_PROFILE_") {
            cmd.env_remove(key);
        }
    }
    let status =
        cmd.status().unwrap_or_else(|e| panic!("could not run cargo to build the guest modules: {e}"));
    if !status.success() {
        panic!(
            "building the guest modules in {} failed ({status}); see the errors above",
            workspace.display()
        );
    }

    let built = target_dir.join(TARGET).join("release");
    artifacts
        .iter()
        .map(|name| {
            let file = format!("{}.wasm", name.replace('-', "_"));
            let dest = out_dir.join(&file);
            std::fs::copy(built.join(&file), &dest)
                .unwrap_or_else(|e| panic!("guest module {file} was not built in {}: {e}", built.display()));
            dest
        })
        .collect()
}

/// `<target>/guest-modules/<workspace dir name>`, beside the outer build's own profiles.
fn guest_target_dir(out_dir: &Path, workspace: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("ARCLLM_GUEST_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out.
    let target = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent())
        .and_then(|profile| profile.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("guest-target"));
    let name = workspace.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.join("guest-modules").join(name)
}

/// Adds the wasm32-wasip2 standard library when the active toolchain lacks it.
fn ensure_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.as_deref().is_some_and(Path::is_dir) {
        return;
    }
    println!("cargo:warning=adding the {TARGET} target with rustup (needed to build the guest modules)");
    let status = Command::new("rustup").args(["target", "add", TARGET]).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("`rustup target add {TARGET}` failed ({s}); run it by hand"),
        Err(e) => panic!("the {TARGET} target is missing and rustup could not be run ({e}); install it"),
    }
}
