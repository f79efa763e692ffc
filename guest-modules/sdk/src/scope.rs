//! Which calls share one piece of shared state (a token bucket, a breaker): every call to
//! a provider, or every call to one of its models. The modules that keep state per provider
//! read it from the same `scope` key and name their state the same way, so a user sets it
//! alike everywhere. This file depends only on the SDK's `config.rs`, so the host's tests
//! compile it natively beside the policies that use it.

use crate::config::Config;

/// Which calls share a piece of state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every call to the provider (vendors limit and fail per API key, i.e. per provider).
    #[default]
    Provider,
    /// Every call to the provider's model.
    Model,
}

impl Scope {
    /// The configuration key that holds it.
    pub const KEY: &'static str = "scope";

    /// Reads `scope` from a module's table: `"provider"` or `"model"` (unset: `default`);
    /// anything else is an error naming the key and the accepted values.
    pub fn from_config(config: &Config, default: Scope) -> Result<Scope, String> {
        match config.get(Self::KEY) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                Some("provider") => Ok(Scope::Provider),
                Some("model") => Ok(Scope::Model),
                _ => Err(format!("{} must be \"provider\" or \"model\", got {v}", Self::KEY)),
            },
        }
    }

    /// The name of the state calls to `provider`'s `model` share: `provider`, or
    /// `provider/model` (the form of a provider target).
    pub fn target(self, provider: &str, model: &str) -> String {
        match self {
            Scope::Provider => provider.to_string(),
            Scope::Model => format!("{provider}/{model}"),
        }
    }
}
