//! The `response` a module's `invoke` returns, copied out of the module's memory only as far
//! as the caps on it allow (`bounds::ResponseTally`).
//!
//! Lifted whole, a response is copied into the host before its size can be checked, and
//! since many list entries (tool calls, metadata pairs) may point at one string in the
//! module's memory, a module with a 64 MiB memory could make the host copy far more than
//! that (wasmtime's own bound on one lift is 128 MiB). Here each string and list is
//! counted before it is copied, and once a cap is passed nothing more is copied: the host
//! holds at most the caps plus one string.
//!
//! A returned value cannot be read lazily after the call: wasmtime runs the module's
//! post-return function (which frees the answer in the module's memory) before the call
//! returns. So the counting happens while wasmtime lifts the answer, in the [`Lift`] impls
//! below, and a response over the caps still lifts (as [`LiftedResponse`] holding which
//! cap it passed): the call then completes normally, the instance stays usable, and the
//! layer outside gets an ordinary error it may act on. A lift runs on one thread without
//! yielding, so the tally of the response being lifted lives in a thread-local that
//! [`LiftedResponse`]'s lift sets up and takes down.

use std::cell::RefCell;

use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift};
use wasmtime::ValRaw;

use super::bounds::{ResponseOver, ResponseTally};
use crate::types::{Response, StopReason, ToolCall, Usage};

thread_local! {
    /// The tally of the response being lifted on this thread, if one is.
    static TALLY: RefCell<Option<ResponseTally>> = const { RefCell::new(None) };
}

/// A module's `response`, copied out within the caps, or the cap it went over (and then
/// only partly read). `S` is the contract version's `stop-reason`, the one type in which
/// the versions' responses differ.
pub(crate) struct LiftedResponse<S>(pub(crate) Result<Wire<S>, ResponseOver>);

impl<S: Into<StopReason>> LiftedResponse<S> {
    /// The response in the host's data model, or the cap it went over.
    pub(crate) fn into_response(self) -> Result<Response, ResponseOver> {
        self.0.map(|wire| Response {
            content: wire.content.map(|text| text.0),
            tool_calls: wire
                .tool_calls
                .0
                .into_iter()
                .map(|call| ToolCall { id: call.id.0, name: call.name.0, arguments: call.arguments.0 })
                .collect(),
            usage: wire.usage,
            model: wire.model,
            stop_reason: wire.stop_reason.into(),
            thinking: wire.thinking.map(|text| text.0),
            metadata: wire.metadata.0.into_iter().map(|(key, value)| (key.0, value.0)).collect(),
        })
    }
}

/// `response`, as the lift fills it in: every string and list counted before it is copied.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct Wire<S> {
    content: Option<Text>,
    #[component(name = "tool-calls")]
    tool_calls: ToolCalls,
    usage: Usage,
    /// Not capped (one string, within the module's memory).
    model: String,
    #[component(name = "stop-reason")]
    stop_reason: S,
    thinking: Option<Text>,
    metadata: Metadata,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct WireToolCall {
    id: Text,
    name: Text,
    arguments: Text,
}

/// The `(pointer, length)` of a string or list, before anything it points at is read.
fn length_from_flat(src: &[ValRaw; 2]) -> usize {
    src[1].get_u32() as usize
}

fn length_from_memory(bytes: &[u8]) -> usize {
    bytes.get(4..8).map_or(0, |len| u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize)
}

/// Runs `count` on the tally of the response being lifted: whether the next piece may be
/// copied. Outside a [`LiftedResponse`]'s lift there is none, and nothing may be.
fn tally(count: impl FnOnce(&mut ResponseTally) -> bool) -> bool {
    TALLY.with(|tally| tally.borrow_mut().as_mut().is_some_and(count))
}

/// A string counted as content, thinking or a tool call's text (`METADATA` false) or as
/// metadata (true) before it is copied; empty when the caps refused it.
pub(crate) struct Charged<const METADATA: bool>(String);

pub(crate) type Text = Charged<false>;
pub(crate) type MetadataText = Charged<true>;

impl<const METADATA: bool> Charged<METADATA> {
    /// Copies the string (`lift`) if its `units` fit, then counts what the copy really
    /// holds (the same for UTF-8; a module speaking UTF-16 may take more once transcoded).
    fn copy(units: usize, lift: impl FnOnce() -> wasmtime::Result<String>) -> wasmtime::Result<Self> {
        // A compact UTF-16 length carries a tag in its top bit.
        let units = units & !(1 << 31);
        let charge = |tally: &mut ResponseTally, bytes| {
            if METADATA {
                tally.metadata(bytes)
            } else {
                tally.text(bytes)
            }
        };
        if !tally(|t| charge(t, units)) {
            return Ok(Charged(String::new()));
        }
        let text = lift()?;
        if !tally(|t| charge(t, text.len().saturating_sub(units))) {
            return Ok(Charged(String::new()));
        }
        Ok(Charged(text))
    }
}

// SAFETY: the layout, ABI and type check are `String`'s, which it wraps.
unsafe impl<const METADATA: bool> ComponentType for Charged<METADATA> {
    type Lower = <String as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <String as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <String as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: lifts through `String`'s own lift, or not at all.
unsafe impl<const METADATA: bool> Lift for Charged<METADATA> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        Self::copy(length_from_flat(src), || String::linear_lift_from_flat(cx, ty, src))
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        Self::copy(length_from_memory(bytes), || String::linear_lift_from_memory(cx, ty, bytes))
    }
}

/// Implements `ComponentType` and `Lift` for a newtype over a `Vec` that decides from the
/// list's length, before any element is read, whether to lift it (`$admit`).
macro_rules! counted_list {
    ($name:ident($elem:ty), $admit:expr) => {
        pub(crate) struct $name(Vec<$elem>);

        impl $name {
            fn lift(
                len: usize,
                lift: impl FnOnce() -> wasmtime::Result<Vec<$elem>>,
            ) -> wasmtime::Result<Self> {
                let admit: fn(&mut ResponseTally, usize) -> bool = $admit;
                if !tally(|t| admit(t, len)) {
                    return Ok($name(Vec::new()));
                }
                Ok($name(lift()?))
            }
        }

        // SAFETY: the layout, ABI and type check are `Vec`'s, which it wraps.
        unsafe impl ComponentType for $name {
            type Lower = <Vec<$elem> as ComponentType>::Lower;
            const ABI: CanonicalAbiInfo = <Vec<$elem> as ComponentType>::ABI;

            fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
                <Vec<$elem> as ComponentType>::typecheck(ty, types)
            }
        }

        // SAFETY: lifts through `Vec`'s own lift, or not at all.
        unsafe impl Lift for $name {
            fn linear_lift_from_flat(
                cx: &mut LiftContext<'_>,
                ty: InterfaceType,
                src: &Self::Lower,
            ) -> wasmtime::Result<Self> {
                Self::lift(length_from_flat(src), || Vec::<$elem>::linear_lift_from_flat(cx, ty, src))
            }

            fn linear_lift_from_memory(
                cx: &mut LiftContext<'_>,
                ty: InterfaceType,
                bytes: &[u8],
            ) -> wasmtime::Result<Self> {
                Self::lift(length_from_memory(bytes), || Vec::<$elem>::linear_lift_from_memory(cx, ty, bytes))
            }
        }
    };
}

// Each tool call counts what the host holds for it besides its text.
counted_list!(ToolCalls(WireToolCall), |t, len| t.text(len.saturating_mul(ResponseTally::TOOL_CALL)));
counted_list!(Metadata((MetadataText, MetadataText)), |t, len| t.metadata_entries(len));

// SAFETY: the layout, ABI and type check are `Wire<S>`'s, which it wraps.
unsafe impl<S: ComponentType> ComponentType for LiftedResponse<S> {
    type Lower = <Wire<S> as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <Wire<S> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Wire<S> as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: lifts through `Wire<S>`'s derived lift.
unsafe impl<S: Lift> Lift for LiftedResponse<S> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        counted(|| Wire::<S>::linear_lift_from_flat(cx, ty, src))
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        counted(|| Wire::<S>::linear_lift_from_memory(cx, ty, bytes))
    }
}

/// Runs `lift` with a fresh tally for the response it lifts.
fn counted<S>(lift: impl FnOnce() -> wasmtime::Result<Wire<S>>) -> wasmtime::Result<LiftedResponse<S>> {
    let enclosing = TALLY.with(|tally| tally.replace(Some(ResponseTally::default())));
    let wire = lift();
    let tally = TALLY.with(|tally| tally.replace(enclosing)).unwrap_or_default();
    let wire = wire?;
    Ok(LiftedResponse(match tally.over() {
        Some(over) => Err(over),
        None => Ok(wire),
    }))
}
