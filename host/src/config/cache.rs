//! `[cache]`: the compile cache on disk for third-party modules.

use std::path::{Path, PathBuf};

use super::read::Reader;
use super::ConfigError;
use crate::runtime::{DiskCache, CACHE_ENV};

/// `[cache]`: whether third-party modules' compiled code is kept on disk across
/// processes, and where.
///
/// The cache is used only when both this table and the environment allow it:
/// `enabled = false` turns it off whatever `ARCLLM_CACHE` says, and `ARCLLM_CACHE=off`
/// turns it off whatever this table says (off wins either way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// `enabled` (default true): false compiles third-party modules in every process.
    pub enabled: bool,
    /// `dir`: the cache's directory, relative to the config file (default
    /// `$XDG_CACHE_HOME/arcllm`, else `~/.cache/arcllm`). It must be the current user's
    /// alone, or it is not used (see [`DiskCache::open`]).
    pub dir: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { enabled: true, dir: None }
    }
}

impl CacheConfig {
    /// What a runtime handle should use instead of its runtime's own cache: `None` to
    /// keep the runtime's (neither key set), `Some(None)` for no cache, `Some(Some(dir))`
    /// for that directory.
    pub fn disk_override(&self) -> Option<Option<PathBuf>> {
        if !self.enabled {
            return Some(None);
        }
        let dir = self.dir.clone()?;
        Some((!DiskCache::disabled_by_env()).then_some(dir))
    }

    /// The directory `arcllm cache clear` empties: `dir`, else the default one.
    pub fn directory(&self) -> Option<PathBuf> {
        self.dir.clone().or_else(DiskCache::default_dir)
    }
}

/// The keys of `[cache]`.
const CACHE_KEYS: &[&str] = &["enabled", "dir"];

impl Reader<'_> {
    /// `[cache]`, with `dir` resolved against `base` (the config file's directory).
    pub(super) fn cache(&self, table: &toml::Table, base: &Path) -> Result<CacheConfig, ConfigError> {
        self.only_keys(table, "cache", CACHE_KEYS)?;
        let enabled = match table.get("enabled") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                return Err(self.invalid("cache.enabled", format!("must be true or false, got {other}")))
            }
        };
        let dir = match table.get("dir") {
            None => None,
            Some(toml::Value::String(dir)) if !dir.trim().is_empty() => Some(base.join(dir)),
            Some(other) => {
                return Err(self.invalid(
                    "cache.dir",
                    format!("must be a directory path (relative to the config file), got {other}; {CACHE_ENV}=off or `enabled = false` turns the cache off"),
                ))
            }
        };
        Ok(CacheConfig { enabled, dir })
    }
}
