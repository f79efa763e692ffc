//! What can be wrong with a config file; every variant names the file.

use std::path::PathBuf;

use crate::runtime::LoadError;

/// Why a config file could not be turned into a [`Config`](super::Config): each variant
/// names the file (or the call) at fault so the user knows where to look.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists (or was looked for) but reading it failed.
    #[error("{}: cannot read the config file: {source}", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A file named explicitly (`--config` or `ARCLLM_CONFIG`) does not exist: naming a
    /// file that is not there is a mistake, not a request for the defaults.
    #[error("{}: cannot read the config file: no such file (named by {rule})", file.display())]
    Missing {
        /// The path that was named.
        file: PathBuf,
        /// Where the path came from: `--config` or `ARCLLM_CONFIG`.
        rule: &'static str,
    },
    /// The blocking task that reads the config and provider files panicked or was
    /// cancelled before it could report.
    #[error("{}: cannot read the config file: the reading task failed: {source}", file.display())]
    ReadTask {
        /// The config file (`<config>` for an in-memory config).
        file: PathBuf,
        /// Why the task did not finish.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}:{column}: TOML syntax error: {message}", file.display())]
    Syntax {
        /// The config file.
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// A key the schema does not know: usually a typo, so it is refused rather than ignored.
    #[error("{}: unknown key `{key}` in [{table}] (expected one of: {expected})", file.display())]
    UnknownKey {
        /// The config file.
        file: PathBuf,
        /// The table holding the key.
        table: String,
        /// The unknown key.
        key: String,
        /// The keys that table accepts, comma-separated.
        expected: String,
    },
    /// A known key whose value is not acceptable (wrong type, out of range, conflicting).
    #[error("{}: `{key}`: {message}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// Dotted path of the key at fault.
        key: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A per-call module setting (`load_model(...).retry(table)`) is invalid: it names the
    /// call, not config.toml, which is not at fault.
    #[error("per-call setting of module `{module}`: `{key}`: {message}")]
    Call {
        /// The module the setting is for.
        module: String,
        /// The key at fault.
        key: String,
        /// What is wrong with the value.
        message: String,
    },
    /// The `[state]` backend could not be set up (no URL in its environment variable, a
    /// URL the client refuses).
    #[error("{}: {source}", file.display())]
    State {
        /// The config file.
        file: PathBuf,
        /// What is wrong.
        #[source]
        source: crate::state::StateError,
    },
    /// A module named in `[modules.*]` could not be loaded or configured.
    #[error("{}: [modules.{module}]: {source}", file.display())]
    Module {
        /// The config file.
        file: PathBuf,
        /// The module's name in the config.
        module: String,
        /// Why loading failed.
        #[source]
        source: LoadError,
    },
}
