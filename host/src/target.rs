//! Provider names and targets: how config files, the catalog and modules name a provider.
//!
//! A target is `name` (the provider with its default model) or `name/model`. The name is a
//! [`ProviderName`]; the model is everything after the first `/`, so model ids that contain
//! slashes (`vllm/Qwen/Qwen3-8B`) survive. Both parts are bounded: a module can pass any
//! string as a target, and the registry keeps one provider per distinct target.
//!
//! The guest side checks the same rule with `arcllm_module_sdk::target::valid`, so a module
//! can refuse a bad target in its configuration before ever calling the host.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::text::clipped;
use crate::types;

/// The longest provider name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The longest model part of a target, in bytes.
pub const MAX_MODEL_LEN: usize = 256;

/// The name rule, as error messages state it.
pub const NAME_RULE: &str = "^[a-z][a-z0-9_]*$ (at most 64 characters)";

/// The most of an offending string an error message repeats: a module controls the
/// string, and an error must not grow with it.
const MAX_SHOWN: usize = MAX_NAME_LEN + 1 + MAX_MODEL_LEN;

/// A provider's name, checked: `^[a-z][a-z0-9_]*$`, at most [`MAX_NAME_LEN`] bytes.
///
/// Names become file stems (`<name>.toml`), config values and metadata, so they are kept to
/// a small, unambiguous alphabet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderName(String);

impl ProviderName {
    /// Checks `name` and keeps it.
    pub fn parse(name: &str) -> Result<ProviderName, NameError> {
        if Self::is_valid(name) {
            Ok(ProviderName(name.to_string()))
        } else {
            Err(NameError { name: clipped(name, MAX_SHOWN) })
        }
    }

    /// Whether `name` is a valid provider name, for callers that only need the answer.
    pub fn is_valid(name: &str) -> bool {
        let mut chars = name.chars();
        name.len() <= MAX_NAME_LEN
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }

    /// The name as written, for lookups and messages.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ProviderName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ProviderName {
    type Err = NameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name)
    }
}

/// A string that is not a [`ProviderName`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("`{name}` is not a valid provider name (expected ^[a-z][a-z0-9_]*$, at most 64 characters)")]
pub struct NameError {
    name: String,
}

impl NameError {
    /// The rejected name (shortened if it was very long).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A provider target: a [`ProviderName`] and, optionally, the model to call.
///
/// [`Display`](fmt::Display) writes the target back as parsed, so
/// `Target::parse(&target.to_string())` gives the same target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    name: ProviderName,
    model: Option<String>,
}

impl Target {
    /// Parses `name` or `name/model`: the name follows [`ProviderName`], the model (all
    /// after the first `/`) is non-empty and at most [`MAX_MODEL_LEN`] bytes.
    pub fn parse(target: &str) -> Result<Target, TargetError> {
        let (name, model) = match target.split_once('/') {
            Some((name, model)) => (name, Some(model)),
            None => (target, None),
        };
        let malformed =
            || TargetError::Malformed { target: clipped(target, MAX_SHOWN), name: clipped(name, MAX_SHOWN) };
        let name = ProviderName::parse(name).map_err(|_| malformed())?;
        match model {
            Some("") => Err(malformed()),
            Some(model) if model.len() > MAX_MODEL_LEN => Err(TargetError::ModelTooLong {
                target: clipped(target, MAX_SHOWN),
                name: name.0,
                len: model.len(),
            }),
            model => Ok(Target { name, model: model.map(str::to_string) }),
        }
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The model, or `None` for the provider's default.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.model {
            Some(model) => write!(f, "{}/{model}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(target: &str) -> Result<Self, Self::Err> {
        Self::parse(target)
    }
}

/// A string that is not a [`Target`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TargetError {
    /// Not `name` or `name/model`, or the name breaks the rule.
    #[error(
        "`{target}` is not a valid provider target: expected `name` or `name/model`, name matching {NAME_RULE}"
    )]
    Malformed {
        /// The target as given (shortened if it was very long).
        target: String,
        /// The part before the first `/` (shortened likewise).
        name: String,
    },
    /// The model part is longer than [`MAX_MODEL_LEN`].
    #[error(
        "`{target}` is not a valid provider target: its model is {len} bytes long, at most {MAX_MODEL_LEN} are allowed"
    )]
    ModelTooLong {
        /// The target as given (shortened if it was very long).
        target: String,
        /// The provider name part, valid.
        name: String,
        /// The model part's length, in bytes.
        len: usize,
    },
}

impl TargetError {
    /// The part before the first `/` (shortened if it was very long): the provider the
    /// error is reported against.
    pub fn provider(&self) -> &str {
        match self {
            TargetError::Malformed { name, .. } | TargetError::ModelTooLong { name, .. } => name,
        }
    }
}

impl From<TargetError> for types::Error {
    /// A provider-level error of kind `config`, reported against the named provider.
    fn from(error: TargetError) -> Self {
        types::Error::config(error.provider().to_string(), error.to_string())
    }
}
