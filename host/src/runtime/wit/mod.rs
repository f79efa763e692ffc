//! The versions of the `arc:llm` contract this host speaks, and modules bound to the one
//! they were built for.
//!
//! Each version has its own bindings, generated from its WIT (`wit/v0.2`, …), an entry in
//! [`SUPPORTED`], a variant in `MiddlewarePre` and `Middleware`, and a [`Bindings`] impl
//! through which `runtime::imports` links each import once per version. A module is bound
//! to the version its component names (`arc:llm/provider@0.2.0`), so a host that learns a
//! new version keeps loading modules built for the older ones, and a module built for a
//! version the host does not speak is refused by name before it is type-checked.
//!
//! The host's own data model ([`crate::types`]) is the newest version's. An older
//! version's values are converted to and from it where they cross into or out of a module
//! of that version (`since_v0_2::convert`): its exports' results are lifted into the
//! newest types, and its imports lower the newest types into its own. Where the newest
//! version can say more than an older one (a stop reason 0.2 does not have), the older
//! module sees the nearest value it knows.

use wasmtime::component::{ComponentType, InstancePre, Lift, Lower, Resource};
use wasmtime::AsContextMut;

use super::imports::{HeldRequest, HeldStream};
use super::sandbox::CallState;
use crate::types::{Error, Request, Response};

pub mod since_v0_2;
pub mod since_v0_3;

pub use since_v0_3 as latest;

/// Every version of the contract this host loads modules for, oldest first.
pub const SUPPORTED: &[Contract] = &[since_v0_2::CONTRACT, since_v0_3::CONTRACT];

/// A value that crosses the host/module boundary as-is.
pub(crate) trait Wire: ComponentType + Lift + Lower + Send + Sync + 'static {}
impl<T: ComponentType + Lift + Lower + Send + Sync + 'static> Wire for T {}

/// One version's types as its imports speak them, with the conversions to and from the
/// host's data model: what `runtime::imports` needs to link an interface for that version.
pub(crate) trait Bindings: 'static {
    /// The version of the `arc:llm` package, e.g. `0.2.0`.
    const VERSION: &'static str;
    /// Whether the version streams (`provider.invoke-stream`, `arc:llm/streaming`): 0.3 on.
    const STREAMING: bool;
    /// `arc:llm/types.request`.
    type Request: Wire + From<Request> + Into<Request>;
    /// `arc:llm/types.response`.
    type Response: Wire + From<Response> + Into<Response>;
    /// `arc:llm/types.error`.
    type Error: Wire + From<Error> + Into<Error>;
    /// `arc:llm/logging.level`.
    type Level: Wire + Into<latest::arc::llm::logging::Level>;

    /// The full name of an interface of this version: `arc:llm/provider@0.2.0`.
    fn interface(name: &str) -> String {
        format!("arc:llm/{name}@{}", Self::VERSION)
    }
}

/// Runs `$add::<B>($linker)` for the [`Bindings`] of every supported version: how an
/// interface that every version has is linked once per version.
macro_rules! for_each_version {
    ($add:ident, $linker:expr) => {{
        $add::<$crate::runtime::wit::since_v0_2::V0_2>($linker)?;
        $add::<$crate::runtime::wit::since_v0_3::V0_3>($linker)?;
        Ok(())
    }};
}
pub(crate) use for_each_version;

/// One version of the contract: what a module built for it names, and how the host binds
/// such a module.
pub struct Contract {
    /// The version of the `arc:llm` package, e.g. `0.2.0`.
    pub version: &'static str,
    /// The world a module built for it implements, e.g. `arc:llm/middleware@0.2.0`.
    pub world: &'static str,
    /// Type-checks a module against this version's world.
    bind: fn(InstancePre<CallState>) -> wasmtime::Result<MiddlewarePre>,
}

impl Contract {
    /// The supported version a module naming `arc:llm@{version}` can be served by: the
    /// same version, or one semver calls compatible with it (same major version; for 0.x
    /// the same minor), the rule wasmtime applies when it links names with versions.
    pub fn find(version: &str) -> Option<&'static Contract> {
        SUPPORTED.iter().find(|contract| compatible(contract.version, version))
    }

    /// The supported versions, for messages: `0.2.0, 0.3.0`.
    pub fn supported_list() -> String {
        SUPPORTED.iter().map(|contract| contract.version).collect::<Vec<_>>().join(", ")
    }

    pub(crate) fn bind(&self, pre: InstancePre<CallState>) -> wasmtime::Result<MiddlewarePre> {
        (self.bind)(pre)
    }
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract").field("version", &self.version).finish()
    }
}

/// Whether semver lets a module built for `found` run against bindings of `ours`.
fn compatible(ours: &str, found: &str) -> bool {
    ours == found || compatibility_track(ours).is_some_and(|track| Some(track) == compatibility_track(found))
}

/// The versions a version is compatible with: `(major, None)` from 1.0, `(0, Some(minor))`
/// below it. `None` for 0.0.x and pre-releases, which are compatible only with themselves.
fn compatibility_track(version: &str) -> Option<(u64, Option<u64>)> {
    let release = version.split('+').next()?;
    if release.contains('-') {
        return None;
    }
    let mut parts = release.split('.').map(|part| part.parse::<u64>().ok());
    let (major, minor, _patch) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() {
        return None;
    }
    match (major, minor) {
        (0, 0) => None,
        (0, minor) => Some((0, Some(minor))),
        (major, _) => Some((major, None)),
    }
}

/// A module compiled and type-checked against the version of the contract it was built
/// for, ready to instantiate in any store.
pub(crate) enum MiddlewarePre {
    V0_2(since_v0_2::MiddlewarePre<CallState>),
    V0_3(since_v0_3::MiddlewarePre<CallState>),
}

impl MiddlewarePre {
    pub(crate) async fn instantiate_async(
        &self,
        store: impl AsContextMut<Data = CallState>,
    ) -> wasmtime::Result<Middleware> {
        Ok(match self {
            MiddlewarePre::V0_2(pre) => Middleware::V0_2(pre.instantiate_async(store).await?),
            MiddlewarePre::V0_3(pre) => Middleware::V0_3(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance of a module, whatever version of the contract it speaks. Its exports take
/// and return the host's data model.
pub(crate) enum Middleware {
    V0_2(since_v0_2::Middleware),
    V0_3(since_v0_3::Middleware),
}

/// Runs `$call` on the bindings of whichever version `$self` speaks, one arm per supported
/// version, and converts what it returns into the host's data model (`Into`; the identity
/// for the newest version).
macro_rules! each_version {
    ($self:expr, $instance:ident => $call:expr) => {
        match $self {
            Middleware::V0_2($instance) => Ok(Lifted::lift($call?)),
            Middleware::V0_3($instance) => Ok(Lifted::lift($call?)),
        }
    };
}

/// What a module's export returns, in the host's data model.
trait Lifted<T> {
    fn lift(self) -> T;
}

impl Lifted<String> for String {
    fn lift(self) -> String {
        self
    }
}

impl<R: Into<T>, E: Into<Error>, T> Lifted<Result<T, Error>> for Result<R, E> {
    fn lift(self) -> Result<T, Error> {
        self.map(Into::into).map_err(Into::into)
    }
}

impl Middleware {
    pub(crate) async fn call_invoke(
        &self,
        store: impl AsContextMut<Data = CallState>,
        request: Resource<HeldRequest>,
    ) -> wasmtime::Result<Result<Response, Error>> {
        each_version!(self, instance => instance.arc_llm_provider().call_invoke(store, request).await)
    }

    /// The layer's `invoke-stream`. A layer of a version without streams (0.2) serves a
    /// buffered `invoke` instead, whose answer the host replays as a stream: that layer, and
    /// everything beneath it, answers whole.
    pub(crate) async fn call_invoke_stream(
        &self,
        mut store: impl AsContextMut<Data = CallState>,
        request: Resource<HeldRequest>,
        first_event_timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<Resource<HeldStream>, Error>> {
        match self {
            Middleware::V0_2(instance) => {
                let answer: Result<Response, Error> =
                    Lifted::lift(instance.arc_llm_provider().call_invoke(&mut store, request).await?);
                match answer {
                    Ok(response) => {
                        let stream = crate::stream::from_response(response);
                        Ok(Ok(store.as_context_mut().data_mut().hold_stream(stream)?))
                    }
                    Err(error) => Ok(Err(error)),
                }
            }
            Middleware::V0_3(instance) => Ok(instance
                .arc_llm_provider()
                .call_invoke_stream(store, request, first_event_timeout_ms)
                .await?),
        }
    }

    pub(crate) async fn call_name(
        &self,
        store: impl AsContextMut<Data = CallState>,
    ) -> wasmtime::Result<String> {
        each_version!(self, instance => instance.arc_llm_provider().call_name(store).await)
    }

    pub(crate) async fn call_model_name(
        &self,
        store: impl AsContextMut<Data = CallState>,
    ) -> wasmtime::Result<String> {
        each_version!(self, instance => instance.arc_llm_provider().call_model_name(store).await)
    }

    pub(crate) async fn call_validate_config(
        &self,
        store: impl AsContextMut<Data = CallState>,
    ) -> wasmtime::Result<Result<(), Error>> {
        each_version!(self, instance => instance.arc_llm_provider().call_validate_config(store).await)
    }

    pub(crate) async fn call_configure(
        &self,
        store: impl AsContextMut<Data = CallState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Middleware::V0_2(instance) => instance.arc_llm_module().call_configure(store, config).await,
            Middleware::V0_3(instance) => instance.arc_llm_module().call_configure(store, config).await,
        }
    }
}
