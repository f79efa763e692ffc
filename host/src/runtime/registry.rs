//! The host side of the `arc:llm/registry` import: providers other than the inner one,
//! created on first use and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::provider::Provider;
use crate::target::Target;
use crate::types::{Error, Request, Response};

/// Resolves the targets a module names (`name` or `name/model`) to providers.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    async fn invoke(&self, target: &str, request: Request) -> Result<Response, Error>;
}

/// Makes the provider for a target's name and optional model (both already checked by
/// [`Target::parse`]); called at most once per target.
pub type ProviderFactory = dyn Fn(&str, Option<&str>) -> Result<Arc<dyn Provider>, Error> + Send + Sync;

/// A [`Registry`] that creates each target lazily with a factory and reuses it afterwards.
pub struct LazyRegistry {
    factory: Box<ProviderFactory>,
    cache: Mutex<HashMap<Target, Arc<dyn Provider>>>,
}

impl LazyRegistry {
    pub fn new(
        factory: impl Fn(&str, Option<&str>) -> Result<Arc<dyn Provider>, Error> + Send + Sync + 'static,
    ) -> Self {
        LazyRegistry { factory: Box::new(factory), cache: Mutex::new(HashMap::new()) }
    }

    /// The provider for `target`, created now if this is its first use.
    pub fn get(&self, target: &str) -> Result<Arc<dyn Provider>, Error> {
        let target = Target::parse(target)?;
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(provider) = cache.get(&target) {
            return Ok(provider.clone());
        }
        let provider = (self.factory)(target.name(), target.model())?;
        cache.insert(target, provider.clone());
        Ok(provider)
    }

    /// How many targets have been created so far.
    pub fn created(&self) -> usize {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

#[async_trait]
impl Registry for LazyRegistry {
    async fn invoke(&self, target: &str, request: Request) -> Result<Response, Error> {
        let provider = self.get(target)?;
        provider.invoke(request).await
    }
}

/// A registry with no providers: every target is a config error.
pub struct EmptyRegistry;

#[async_trait]
impl Registry for EmptyRegistry {
    async fn invoke(&self, target: &str, _request: Request) -> Result<Response, Error> {
        Target::parse(target)?;
        Err(Error::config(
            target,
            format!("no provider registry is configured, so `{target}` cannot be loaded"),
        ))
    }
}
