//! The `arcllm` command: invoke a model through its stack, show the effective config,
//! check a module file, or run the demo against local vendor-like servers.

mod cache;
mod check;
mod demo;
mod invoke;
mod output;
mod serve;
mod show;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "arcllm", version, about = "Resilient, sandboxed middleware in front of LLM APIs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send one prompt through the configured stack and print the answer.
    Invoke(invoke::Args),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect module files.
    Module {
        #[command(subcommand)]
        command: ModuleCommand,
    },
    /// Manage the compile cache of third-party modules ([cache] dir, else $XDG_CACHE_HOME/arcllm).
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Serve the configured stacks over HTTP, in OpenAI's and Anthropic's API shapes.
    Serve(serve::Args),
    /// Run real stacks against local servers that fail like real vendors (no API key needed).
    Demo,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective config, where each value came from, and the module stack.
    Show {
        /// Config file (default: $ARCLLM_CONFIG, ./arcllm.toml, $XDG_CONFIG_HOME/arcllm/config.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Remove every compiled module from the cache (config.toml's `[cache] dir`, else
    /// $XDG_CACHE_HOME/arcllm).
    Clear {
        /// Config file (default: $ARCLLM_CONFIG, ./arcllm.toml, $XDG_CONFIG_HOME/arcllm/config.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModuleCommand {
    /// Tell whether FILE is a valid arcllm module, and print its world and imports.
    Check {
        file: PathBuf,
        /// The module's configuration table, as JSON (checked by the module itself).
        #[arg(long, default_value = "{}")]
        config: String,
    },
}

/// Module instances the `arcllm` command's runtime may have alive at once: a stack of up
/// to 16 modules (each stack may hold half the pool), its load-time checks, and the demo's
/// handful of concurrent scenario calls.
const ONE_SHOT_MAX_INSTANCES: u32 = 64;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Every command makes at most one call at a time: a small instance pool is made
    // sooner (its stacks are reserved up front), and is all one call needs. No stores are
    // made ahead of calls: the process ends after its call (`serve` sizes its own runtime).
    if let Err(e) = arcllm::runtime::Runtime::configure_shared(
        arcllm::runtime::Runtime::builder().max_instances(ONE_SHOT_MAX_INSTANCES).ready_stores(0),
    ) {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let result = runtime.block_on(async {
        match cli.command {
            Command::Invoke(args) => invoke::run(args).await,
            Command::Config { command: ConfigCommand::Show { config } } => show::run(config.as_deref()).await,
            Command::Module { command: ModuleCommand::Check { file, config } } => {
                check::run(&file, &config).await
            }
            Command::Cache { command: CacheCommand::Clear { config } } => cache::clear(config.as_deref()),
            Command::Demo => demo::run().await,
            Command::Serve(args) => serve::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            // 1: the command ran and its answer is a failure (a call that failed, a module
            // that is not valid, a demo that went wrong); 2: it could not run (bad command
            // line — clap exits 2 itself — or configuration).
            let ran = e.downcast_ref::<invoke::CallFailed>().is_some()
                || e.downcast_ref::<check::NotAModule>().is_some()
                || e.downcast_ref::<demo::DemoFailed>().is_some();
            std::process::ExitCode::from(if ran { 1 } else { 2 })
        }
    }
}

/// An error and its causes on one line, each cause once: errors that already quote their
/// source in their own message are not repeated.
fn causes(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Logs go to stderr; `RUST_LOG` refines them (default: module warnings and up).
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .try_init();
}
