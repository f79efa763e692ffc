//! `arcllm cache clear`: empties the compile cache of third-party modules.

use std::path::Path;

use arcllm::config::Config;
use arcllm::runtime::DiskCache;

pub fn clear(explicit: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::discover(explicit)?;
    let Some(dir) = config.cache.directory() else {
        println!("no cache directory (neither XDG_CACHE_HOME nor HOME is set)");
        return Ok(());
    };
    if !dir.exists() {
        println!("{}: no cache yet", dir.display());
        return Ok(());
    }
    let removed = DiskCache::open(&dir)?.clear()?;
    println!("{}: removed {removed} compiled module(s)", dir.display());
    Ok(())
}
