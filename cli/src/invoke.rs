//! `arcllm invoke`: one prompt through the configured stack.

use std::path::PathBuf;

use arcllm::config::Config;
use arcllm::types::{Message, Options};
use arcllm::{load_model, Setting};

use crate::output;

#[derive(clap::Args)]
pub struct Args {
    /// Provider name (default: config.toml's defaults.provider).
    #[arg(long)]
    provider: Option<String>,
    /// Model (default: config.toml's defaults.model, else the provider's default_model).
    #[arg(long)]
    model: Option<String>,
    /// Enable the retry module for this call.
    #[arg(long, conflicts_with = "no_retry")]
    retry: bool,
    /// Disable the retry module for this call.
    #[arg(long)]
    no_retry: bool,
    /// Enable fallback to these providers, in order (comma-separated, `name` or `name/model`).
    #[arg(long, value_delimiter = ',')]
    fallback: Option<Vec<String>>,
    /// Config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the whole normalized response (usage, metadata) as JSON on stdout; a failed
    /// call prints `{"error": {...}}` instead (see the README for the shape).
    #[arg(long, conflicts_with = "stream")]
    json: bool,
    /// Print the answer's text as it arrives (logs stay on stderr).
    #[arg(long)]
    stream: bool,
    /// Most output tokens.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// The prompt.
    prompt: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    crate::init_logging("arcllm=warn");
    let config = Config::discover(args.config.as_deref())?;
    let provider = args.provider.clone().unwrap_or_else(|| config.provider.clone());
    let mut builder = load_model(&provider).config(config);
    if let Some(model) = &args.model {
        builder = builder.model(model);
    }
    if args.retry {
        builder = builder.retry(Setting::On);
    } else if args.no_retry {
        builder = builder.retry(Setting::Off);
    }
    if let Some(chain) = args.fallback {
        let table = serde_json::json!({ "chain": chain });
        builder = builder.fallback(Setting::from(table));
    }
    let model = builder.build().await?;
    let options = Options { max_tokens: args.max_tokens, ..Options::default() };
    let messages = vec![Message::user(args.prompt)];
    if args.stream {
        return stream(&model, messages, options).await.map_err(|error| {
            CallFailed(format!("calling {provider}: {}", output::error_line(&error))).into()
        });
    }
    let result = model.invoke(messages, vec![], options).await;
    match result {
        Ok(response) if args.json => {
            println!("{}", serde_json::to_string_pretty(&output::response(&response))?)
        }
        Ok(response) => println!("{}", response.content.unwrap_or_default()),
        Err(error) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&output::error(&error))?);
            }
            return Err(CallFailed(format!("calling {provider}: {}", output::error_line(&error))).into());
        }
    }
    Ok(())
}

/// Prints text deltas to stdout as they arrive, flushing each; a failure mid-stream ends
/// the line and is returned (what was printed stays printed).
async fn stream(
    model: &arcllm::Model,
    messages: Vec<Message>,
    options: Options,
) -> Result<(), arcllm::types::Error> {
    use arcllm::stream::StreamEvent;
    use futures_util::StreamExt;
    use std::io::Write;
    let mut events = model.invoke_stream(messages, vec![], options).await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(event) = events.next().await {
        match event {
            Ok(StreamEvent::TextDelta(text)) => {
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
            Ok(_) => {}
            Err(error) => {
                let _ = writeln!(stdout);
                return Err(error);
            }
        }
    }
    let _ = writeln!(stdout);
    Ok(())
}

/// The call reached the chain and failed (exit code 1, where a bad command line or
/// configuration exits with 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CallFailed(pub String);
