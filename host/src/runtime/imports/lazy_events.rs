//! The events and metadata a module hands `event-stream.splice`, lifted lazily: each string
//! and list stays in the module's memory until it is charged to the call's bounds on what
//! modules hand the host in splices (`CallState::charge_stream`), and only then is it
//! copied out. Lifted whole, they would be copied before any size could be checked, and
//! since many list entries may point at one string in the module's memory, the copy could
//! be many times the module's memory. Each event counts its text plus
//! `bounds::STREAM_EVENT_BYTES`, each metadata entry its key and value plus
//! `bounds::METADATA_ENTRY_BYTES`.

use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};
use wasmtime::StoreContextMut;

use crate::runtime::bounds::{METADATA_ENTRY_BYTES, STREAM_EVENT_BYTES};
use crate::runtime::sandbox::CallState;
use crate::stream::StreamEvent;
use crate::types::{StopReason, Usage};

/// `stream-event` (0.3 on), as it lies in the module's memory.
#[derive(ComponentType, Lift)]
#[component(variant)]
pub(crate) enum LazyEvent {
    #[component(name = "message-start")]
    MessageStart(WasmStr),
    #[component(name = "text-delta")]
    TextDelta(WasmStr),
    #[component(name = "thinking-delta")]
    ThinkingDelta(WasmStr),
    #[component(name = "tool-call-start")]
    ToolCallStart(LazyToolCallStart),
    #[component(name = "tool-call-delta")]
    ToolCallDelta(LazyToolCallDelta),
    #[component(name = "usage")]
    Usage(Usage),
    #[component(name = "stop")]
    Stop(LazyStop),
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyToolCallStart {
    index: u32,
    id: WasmStr,
    name: WasmStr,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyToolCallDelta {
    index: u32,
    arguments: WasmStr,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyStop {
    reason: StopReason,
    metadata: LazyMetadata,
}

/// `list<tuple<string, string>>`, as it lies in the module's memory.
pub(crate) type LazyMetadata = WasmList<(WasmStr, WasmStr)>;

/// Copies out of the module's memory, charging every piece to the call before it is copied.
struct Copier<'a, 'b> {
    store: &'a mut StoreContextMut<'b, CallState>,
}

impl Copier<'_, '_> {
    fn charge(&mut self, events: usize, bytes: usize) -> wasmtime::Result<()> {
        self.store.data_mut().charge_stream(events, bytes)
    }

    /// The string, charged by its length before it is copied. (Reading the length
    /// validates the text, which the copy does again: the charge needs the store between.)
    fn string(&mut self, text: &WasmStr) -> wasmtime::Result<String> {
        let len = text.to_str(&*self.store)?.len();
        self.charge(0, len)?;
        Ok(text.to_str(&*self.store)?.into_owned())
    }

    fn metadata(&mut self, metadata: &LazyMetadata) -> wasmtime::Result<Vec<(String, String)>> {
        self.charge(0, metadata.len().saturating_mul(METADATA_ENTRY_BYTES))?;
        let mut out = Vec::with_capacity(metadata.len());
        for i in 0..metadata.len() {
            let (key, value) = metadata.get(&mut *self.store, i).expect("index within the list's length")?;
            out.push((self.string(&key)?, self.string(&value)?));
        }
        Ok(out)
    }

    fn event(&mut self, event: LazyEvent) -> wasmtime::Result<StreamEvent> {
        Ok(match event {
            LazyEvent::MessageStart(model) => StreamEvent::MessageStart { model: self.string(&model)? },
            LazyEvent::TextDelta(text) => StreamEvent::TextDelta(self.string(&text)?),
            LazyEvent::ThinkingDelta(text) => StreamEvent::ThinkingDelta(self.string(&text)?),
            LazyEvent::ToolCallStart(start) => StreamEvent::ToolCallStart {
                index: start.index,
                id: self.string(&start.id)?,
                name: self.string(&start.name)?,
            },
            LazyEvent::ToolCallDelta(delta) => {
                StreamEvent::ToolCallDelta { index: delta.index, arguments: self.string(&delta.arguments)? }
            }
            LazyEvent::Usage(usage) => StreamEvent::Usage(usage),
            LazyEvent::Stop(stop) => {
                StreamEvent::Stop { reason: stop.reason, metadata: self.metadata(&stop.metadata)? }
            }
        })
    }
}

/// The `head` events and `metadata` of a splice, copied out of the module's memory, or the
/// module's trap once they go beyond the call's bounds (the splice counts one event more).
pub(crate) fn copy_out(
    store: &mut StoreContextMut<'_, CallState>,
    head: &WasmList<LazyEvent>,
    metadata: &LazyMetadata,
) -> wasmtime::Result<(Vec<StreamEvent>, Vec<(String, String)>)> {
    let mut c = Copier { store };
    c.charge(head.len().saturating_add(1), head.len().saturating_mul(STREAM_EVENT_BYTES))?;
    let mut events = Vec::with_capacity(head.len());
    for i in 0..head.len() {
        let event = head.get(&mut *c.store, i).expect("index within the list's length")?;
        events.push(c.event(event)?);
    }
    let metadata = c.metadata(metadata)?;
    Ok((events, metadata))
}
