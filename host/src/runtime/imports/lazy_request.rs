//! A module's `request-handle` constructor argument, lifted lazily: its strings and lists
//! stay in the module's memory until each is charged to the call's request-byte bound, and
//! only then is it copied out. A request built eagerly would be copied whole before any
//! size could be checked, and since many list entries may point at one string in the
//! module's memory, a module with a 64 MiB memory could make the host allocate gigabytes.
//! Here the host never holds more than the bound (plus one string being validated), and
//! the accounting is the one `bounds::request_bytes` applies to the finished request.

use std::mem::size_of;

use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};
use wasmtime::StoreContextMut;

use crate::runtime::bounds::RequestBytesExceeded;
use crate::runtime::sandbox::CallState;
use crate::types::{
    Content, ContentBlock, Image, Message, Options, Request, Role, ToolDefinition, ToolResult, ToolUse,
};

/// `request`, as it lies in the module's memory. The same shape in every supported
/// contract version (type checking is structural), so one type serves them all.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyRequest {
    messages: WasmList<LazyMessage>,
    tools: WasmList<LazyTool>,
    options: LazyOptions,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyMessage {
    role: LazyRole,
    content: LazyContent,
}

// The variants are made by lifting, which the dead-code lint does not see.
#[allow(dead_code)]
#[derive(ComponentType, Lift, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
pub(crate) enum LazyRole {
    #[component(name = "system")]
    System,
    #[component(name = "user")]
    User,
    #[component(name = "assistant")]
    Assistant,
    #[component(name = "tool")]
    Tool,
}

#[derive(ComponentType, Lift)]
#[component(variant)]
pub(crate) enum LazyContent {
    #[component(name = "text")]
    Text(WasmStr),
    #[component(name = "blocks")]
    Blocks(WasmList<LazyBlock>),
}

#[derive(ComponentType, Lift)]
#[component(variant)]
pub(crate) enum LazyBlock {
    #[component(name = "text")]
    Text(WasmStr),
    #[component(name = "image")]
    Image(LazyImage),
    #[component(name = "tool-use")]
    ToolUse(LazyToolUse),
    #[component(name = "tool-result")]
    ToolResult(LazyToolResult),
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyImage {
    #[component(name = "media-type")]
    media_type: WasmStr,
    data: WasmStr,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyToolUse {
    id: WasmStr,
    name: WasmStr,
    arguments: WasmStr,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyToolResult {
    #[component(name = "tool-use-id")]
    tool_use_id: WasmStr,
    content: WasmStr,
    #[component(name = "is-error")]
    is_error: bool,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyTool {
    name: WasmStr,
    description: WasmStr,
    parameters: WasmStr,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct LazyOptions {
    #[component(name = "max-tokens")]
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    #[component(name = "stop-sequences")]
    stop_sequences: WasmList<WasmStr>,
    extra: Option<WasmStr>,
}

/// Copies out of the module's memory, charging every byte before it is allocated.
struct Copier<'a, 'b> {
    store: &'a mut StoreContextMut<'b, CallState>,
    left: usize,
    limit: usize,
}

impl Copier<'_, '_> {
    fn charge(&mut self, bytes: usize) -> wasmtime::Result<()> {
        take(&mut self.left, self.limit, bytes)
    }

    /// The string, charged by its length (plus `extra` bytes of bookkeeping) before it is
    /// copied.
    fn string(&mut self, text: &WasmStr, extra: usize) -> wasmtime::Result<String> {
        let text = text.to_str(&*self.store)?;
        take(&mut self.left, self.limit, text.len().saturating_add(extra))?;
        Ok(text.into_owned())
    }

    /// The list's elements, each `each` bytes of bookkeeping charged before any is lifted.
    fn list<T: Lift, U>(
        &mut self,
        list: &WasmList<T>,
        each: usize,
        mut convert: impl FnMut(&mut Self, T) -> wasmtime::Result<U>,
    ) -> wasmtime::Result<Vec<U>> {
        self.charge(list.len().saturating_mul(each))?;
        let mut out = Vec::with_capacity(list.len());
        for i in 0..list.len() {
            let item = list.get(&mut *self.store, i).expect("index within the list's length")?;
            out.push(convert(self, item)?);
        }
        Ok(out)
    }

    fn content(&mut self, content: LazyContent) -> wasmtime::Result<Content> {
        Ok(match content {
            LazyContent::Text(text) => Content::Text(self.string(&text, 0)?),
            LazyContent::Blocks(blocks) => {
                Content::Blocks(self.list(&blocks, size_of::<ContentBlock>(), |c, block| c.block(block))?)
            }
        })
    }

    fn block(&mut self, block: LazyBlock) -> wasmtime::Result<ContentBlock> {
        Ok(match block {
            LazyBlock::Text(text) => ContentBlock::Text(self.string(&text, 0)?),
            LazyBlock::Image(image) => ContentBlock::Image(Image {
                media_type: self.string(&image.media_type, 0)?,
                data: self.string(&image.data, 0)?,
            }),
            LazyBlock::ToolUse(call) => ContentBlock::ToolUse(ToolUse {
                id: self.string(&call.id, 0)?,
                name: self.string(&call.name, 0)?,
                arguments: self.string(&call.arguments, 0)?,
            }),
            LazyBlock::ToolResult(result) => ContentBlock::ToolResult(ToolResult {
                tool_use_id: self.string(&result.tool_use_id, 0)?,
                content: self.string(&result.content, 0)?,
                is_error: result.is_error,
            }),
        })
    }
}

/// Takes `bytes` from what is `left` of the bound `limit`, or fails as going beyond it.
fn take(left: &mut usize, limit: usize, bytes: usize) -> wasmtime::Result<()> {
    match left.checked_sub(bytes) {
        Some(rest) => {
            *left = rest;
            Ok(())
        }
        None => Err(wasmtime::Error::new(RequestBytesExceeded { limit })),
    }
}

impl LazyRequest {
    /// The request, copied out of the module's memory, or the module's trap once it holds
    /// more than the call's bound on request bytes (of which `left` remain).
    pub(crate) fn copy_out(
        self,
        store: &mut StoreContextMut<'_, CallState>,
        left: usize,
        limit: usize,
    ) -> wasmtime::Result<Request> {
        let mut c = Copier { store, left, limit };
        c.charge(size_of::<Request>())?;
        let messages = c.list(&self.messages, size_of::<Message>(), |c, message| {
            let role = match message.role {
                LazyRole::System => Role::System,
                LazyRole::User => Role::User,
                LazyRole::Assistant => Role::Assistant,
                LazyRole::Tool => Role::Tool,
            };
            Ok(Message { role, content: c.content(message.content)? })
        })?;
        let tools = c.list(&self.tools, size_of::<ToolDefinition>(), |c, tool| {
            Ok(ToolDefinition {
                name: c.string(&tool.name, 0)?,
                description: c.string(&tool.description, 0)?,
                parameters: c.string(&tool.parameters, 0)?,
            })
        })?;
        let o = self.options;
        let stop_sequences = c.list(&o.stop_sequences, 0, |c, stop| c.string(&stop, size_of::<String>()))?;
        let extra = o.extra.map(|extra| c.string(&extra, 0)).transpose()?;
        let options = Options { max_tokens: o.max_tokens, temperature: o.temperature, stop_sequences, extra };
        Ok(Request { messages, tools, options })
    }
}
