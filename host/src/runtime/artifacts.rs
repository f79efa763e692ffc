//! Where a module's compiled code comes from: precompiled into the binary (the
//! built-ins), the compile cache on disk (anything compiled before by an engine with the
//! same settings), or Cranelift, whose output then goes to the disk cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use wasmtime::component::Component;
use wasmtime::Engine;

use super::disk_cache::DiskCache;
use super::engine_config;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/precompiled.rs"));
}

/// One runtime's sources of compiled code.
pub(crate) struct Artifacts {
    /// What this runtime's engine compiles for (`engine_config::fingerprint`).
    fingerprint: [u8; 32],
    /// The cache directory asked for; opened (and checked) on first use.
    disk_dir: Option<PathBuf>,
    disk: OnceLock<Option<DiskCache>>,
    /// Other directories handles of this runtime were given
    /// ([`Runtime::with_disk_cache`](super::Runtime::with_disk_cache)), each opened and
    /// checked once.
    other_disks: Mutex<HashMap<PathBuf, Option<DiskCache>>>,
}

impl Artifacts {
    pub(crate) fn new(engine: &Engine, disk_dir: Option<PathBuf>) -> Self {
        Artifacts {
            fingerprint: engine_config::fingerprint(engine),
            disk_dir,
            disk: OnceLock::new(),
            other_disks: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the built-ins embedded precompiled fit this engine.
    pub(crate) fn builtins_precompiled(&self) -> bool {
        !embedded::PRECOMPILED.is_empty() && self.fingerprint == embedded::FINGERPRINT
    }

    /// The disk cache, opened on first use; `None` when off or not private to this user
    /// (which is logged once, as a warning).
    pub(crate) fn disk(&self) -> Option<&DiskCache> {
        self.disk.get_or_init(|| self.disk_dir.as_deref().and_then(open_disk)).as_ref()
    }

    /// The disk cache in `dir`, opened (and checked) the first time it is asked for.
    pub(crate) fn disk_at(&self, dir: &Path) -> Option<DiskCache> {
        if self.disk_dir.as_deref() == Some(dir) {
            return self.disk().cloned();
        }
        let mut others = self.other_disks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        others.entry(dir.to_path_buf()).or_insert_with(|| open_disk(dir)).clone()
    }

    /// The component for `bytes` (whose SHA-256 is `digest`), compiled for `engine`.
    /// Blocking: call it off the async threads.
    /// `disk` is the compile cache to read and fill, if any.
    pub(crate) fn component(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &[u8; 32],
        disk: Option<&DiskCache>,
    ) -> wasmtime::Result<Component> {
        if let Some(component) = self.embedded(engine, digest) {
            return Ok(component);
        }
        if let Some(artifact) = disk.and_then(|disk| disk.get(digest, &self.fingerprint)) {
            // SAFETY: `Component::deserialize` trusts its input to be wasmtime's own output
            // for a compatible engine: loading anything else may run arbitrary code. This
            // entry is in a directory only the current user can write (`DiskCache::open`),
            // in a file the current user owns, and its contents match the SHA-256 written
            // beside them when `put` stored `Component::serialize`'s output below, so it is
            // that output, made by an engine with this fingerprint. wasmtime checks its
            // version and settings once more and errs (never loads) on a mismatch.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::debug!("unusable compile cache entry ({e:#}); recompiling"),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some(disk) = disk {
            match component.serialize().map_err(|e| e.to_string()).and_then(|artifact| {
                disk.put(digest, &self.fingerprint, &artifact).map_err(|e| e.to_string())
            }) {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(dir = %disk.dir().display(), "could not write to the compile cache: {e}")
                }
            }
        }
        Ok(component)
    }

    /// The built-in with SHA-256 `digest`, precompiled, when it fits this engine.
    fn embedded(&self, engine: &Engine, digest: &[u8; 32]) -> Option<Component> {
        let (_, artifact) = embedded::PRECOMPILED.iter().find(|(d, _)| d == digest)?;
        if !self.builtins_precompiled() {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the precompiled built-in modules do not fit this engine (a memory limit or \
                     pooling setting other than the default, or another CPU than the build's); \
                     compiling them"
                );
            }
            return None;
        }
        // SAFETY: `Component::deserialize` trusts its input to be wasmtime's own output for
        // a compatible engine. This artifact is part of this binary: build.rs made it with
        // `Engine::precompile_component` of this same wasmtime, configured by the same
        // `engine_config` code, and its engine's fingerprint equals this engine's (checked
        // just above). wasmtime checks its version and settings once more and errs (never
        // loads) on a mismatch.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => {
                release_pages(artifact);
                Some(component)
            }
            Err(e) => {
                tracing::warn!("could not load a precompiled built-in module ({e:#}); compiling it");
                None
            }
        }
    }
}

/// Unmaps the pages of `bytes`, part of this binary's read-only data, from the process.
///
/// wasmtime copies a precompiled component into memory of its own, so the artifact's pages
/// are read once and never again; left mapped they stay in the process's resident set
/// (about 2 MiB for the built-ins a gateway loads). They are clean pages of the executable:
/// `MADV_DONTNEED` drops them from this process only (the page cache keeps them), and a
/// later read, such as another runtime loading the same built-in, maps them back from the
/// file, whose contents cannot change while it runs. Only whole pages inside `bytes` are
/// given back; a shared edge page may hold other data.
fn release_pages(bytes: &'static [u8]) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let start = (bytes.as_ptr() as usize).next_multiple_of(page);
        let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
        if end > start {
            // SAFETY: the range is whole pages of a private, read-only file mapping (this
            // binary's `include_bytes!` data, never written), so dropping them loses
            // nothing: any later access refaults the same bytes from the file. No Rust
            // reference is invalidated, only its backing pages.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = bytes;
}

/// The cache in `dir`, or `None` (with a warning) when it cannot be used.
fn open_disk(dir: &Path) -> Option<DiskCache> {
    DiskCache::open(dir)
        .inspect_err(|e| tracing::warn!("{}; compiling modules in every process", error_chain(e)))
        .ok()
}

/// `error: its source: …`, for a log line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}
