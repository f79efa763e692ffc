//! `arcllm cache clear`: empties the compile cache of third-party modules.

use arcllm::runtime::DiskCache;

pub fn clear() -> anyhow::Result<()> {
    let Some(dir) = DiskCache::default_dir() else {
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
