//! `arcllm module check FILE.wasm`: is this a valid arcllm module?

use std::path::Path;

use anyhow::Context;
use arcllm::runtime::Runtime;

pub async fn run(file: &Path, config: &str) -> anyhow::Result<()> {
    crate::init_logging("arcllm=warn");
    let table: serde_json::Value = serde_json::from_str(config).context("--config must be a JSON object")?;
    let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "module".into());
    let runtime = Runtime::shared()?;
    let module = runtime.load_module_file(&name, file, &table).await.map_err(NotAModule)?;
    println!("{}: a valid arcllm module", file.display());
    println!(
        "  world:   arc:llm/middleware@{} (exports arc:llm/provider, arc:llm/module)",
        module.contract_version()
    );
    println!("  sha256:  {}", module.digest().iter().map(|b| format!("{b:02x}")).collect::<String>());
    println!("  imports:");
    for import in module.imports() {
        println!("    {import}");
    }
    Ok(())
}

/// The file was read and is not a usable module (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct NotAModule(pub arcllm::runtime::LoadError);
