//! Typed errors for provider files and the catalog.
//!
//! Every variant names the provider, the file it came from and the key at fault, so a user
//! can fix the right line without guessing. None of them ever carries an API key value:
//! only the *name* of the environment variable that should hold it.

use std::path::PathBuf;

use thiserror::Error;

use super::config::ConfigSource;
use crate::target::NameError;
use crate::types;

/// What can be wrong with a provider file or a catalog lookup.
#[derive(Debug, Error)]
pub enum ProviderConfigError {
    /// The provider file could not be read.
    #[error("provider `{provider}`: cannot read {path}: {source}")]
    Read {
        /// The provider the file defines (its file stem).
        provider: String,
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid TOML, or does not match the provider schema.
    #[error("provider `{provider}` in {file}: {}: {message}", key_phrase(key))]
    Invalid {
        /// The provider being defined.
        provider: String,
        /// The built-in or user file that defines it.
        file: ConfigSource,
        /// Dotted key at fault (`provider.base_url`), when it could be located.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },

    /// A user file is named so that it cannot define a provider.
    #[error("provider file {path}: {source}")]
    InvalidName {
        /// The file stem that would have been the provider's name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why the stem is not a valid provider name.
        #[source]
        source: NameError,
    },

    /// A `providers_dir` (or the implicit `providers/`) that is not a directory.
    #[error("providers directory {path}{}: is not a directory", key_suffix(key))]
    NotADirectory {
        /// The path that was given.
        path: PathBuf,
        /// `providers_dir` when the config named it; `None` for the implicit `providers/`.
        key: Option<String>,
    },

    /// A `providers_dir` (or the implicit `providers/`) whose listing could not be read.
    #[error("providers directory {path}{}: {source}", key_suffix(key))]
    Directory {
        /// The directory.
        path: PathBuf,
        /// `providers_dir` when the config named it; `None` for the implicit `providers/`.
        key: Option<String>,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },

    /// No provider of that name, built in or in the user's directory.
    #[error("unknown provider `{name}`; known providers: {}", known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every provider the catalog knows, sorted.
        known: Vec<String>,
    },

    /// `api_key_required` is true but the environment variable is unset or empty.
    #[error(
        "provider `{provider}` in {file}: the API key environment variable `{env}` (key `provider.api_key_env`) is not set"
    )]
    MissingApiKey {
        /// The provider that needs the key.
        provider: String,
        /// The file that defines the provider.
        file: ConfigSource,
        /// The name of the environment variable (never its value).
        env: String,
    },
}

fn key_suffix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!(" (key `{k}`)")).unwrap_or_default()
}

fn key_phrase(key: &Option<String>) -> String {
    match key {
        Some(key) => format!("key `{key}`"),
        None => "file".to_string(),
    }
}

impl ProviderConfigError {
    /// The provider the error is about (the file name for an invalid name).
    pub fn provider(&self) -> &str {
        match self {
            ProviderConfigError::Read { provider, .. }
            | ProviderConfigError::Invalid { provider, .. }
            | ProviderConfigError::MissingApiKey { provider, .. } => provider,
            ProviderConfigError::InvalidName { name, .. } | ProviderConfigError::Unknown { name, .. } => name,
            ProviderConfigError::NotADirectory { .. } | ProviderConfigError::Directory { .. } => "providers",
        }
    }

    /// Builds an [`Invalid`](ProviderConfigError::Invalid) error.
    pub(crate) fn invalid(
        provider: &str,
        file: &ConfigSource,
        key: impl Into<Option<String>>,
        message: impl Into<String>,
    ) -> Self {
        ProviderConfigError::Invalid {
            provider: provider.to_string(),
            file: file.clone(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl From<ProviderConfigError> for types::Error {
    /// A provider-level error of kind `config`, whose message is the full description.
    fn from(error: ProviderConfigError) -> Self {
        types::Error::config(error.provider().to_string(), error.to_string())
    }
}
