//! What can be wrong with a config file; every variant names the file.

use std::path::PathBuf;

use crate::runtime::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {reason}", file.display())]
    Read { file: PathBuf, reason: String },
    #[error("{}:{line}:{column}: TOML syntax error: {message}", file.display())]
    Syntax { file: PathBuf, line: usize, column: usize, message: String },
    #[error("{}: unknown key `{key}` in [{table}] (expected one of: {expected})", file.display())]
    UnknownKey { file: PathBuf, table: String, key: String, expected: String },
    #[error("{}: `{key}`: {message}", file.display())]
    Invalid { file: PathBuf, key: String, message: String },
    /// A per-call module setting (`load_model(...).retry(table)`) is invalid: it names the
    /// call, not config.toml, which is not at fault.
    #[error("per-call setting of module `{module}`: `{key}`: {message}")]
    Call { module: String, key: String, message: String },
    #[error("{}: [modules.{module}]: {source}", file.display())]
    Module {
        file: PathBuf,
        module: String,
        #[source]
        source: LoadError,
    },
}
