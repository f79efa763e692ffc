//! Compiled components on disk, so that a process loads a third-party module compiled by an
//! earlier one instead of compiling it again.
//!
//! Entries are named by the module's SHA-256 and the engine's fingerprint
//! (`engine_config::fingerprint`), so a changed module or an engine with other settings
//! never finds a stale entry. Compiled code is executable: it is read only from a
//! directory that the current user owns and nobody else can write, from files the current
//! user owns, and each entry carries the SHA-256 of its contents, so a truncated or
//! damaged file is recompiled (and rewritten), never loaded. Entries are written to a
//! temporary file and renamed into place, so a reader never sees half an entry.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// What an entry starts with: a format tag, then the SHA-256 of the rest.
const MAGIC: &[u8; 8] = b"arcllmc1";
const HEADER_LEN: usize = MAGIC.len() + 32;
const EXTENSION: &str = "cwasm";
const TEMP_PREFIX: &str = ".tmp-";

/// The environment variable that turns the cache off (`off`, `0`, `false` or `no`).
pub const CACHE_ENV: &str = "ARCLLM_CACHE";

/// A directory of compiled components, checked to be private to the current user.
#[derive(Clone, Debug)]
pub struct DiskCache {
    dir: PathBuf,
}

/// Why a cache directory is not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory could not be created or read.
    #[error("cannot create or read the compile cache directory {}", dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another user owns the directory: what it holds may not be ours.
    #[error("the compile cache directory {} is not owned by the current user; not using it", dir.display())]
    NotOwned {
        /// The directory.
        dir: PathBuf,
    },
    /// Other users may write the directory: they could plant code for us to run.
    #[error("the compile cache directory {} can be written by other users (mode {mode:o}); not using it", dir.display())]
    Shared {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a Unix system: ownership and permissions cannot be checked.
    #[error("a compile cache needs a Unix file system's owner and permission checks")]
    Unsupported,
}

impl DiskCache {
    /// `$XDG_CACHE_HOME/arcllm`, else `$HOME/.cache/arcllm` (None when neither is set to an
    /// absolute path).
    pub fn default_dir() -> Option<PathBuf> {
        let absolute = |var| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
        absolute("XDG_CACHE_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
            .map(|base| base.join("arcllm"))
    }

    /// The directory a runtime uses when not told otherwise: [`DiskCache::default_dir`],
    /// or none when `ARCLLM_CACHE` is `off` (or `0`, `false`, `no`).
    pub fn from_env() -> Option<PathBuf> {
        if Self::disabled_by_env() {
            None
        } else {
            Self::default_dir()
        }
    }

    /// Whether `ARCLLM_CACHE` turns the cache off (`off`, `0`, `false` or `no`): it does so
    /// whatever a runtime or config.toml's `[cache]` table says.
    pub fn disabled_by_env() -> bool {
        std::env::var(CACHE_ENV)
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "off" | "0" | "false" | "no"))
    }

    /// Opens `dir`, creating it (mode 0700) if needed. Errs when it is not owned by the
    /// current user or others can write it: compiled code from there could be anyone's.
    pub fn open(dir: impl Into<PathBuf>) -> Result<DiskCache, CacheError> {
        let dir = dir.into();
        check_private(&dir)?;
        Ok(DiskCache { dir })
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes every entry (and any temporary file left by an interrupted write); returns
    /// how many files were removed.
    pub fn clear(&self) -> Result<usize, CacheError> {
        let io_error = |source| CacheError::Io { dir: self.dir.clone(), source };
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.starts_with(TEMP_PREFIX) || name.ends_with(&format!(".{EXTENSION}"));
            if ours && entry.file_type().map_err(io_error)?.is_file() {
                fs::remove_file(entry.path()).map_err(io_error)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The path of the entry for the module with SHA-256 `digest` compiled by an engine
    /// with `fingerprint`.
    fn entry_path(&self, digest: &[u8; 32], fingerprint: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}-{}.{EXTENSION}", hex(digest), hex(fingerprint)))
    }

    /// The compiled component stored for `digest` and `fingerprint`, if there is one that
    /// the current user wrote and that is whole. A damaged or foreign entry reads as absent.
    pub(crate) fn get(&self, digest: &[u8; 32], fingerprint: &[u8; 32]) -> Option<Vec<u8>> {
        let path = self.entry_path(digest, fingerprint);
        let mut file = fs::File::open(&path).ok()?;
        // Checked on the open file, so the file read is the file checked.
        let meta = file.metadata().ok()?;
        if !meta.is_file() || !owned_by_current_user(&meta) {
            tracing::warn!(entry = %path.display(), "compile cache entry not owned by the current user; ignoring it");
            return None;
        }
        let mut contents = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut contents).ok()?;
        let whole = contents.len() >= HEADER_LEN
            && &contents[..MAGIC.len()] == MAGIC
            && contents[MAGIC.len()..HEADER_LEN] == Sha256::digest(&contents[HEADER_LEN..])[..];
        if !whole {
            tracing::debug!(entry = %path.display(), "damaged compile cache entry; recompiling");
            return None;
        }
        contents.drain(..HEADER_LEN);
        Some(contents)
    }

    /// Stores `artifact` for `digest` and `fingerprint`, replacing any entry there.
    pub(crate) fn put(&self, digest: &[u8; 32], fingerprint: &[u8; 32], artifact: &[u8]) -> io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = create_private(&temp)?;
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(artifact))?;
            file.write_all(artifact)?;
            drop(file);
            fs::rename(&temp, self.entry_path(digest, fingerprint))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(unix)]
fn check_private(dir: &Path) -> Result<(), CacheError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let io_error = |source| CacheError::Io { dir: dir.to_path_buf(), source };
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error)?;
    let meta = fs::metadata(dir).map_err(io_error)?;
    if !owned_by_current_user(&meta) {
        return Err(CacheError::NotOwned { dir: dir.to_path_buf() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CacheError::Shared { dir: dir.to_path_buf(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_dir: &Path) -> Result<(), CacheError> {
    Err(CacheError::Unsupported)
}

#[cfg(unix)]
fn owned_by_current_user(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    meta.uid() == unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn owned_by_current_user(_meta: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> io::Result<fs::File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
