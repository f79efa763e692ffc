//! The `Provider` trait: what sits at the bottom of a stack (a native HTTP adapter), what a
//! stack of modules is as a whole, and what agents call.

use std::sync::Arc;

use async_trait::async_trait;

use crate::stream::{self, EventStream};
use crate::types::{Error, Request, Response};

/// An LLM provider: turns a [`Request`] into a [`Response`] or a typed [`Error`].
///
/// Implemented by the native adapters (`crate::adapters`), by [`crate::runtime::Stack`]
/// (a stack of wasm modules around an inner provider) and by test doubles.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Sends one request.
    async fn invoke(&self, request: Request) -> Result<Response, Error>;

    /// Sends one request and streams the answer as it arrives. An `Err` here means no
    /// answer started (nothing was delivered); a failure after that is the stream's last
    /// item.
    ///
    /// By default the answer is buffered: `invoke`, then its response replayed as events,
    /// so every provider can be called this way.
    async fn invoke_stream(&self, request: Request) -> Result<EventStream, Error> {
        Ok(stream::from_response(self.invoke(request).await?))
    }

    /// The provider's name, e.g. `anthropic`.
    fn name(&self) -> &str;

    /// The model this provider calls.
    fn model_name(&self) -> &str;

    /// Checks the configuration without calling the vendor.
    async fn validate_config(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[async_trait]
impl<P: Provider + ?Sized> Provider for Arc<P> {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        (**self).invoke(request).await
    }
    async fn invoke_stream(&self, request: Request) -> Result<EventStream, Error> {
        (**self).invoke_stream(request).await
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn model_name(&self) -> &str {
        (**self).model_name()
    }
    async fn validate_config(&self) -> Result<(), Error> {
        (**self).validate_config().await
    }
}
