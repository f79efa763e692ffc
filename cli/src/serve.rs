//! `arcllm serve`: the OpenAI- and Anthropic-compatible gateway (see the `arcllm-gateway`
//! crate and docs/gateway.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use arcllm_gateway::GatewayConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Config file (default: $ARCLLM_CONFIG, ./arcllm.toml, $XDG_CONFIG_HOME/arcllm/config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (default: config.toml's [server] listen, else 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = GatewayConfig::discover(args.config.as_deref())?;
    let level = &config.server.log_level;
    crate::init_logging(&format!("arcllm={level},arcllm_gateway={level}"));
    for warning in &config.config.warnings {
        tracing::warn!("{warning}");
    }
    arcllm_gateway::run(config, args.listen).await?;
    Ok(())
}
