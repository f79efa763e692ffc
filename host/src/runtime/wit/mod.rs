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

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    ComponentExportIndex, ComponentType, InstancePre, Lift, Lower, Resource, TypedFunc,
};
use wasmtime::AsContextMut;

use super::bounds::ResponseOver;
use super::imports::{HeldRequest, HeldStream};
use super::lazy_response::LiftedResponse;
use super::sandbox::CallState;
use crate::types::{Error, Request, Response, StopReason};

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
    V0_2(Pre<since_v0_2::MiddlewareIndices, since_v0_2::arc::llm::types::StopReason>),
    V0_3(Pre<since_v0_3::MiddlewareIndices, StopReason>),
}

/// `provider.invoke` with its answer lifted within the caps (`lazy_response`), for a
/// version whose `stop-reason` is `S`. The error has the same shape in every version.
pub(crate) type Invoke<S> = TypedFunc<(Resource<HeldRequest>,), (Result<LiftedResponse<S>, Error>,)>;

/// One version's pre-instantiated module: its generated export indices, and `invoke`'s
/// index, type-checked once here against the capped lift.
pub(crate) struct Pre<I, S> {
    instance_pre: InstancePre<CallState>,
    indices: I,
    invoke: ComponentExportIndex,
    _stop_reason: std::marker::PhantomData<fn() -> S>,
}

impl<I, S: Lift + 'static> Pre<I, S> {
    /// Binds `instance_pre` with the generated `indices` of its version, whose provider
    /// interface is `provider` (`arc:llm/provider@0.2.0`).
    fn new(
        instance_pre: InstancePre<CallState>,
        indices: impl FnOnce(&InstancePre<CallState>) -> wasmtime::Result<I>,
        provider: &str,
    ) -> wasmtime::Result<Self> {
        let indices = indices(&instance_pre)?;
        let component = instance_pre.component();
        let missing = || wasmtime::format_err!("no export `invoke` in `{provider}`");
        let (_, interface) = component.get_export(None, provider).ok_or_else(missing)?;
        let (item, invoke) = component.get_export(Some(&interface), "invoke").ok_or_else(missing)?;
        match item {
            ComponentItem::ComponentFunc(func) => func
                .typecheck::<(Resource<HeldRequest>,), (Result<LiftedResponse<S>, Error>,)>(
                    &instance_pre.instance_type(),
                )
                .map_err(|e| e.context("type-checking export func `invoke`"))?,
            _ => return Err(wasmtime::format_err!("export `invoke` of `{provider}` is not a function")),
        }
        Ok(Pre { instance_pre, indices, invoke, _stop_reason: std::marker::PhantomData })
    }

    async fn instantiate_async<B>(
        &self,
        mut store: impl AsContextMut<Data = CallState>,
        load: impl FnOnce(
            &I,
            &mut wasmtime::StoreContextMut<'_, CallState>,
            &wasmtime::component::Instance,
        ) -> wasmtime::Result<B>,
    ) -> wasmtime::Result<(B, Invoke<S>)> {
        let mut store = store.as_context_mut();
        let instance = self.instance_pre.instantiate_async(&mut store).await?;
        let bindings = load(&self.indices, &mut store, &instance)?;
        let func = instance
            .get_func(&mut store, self.invoke)
            .ok_or_else(|| wasmtime::format_err!("export `invoke` missing from the instance"))?;
        // SAFETY: `new` type-checked this export of this component against `Invoke<S>`.
        let invoke = unsafe { Invoke::<S>::new_unchecked(func) };
        Ok((bindings, invoke))
    }
}

impl MiddlewarePre {
    pub(crate) fn v0_2(pre: InstancePre<CallState>) -> wasmtime::Result<Self> {
        let provider = since_v0_2::V0_2::interface("provider");
        Ok(MiddlewarePre::V0_2(Pre::new(pre, since_v0_2::MiddlewareIndices::new, &provider)?))
    }

    pub(crate) fn v0_3(pre: InstancePre<CallState>) -> wasmtime::Result<Self> {
        let provider = since_v0_3::V0_3::interface("provider");
        Ok(MiddlewarePre::V0_3(Pre::new(pre, since_v0_3::MiddlewareIndices::new, &provider)?))
    }

    pub(crate) async fn instantiate_async(
        &self,
        store: impl AsContextMut<Data = CallState>,
    ) -> wasmtime::Result<Middleware> {
        Ok(match self {
            MiddlewarePre::V0_2(pre) => {
                let (bindings, invoke) = pre
                    .instantiate_async(store, |indices, store, instance| indices.load(store, instance))
                    .await?;
                Middleware::V0_2(bindings, invoke)
            }
            MiddlewarePre::V0_3(pre) => {
                let (bindings, invoke) = pre
                    .instantiate_async(store, |indices, store, instance| indices.load(store, instance))
                    .await?;
                Middleware::V0_3(bindings, invoke)
            }
        })
    }
}

/// An instance of a module, whatever version of the contract it speaks. Its exports take
/// and return the host's data model.
pub(crate) enum Middleware {
    V0_2(since_v0_2::Middleware, Invoke<since_v0_2::arc::llm::types::StopReason>),
    V0_3(since_v0_3::Middleware, Invoke<StopReason>),
}

/// Runs `$call` on the bindings of whichever version `$self` speaks, one arm per supported
/// version, and converts what it returns into the host's data model (`Into`; the identity
/// for the newest version).
macro_rules! each_version {
    ($self:expr, $instance:ident => $call:expr) => {
        match $self {
            Middleware::V0_2($instance, _) => Ok(Lifted::lift($call?)),
            Middleware::V0_3($instance, _) => Ok(Lifted::lift($call?)),
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
    /// The layer's `invoke`: its answer copied out only as far as the caps on a response
    /// allow (`lazy_response`); one over them is the cap it went over.
    pub(crate) async fn call_invoke(
        &self,
        store: impl AsContextMut<Data = CallState>,
        request: Resource<HeldRequest>,
    ) -> wasmtime::Result<Result<Capped, Error>> {
        Ok(match self {
            Middleware::V0_2(_, invoke) => invoke.call_async(store, (request,)).await?.0.map(Capped::new),
            Middleware::V0_3(_, invoke) => invoke.call_async(store, (request,)).await?.0.map(Capped::new),
        })
    }

    /// The layer's `invoke-stream`. A layer of a version without streams (0.2) serves a
    /// buffered `invoke` instead, whose answer the host replays as a stream: that layer, and
    /// everything beneath it, answers whole. Its answer is capped as `invoke`'s is.
    pub(crate) async fn call_invoke_stream(
        &self,
        store: impl AsContextMut<Data = CallState>,
        request: Resource<HeldRequest>,
        first_event_timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<Resource<HeldStream>, Error>> {
        match self {
            // Boxed: inline, this rare arm's future and temporaries would be in the common
            // arm's frame, which sits on the calling layer's fiber stack (see
            // `imports::off_fiber`).
            Middleware::V0_2(..) => Box::pin(self.replay_invoke(store, request)).await,
            Middleware::V0_3(instance, _) => Ok(instance
                .arc_llm_provider()
                .call_invoke_stream(store, request, first_event_timeout_ms)
                .await?),
        }
    }

    /// `invoke-stream` for a layer without streams: its buffered `invoke`, replayed.
    async fn replay_invoke(
        &self,
        mut store: impl AsContextMut<Data = CallState>,
        request: Resource<HeldRequest>,
    ) -> wasmtime::Result<Result<Resource<HeldStream>, Error>> {
        let answer = self.call_invoke(&mut store, request).await?;
        let mut store = store.as_context_mut();
        let state = store.data_mut();
        let layer = state.modules[state.current].clone();
        match state.budget.check_returned(&layer.name, answer) {
            Ok(response) => {
                let stream = crate::stream::from_response(response);
                Ok(Ok(state.hold_stream(stream)?))
            }
            Err(error) => Ok(Err(error)),
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
            Middleware::V0_2(instance, _) => instance.arc_llm_module().call_configure(store, config).await,
            Middleware::V0_3(instance, _) => instance.arc_llm_module().call_configure(store, config).await,
        }
    }
}

/// A response a module returned: copied out within the caps, or the cap it went over (see
/// `CallBudget::check_returned`, which turns that into an error naming the module).
pub(crate) struct Capped(pub(crate) Result<Response, ResponseOver>);

impl Capped {
    fn new<S: Into<StopReason>>(lifted: LiftedResponse<S>) -> Self {
        Capped(lifted.into_response())
    }
}
