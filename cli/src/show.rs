//! `arcllm config show`: the effective config, each value's origin, and the stack.

use std::path::Path;

use arcllm::config::{Config, ModuleCode};

pub async fn run(explicit: Option<&Path>) -> anyhow::Result<()> {
    crate::init_logging("arcllm=warn");
    let located = Config::locate(explicit)?;
    let config = match &located {
        Some(found) => Config::from_file(&found.path)?,
        None => Config::embedded(),
    };
    match &located {
        Some(found) => println!("# config file: {} (found by {})", found.path.display(), found.rule),
        None => println!("# config file: none found; using the embedded default"),
    }
    let width = config.provenance().iter().map(|(k, v, _)| k.len() + v.len() + 3).max().unwrap_or(0);
    for (key, value, origin) in config.provenance() {
        println!("{:<width$}  # {origin}", format!("{key} = {value}"));
    }
    println!();
    println!("# stack, outermost first (enabled modules run; disabled are skipped):");
    for name in &config.order {
        let module = &config.modules[name];
        let code = match &module.code {
            ModuleCode::Builtin => "built-in".to_string(),
            ModuleCode::Wasm(path) => path.display().to_string(),
        };
        let state = if module.enabled { "enabled " } else { "disabled" };
        println!("#   {state}  {name}  ({code})");
    }
    println!(
        "#   provider  {}{}",
        config.provider,
        config.model.as_deref().map(|m| format!("/{m}")).unwrap_or_default()
    );
    for warning in &config.warnings {
        println!("# warning: {warning}");
    }
    let catalog = config.catalog()?;
    println!("# providers: {}", catalog.names().join(", "));
    Ok(())
}
