//! `arc:llm/streaming` (0.3 on): the `event-stream` resource, whose streams live in the
//! call's resource table.
//!
//! A stream is a plain Rust stream over the adapter's (see `runtime::streams`): a module
//! that passes its handle on, or splices it behind the events it pulled, never sees the
//! events that follow. Pulling copies one event into the module; waiting for it is not
//! charged to the module's CPU budget, and ends at the first-event deadline of an
//! `invoke-stream` further out, if one is running.

use tokio::time::Instant;
use wasmtime::component::{Linker, Resource, ResourceType, WasmList};
use wasmtime::StoreContextMut;

use super::lazy_events::{self, LazyEvent, LazyMetadata};
use super::{off_fiber, shutting_down, HeldRequest, Import};
use crate::runtime::resume;
use crate::runtime::sandbox::CallState;
use crate::runtime::streams;
use crate::runtime::wit::latest::arc::llm::streaming as wit;
use crate::runtime::wit::{latest, Bindings};
use crate::stream::{EventStream, StreamEvent};
use crate::types::{Error, ErrorKind};

pub(super) const IMPORTS: &[Import] = &[Import { interface: "arc:llm/streaming", add_to_linker }];

/// What an `event-stream` refers to: a stream of the host's, in the call's resource table.
pub struct HeldStream(pub(crate) EventStream);

fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(&latest::V0_3::interface("streaming"))?;
    instance.resource("event-stream", ResourceType::host::<HeldStream>(), |mut store, rep| {
        // Dropping the stream abandons the answer (the adapter closes its connection).
        store.data_mut().take_stream(Resource::new_own(rep)).map(drop)
    })?;
    instance.func_wrap_async(
        "[method]event-stream.next",
        |mut store: StoreContextMut<'_, CallState>, (handle,): (Resource<HeldStream>,)| {
            Box::new(async move {
                let item = next(&mut store, &handle).await?;
                super::provider::resumed_after_wait(&mut store);
                Ok((item.map(|item| item.map(wit::StreamEvent::from)),))
            })
        },
    )?;
    // Lifted lazily and copied out only as far as the call's bounds allow: see
    // `lazy_events`.
    instance.func_wrap(
        "[static]event-stream.splice",
        |mut store: StoreContextMut<'_, CallState>,
         (head, rest, metadata): (WasmList<LazyEvent>, Option<Resource<HeldStream>>, LazyMetadata)| {
            let (head, metadata) = lazy_events::copy_out(&mut store, &head, &metadata)?;
            let state = store.data_mut();
            let rest = rest.map(|rest| state.take_stream(rest)).transpose()?;
            Ok((state.hold_stream(streams::splice(head, rest, metadata))?,))
        },
    )?;
    instance.func_wrap(
        "[static]event-stream.resumable",
        |mut store: StoreContextMut<'_, CallState>,
         (head, rest, metadata, request, resume_state): (
            WasmList<LazyEvent>,
            Resource<HeldStream>,
            LazyMetadata,
            Resource<HeldRequest>,
            WasmList<u8>,
        )| {
            let (head, metadata) = lazy_events::copy_out(&mut store, &head, &metadata)?;
            store.data_mut().charge_stream(0, resume_state.len())?;
            let resume_state = resume_state.as_le_slice(&store).to_vec();
            let state = store.data_mut();
            let request = state.request(&request)?.clone();
            let rest = state.take_stream(rest)?;
            let spliced = streams::splice(head, Some(rest), metadata);
            let provider = state.inner.name().to_string();
            let stream = resume::resumable(
                spliced,
                state.current,
                request,
                resume_state,
                state.resumes.clone(),
                provider,
            );
            state.resume_armed = true;
            Ok((state.hold_stream(stream)?,))
        },
    )?;
    instance.func_wrap(
        "resumption-of",
        |store: StoreContextMut<'_, CallState>, (request,): (Resource<HeldRequest>,)| {
            let state = store.data();
            let resuming =
                state.resuming.last().filter(|r| r.rep == request.rep() && r.layer == state.current);
            Ok((resuming.map(|r| r.resumption.clone()),))
        },
    )?;
    Ok(())
}

/// The next item of the stream behind `handle`, waiting at most until the first-event
/// deadline of the `invoke-stream` this runs under, if any (then a `timeout` error, and the
/// stream ends: its answer is abandoned).
async fn next(
    store: &mut StoreContextMut<'_, CallState>,
    handle: &Resource<HeldStream>,
) -> wasmtime::Result<Option<Result<StreamEvent, Error>>> {
    use futures_util::StreamExt;
    let deadline = store.data().first_event_deadline;
    if store.data().resume_armed {
        // Boxed: this future and the one below, inline, would both be in the frame that
        // runs on the module's fiber stack (see `off_fiber`).
        return Box::pin(next_resumable(store, handle, deadline)).await;
    }
    // The pull runs off the fiber (see `off_fiber`): it is where the adapter reads the body
    // and parses the vendor's events, the deepest host work under a module.
    let held = store.data_mut().stream(handle)?;
    let mut stream = std::mem::replace(&mut held.0, Box::pin(futures_util::stream::empty()));
    let pull = off_fiber(async move {
        let item = stream.next().await;
        (stream, item)
    });
    let pulled = match deadline {
        None => pull.await,
        Some(deadline) => match tokio::time::timeout_at(deadline, pull).await {
            Ok(pulled) => pulled,
            // The stream is left empty: its answer is abandoned.
            Err(_elapsed) => return Ok(Some(Err(first_event_timeout(store.data().inner.name())))),
        },
    };
    let Some((stream, item)) = pulled else {
        return Ok(Some(Err(shutting_down(store.data().inner.name()))));
    };
    store.data_mut().stream(handle)?.0 = stream;
    Ok(item)
}

/// [`next`] when a layer may resume the answer: a stream beneath may need its layer called
/// to resume it, so the pull runs with the store at hand, on the fiber.
async fn next_resumable(
    store: &mut StoreContextMut<'_, CallState>,
    handle: &Resource<HeldStream>,
    deadline: Option<Instant>,
) -> wasmtime::Result<Option<Result<StreamEvent, Error>>> {
    let held = store.data_mut().stream(handle)?;
    let mut stream = std::mem::replace(&mut held.0, Box::pin(futures_util::stream::empty()));
    let item = match deadline {
        None => resume::next_item(store, &mut stream).await,
        Some(deadline) => {
            match tokio::time::timeout_at(deadline, resume::next_item(store, &mut stream)).await {
                Ok(item) => item,
                Err(_elapsed) => {
                    let provider = store.data().inner.name().to_string();
                    return Ok(Some(Err(first_event_timeout(&provider))));
                }
            }
        }
    };
    store.data_mut().stream(handle)?.0 = stream;
    item
}

impl From<StreamEvent> for wit::StreamEvent {
    fn from(event: StreamEvent) -> Self {
        match event {
            StreamEvent::MessageStart { model } => wit::StreamEvent::MessageStart(model),
            StreamEvent::TextDelta(text) => wit::StreamEvent::TextDelta(text),
            StreamEvent::ThinkingDelta(text) => wit::StreamEvent::ThinkingDelta(text),
            StreamEvent::ToolCallStart { index, id, name } => {
                wit::StreamEvent::ToolCallStart(wit::ToolCallStart { index, id, name })
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                wit::StreamEvent::ToolCallDelta(wit::ToolCallDelta { index, arguments })
            }
            StreamEvent::Usage(usage) => wit::StreamEvent::Usage(usage),
            StreamEvent::Stop { reason, metadata } => wit::StreamEvent::Stop(wit::Stop { reason, metadata }),
        }
    }
}

impl From<wit::StreamEvent> for StreamEvent {
    fn from(event: wit::StreamEvent) -> Self {
        match event {
            wit::StreamEvent::MessageStart(model) => StreamEvent::MessageStart { model },
            wit::StreamEvent::TextDelta(text) => StreamEvent::TextDelta(text),
            wit::StreamEvent::ThinkingDelta(text) => StreamEvent::ThinkingDelta(text),
            wit::StreamEvent::ToolCallStart(wit::ToolCallStart { index, id, name }) => {
                StreamEvent::ToolCallStart { index, id, name }
            }
            wit::StreamEvent::ToolCallDelta(wit::ToolCallDelta { index, arguments }) => {
                StreamEvent::ToolCallDelta { index, arguments }
            }
            wit::StreamEvent::Usage(usage) => StreamEvent::Usage(usage),
            wit::StreamEvent::Stop(wit::Stop { reason, metadata }) => StreamEvent::Stop { reason, metadata },
        }
    }
}

impl crate::runtime::limits::Returned for Resource<HeldStream> {
    type Checked = Self;
    fn check(self, _module: &str) -> Result<Self, Error> {
        Ok(self)
    }
}

/// The earlier of two deadlines, either of which may be unset.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The error of an answer that brought no content before its first-event deadline.
pub(crate) fn first_event_timeout(provider: &str) -> Error {
    Error::new(
        ErrorKind::Timeout,
        provider,
        format!("`{provider}` sent no content within the first-event timeout of the streaming call"),
    )
}

/// Runs `call` (a wait on a provider) until the first-event deadline that `deadline` names,
/// if any: past it, the call is abandoned and the answer is a `timeout` error naming
/// `provider`.
pub(crate) async fn within_first_event_deadline<T>(
    deadline: Option<Instant>,
    provider: &str,
    call: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match deadline {
        None => call.await,
        Some(deadline) => tokio::time::timeout_at(deadline, call)
            .await
            .unwrap_or_else(|_elapsed| Err(first_event_timeout(provider))),
    }
}

/// Bounds the stream behind `handle` by `deadline` until its first content event.
pub(crate) fn bound_until_content(
    state: &mut CallState,
    handle: &Resource<HeldStream>,
    deadline: Instant,
    provider: &str,
) -> wasmtime::Result<()> {
    let held = state.stream(handle)?;
    let stream = std::mem::replace(&mut held.0, Box::pin(futures_util::stream::empty()));
    held.0 = streams::first_content_by(stream, deadline, first_event_timeout(provider));
    Ok(())
}
