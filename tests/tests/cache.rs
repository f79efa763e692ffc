//! Where compiled code comes from: the built-ins precompiled into the binary, and the
//! compile cache on disk for everything else — a damaged or stale entry is recompiled,
//! a directory others can write is not used.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arcllm::runtime::{DiskCache, ModuleSource, Runtime, Stack};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::json;

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    entries
}

/// Loads the tag fixture into `runtime` and calls it once: the call must succeed.
async fn load_and_call(runtime: &Runtime) {
    let module = runtime
        .load_module("tag", ModuleSource::Bytes, fixtures::TAG.to_vec(), &json!({"tag": "cached"}))
        .await
        .expect("load");
    let stack = Stack::new(runtime.clone(), vec![module], ScriptedProvider::ok("anthropic"));
    let response = stack.invoke(Request::new(vec![Message::user("hi")])).await.expect("invoke");
    assert_eq!(response.model, "anthropic-model");
}

fn runtime_with_cache(dir: &Path) -> Runtime {
    Runtime::builder().disk_cache(Some(dir.to_path_buf())).build().unwrap()
}

#[tokio::test]
async fn a_compiled_module_is_stored_once_and_found_by_the_next_runtime() {
    let dir = private_dir();
    load_and_call(&runtime_with_cache(dir.path())).await;
    let stored = entries(dir.path());
    assert_eq!(stored.len(), 1, "one entry per module and engine");
    let modified = std::fs::metadata(&stored[0]).unwrap().modified().unwrap();
    let mode = std::fs::metadata(&stored[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A fresh runtime (nothing compiled in memory) loads it from the entry, untouched.
    load_and_call(&runtime_with_cache(dir.path())).await;
    assert_eq!(entries(dir.path()), stored);
    assert_eq!(std::fs::metadata(&stored[0]).unwrap().modified().unwrap(), modified);
}

#[tokio::test]
async fn a_damaged_entry_is_recompiled_and_rewritten() {
    let dir = private_dir();
    load_and_call(&runtime_with_cache(dir.path())).await;
    let entry = entries(dir.path()).remove(0);
    let good = std::fs::read(&entry).unwrap();

    // Flip a byte of the compiled code: the checksum no longer matches.
    let mut damaged = good.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&entry, &damaged).unwrap();
    load_and_call(&runtime_with_cache(dir.path())).await;
    assert_eq!(std::fs::read(&entry).unwrap(), good, "the entry is written again");

    // Cut short.
    std::fs::write(&entry, &good[..good.len() / 3]).unwrap();
    load_and_call(&runtime_with_cache(dir.path())).await;
    assert_eq!(std::fs::read(&entry).unwrap(), good);
}

#[tokio::test]
async fn a_stale_entry_from_an_engine_with_other_settings_is_recompiled() {
    let dir = private_dir();
    load_and_call(&runtime_with_cache(dir.path())).await;
    let ours = entries(dir.path()).remove(0);
    let good = std::fs::read(&ours).unwrap();

    // Another memory limit changes compiled code (the pool's memory reservation): that
    // engine's entry has another name.
    let other =
        Runtime::builder().memory_limit(32 << 20).disk_cache(Some(dir.path().into())).build().unwrap();
    load_and_call(&other).await;
    let theirs = entries(dir.path()).into_iter().find(|p| *p != ours).expect("the other engine's entry");

    // Its (whole, checksummed) entry under this engine's name: wasmtime refuses it, and
    // the module is compiled again and the entry rewritten.
    std::fs::copy(&theirs, &ours).unwrap();
    load_and_call(&runtime_with_cache(dir.path())).await;
    assert_eq!(std::fs::read(&ours).unwrap(), good);
}

#[tokio::test]
async fn a_cache_directory_others_can_write_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let runtime = runtime_with_cache(dir.path());
    assert!(runtime.disk_cache().is_none());
    load_and_call(&runtime).await;
    assert!(entries(dir.path()).is_empty(), "nothing is written there");
    assert!(DiskCache::open(dir.path()).unwrap_err().to_string().contains("other users"));

    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
    assert!(runtime_with_cache(dir.path()).disk_cache().is_none(), "group-writable is shared too");
}

#[tokio::test]
async fn the_cache_directory_is_created_private_and_cleared() {
    let parent = private_dir();
    let dir = parent.path().join("nested").join("arcllm");
    load_and_call(&runtime_with_cache(&dir)).await;
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(entries(&dir).len(), 1);
    let cache = DiskCache::open(&dir).unwrap();
    assert_eq!(cache.clear().unwrap(), 1);
    assert!(entries(&dir).is_empty());
}

#[tokio::test]
async fn the_default_runtime_loads_the_built_ins_precompiled() {
    let dir = private_dir();
    let runtime = runtime_with_cache(dir.path());
    assert!(runtime.uses_precompiled_builtins());
    builtin(&runtime, "retry", json!({})).await;
    assert!(entries(dir.path()).is_empty(), "precompiled built-ins need no cache entry");

    // Another memory limit: compiled (and cached), and it works the same.
    let other =
        Runtime::builder().memory_limit(32 << 20).disk_cache(Some(dir.path().into())).build().unwrap();
    assert!(!other.uses_precompiled_builtins());
    let retry = builtin(&other, "retry", json!({})).await;
    assert_eq!(entries(dir.path()).len(), 1);
    let inner: Arc<dyn Provider> = ScriptedProvider::ok("anthropic");
    let stack = Stack::new(other, vec![retry], inner);
    stack.invoke(Request::new(vec![Message::user("hi")])).await.expect("invoke");
}

/// A config directory with the tag fixture as a third-party module `tag` and `cache`
/// as its `[cache]` table.
fn tag_config(dir: &Path, cache: &str) -> arcllm::config::Config {
    std::fs::write(dir.join("tag.wasm"), fixtures::TAG).unwrap();
    let text = format!(
        "[defaults]\nprovider = \"ollama\"\n[stack]\norder = [\"tag\"]\n[modules.tag]\nenabled = true\nwasm = \"tag.wasm\"\ntag = \"cached\"\n[cache]\n{cache}\n"
    );
    let file = dir.join("config.toml");
    std::fs::write(&file, text).unwrap();
    arcllm::config::Config::from_file(&file).unwrap_or_else(|e| panic!("config: {e}"))
}

#[tokio::test]
async fn config_cache_dir_holds_the_models_compiled_modules() {
    let dir = private_dir();
    let runtimes_own = private_dir();
    let config = tag_config(dir.path(), "dir = \"compiled\"");
    assert_eq!(config.cache.dir.as_deref(), Some(dir.path().join("compiled").as_path()));
    let model = arcllm::load_model("ollama")
        .config(config)
        .runtime(runtime_with_cache(runtimes_own.path()))
        .build()
        .await
        .expect("build");
    assert_eq!(model.stack_names(), ["tag"]);
    // The config's directory, made private, and not the runtime's own.
    let compiled = dir.path().join("compiled");
    assert_eq!(entries(&compiled).len(), 1);
    assert_eq!(std::fs::metadata(&compiled).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(entries(runtimes_own.path()).is_empty());
}

#[tokio::test]
async fn config_cache_enabled_false_compiles_without_the_disk() {
    let dir = private_dir();
    let runtimes_own = private_dir();
    let config = tag_config(dir.path(), "enabled = false");
    assert!(!config.cache.enabled);
    let model = arcllm::load_model("ollama")
        .config(config)
        .runtime(runtime_with_cache(runtimes_own.path()))
        .build()
        .await
        .expect("build");
    assert_eq!(model.stack_names(), ["tag"]);
    assert!(entries(runtimes_own.path()).is_empty(), "the runtime's cache is not used either");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "only config.toml and tag.wasm");
}

#[test]
fn config_cache_keys_are_checked() {
    let dir = private_dir();
    let file = dir.path().join("config.toml");
    let error = |text: &str| {
        std::fs::write(&file, text).unwrap();
        arcllm::config::Config::from_file(&file).expect_err("must be rejected").to_string()
    };
    let e = error("[cache]\nenabled = \"no\"\n");
    assert!(e.contains("cache.enabled") && e.contains("true or false"), "{e}");
    let e = error("[cache]\ndir = 3\n");
    assert!(e.contains("cache.dir") && e.contains("directory path"), "{e}");
    let e = error("[cache]\ndir = \"\"\n");
    assert!(e.contains("cache.dir"), "{e}");
    let e = error("[cache]\nsize = 10\n");
    assert!(e.contains("size") && e.contains("enabled, dir"), "{e}");
    // The default: on, in the runtime's directory.
    let config = arcllm::config::Config::embedded();
    assert!(config.cache.enabled && config.cache.dir.is_none());
    assert_eq!(config.cache.disk_override(), None);
}
