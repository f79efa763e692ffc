//! What a module returns (its `invoke` answer) and hands the host (`event-stream.splice`,
//! `logging.log`) is copied out of its memory only as far as the caps on it allow.
//!
//! Many list entries may point at one string in a module's memory: copied whole, a 1 MiB
//! string repeated thousands of times is gigabytes (wasmtime itself gives up on one copy
//! at 128 MiB, as a trap). The hostile fixtures here do exactly that, and each test
//! measures the host heap the call allocates with a counting allocator: the tests of this
//! file run one at a time (`SERIAL`), so the figure is the call's alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arcllm::runtime::{Module, ModuleSource, Runtime, Stack};
use arcllm::stream::StreamEvent;
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use futures_util::StreamExt;
use serde_json::json;

/// Bytes of heap in use, and the most in use since the last `peak_during` began.
static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn grew(bytes: usize) {
    let now = IN_USE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: `System`'s allocator, counting what it hands out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

/// One test at a time, so that the heap measured is the one test's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Most heap the host may allocate for one of these calls: the caps (16 MiB of text, or the
/// 16 MiB splice bound set below) and an instance, with room to spare. Copied whole, each
/// answer here would take at least 128 MiB before wasmtime gave up.
const HEAP_BOUND: usize = 48 << 20;

/// What `call` returns, and the most heap it held at once beyond what was in use before it.
async fn peak_during<T>(call: impl Future<Output = T>) -> (T, usize) {
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = call.await;
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

async fn hostile(rt: &Runtime, name: &str, config: serde_json::Value) -> Arc<Module> {
    rt.load_module(name, ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config).await.expect("loads")
}

fn request() -> Request {
    Request::new(vec![Message::user("hi")])
}

/// Calls `stack`, which must fail; returns the error and the heap the call took.
async fn refused(stack: &Stack) -> (Error, usize) {
    let (result, peak) = peak_during(stack.invoke(request())).await;
    (result.expect_err("the answer is over the caps"), peak)
}

/// `error` is the cap error naming `module`, and the call held less than `HEAP_BOUND`.
fn assert_refused(error: &Error, peak: usize, module: &str, what: &str) {
    eprintln!("{module}: {peak} bytes of heap during the call");
    assert!(peak < HEAP_BOUND, "the host allocated {peak} bytes for the answer of `{module}`");
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, module), "{error:?}");
    let said = format!("module `{module}` returned a response over the limit: {what}");
    assert_eq!(error.message, said, "{error:?}");
}

#[tokio::test]
async fn tool_calls_sharing_one_string_are_copied_only_up_to_the_cap() {
    let _one = SERIAL.lock().await;
    let rt = Runtime::builder().build().unwrap();
    // 4,096 tool calls of three 1 MiB strings each: 12 GiB copied whole.
    let config = json!({"mode": "alias-response", "target": "tool-calls", "size": 1 << 20, "count": 4096});
    let alias = hostile(&rt, "alias", config).await.with_share_state(true);
    let stack = Stack::new(rt.clone(), vec![alias.clone()], ScriptedProvider::ok("anthropic"));
    let (error, peak) = refused(&stack).await;
    assert_refused(&error, peak, "alias", "more than 16777216 bytes of content, thinking and tool calls");
    // The answer was refused, not trapped on: the instance is whole and serves the next call.
    let (again, _) = refused(&stack).await;
    assert_eq!(again, error);

    // Under another layer: that layer gets the error (and passes it on), naming the module
    // that made the answer.
    let outer = builtin(&rt, "passthrough", json!({})).await;
    let stack = Stack::new(rt.clone(), vec![outer, alias], ScriptedProvider::ok("anthropic"));
    let (error, peak) = refused(&stack).await;
    assert_refused(&error, peak, "alias", "more than 16777216 bytes of content, thinking and tool calls");
}

#[tokio::test]
async fn metadata_sharing_one_string_is_refused_before_it_is_copied() {
    let _one = SERIAL.lock().await;
    let rt = Runtime::builder().build().unwrap();
    // Too many entries: refused from the list's length, before any entry is read.
    let config = json!({"mode": "alias-response", "target": "metadata", "size": 1 << 20, "count": 4096});
    let stack = Stack::new(rt.clone(), vec![hostile(&rt, "many", config).await], ScriptedProvider::ok("x"));
    let (error, peak) = refused(&stack).await;
    assert_refused(&error, peak, "many", "4096 metadata entries (at most 1024)");

    // Few enough entries, each 1 MiB: the first value is over the metadata cap.
    let config = json!({"mode": "alias-response", "target": "metadata", "size": 1 << 20, "count": 1000});
    let stack = Stack::new(rt.clone(), vec![hostile(&rt, "big", config).await], ScriptedProvider::ok("x"));
    let (error, peak) = refused(&stack).await;
    assert_refused(&error, peak, "big", "more than 1048576 bytes of metadata");
}

#[tokio::test]
async fn a_0_2_module_answer_is_copied_only_up_to_the_cap_too() {
    let _one = SERIAL.lock().await;
    let rt = Runtime::builder().build().unwrap();
    let config = json!({"mode": "alias-tool-calls"});
    let old = rt.load_module("old", ModuleSource::Bytes, fixtures::TAG_V0_2.to_vec(), &config).await.unwrap();
    let stack = Stack::new(rt.clone(), vec![old], ScriptedProvider::ok("anthropic"));
    let (error, peak) = refused(&stack).await;
    assert_refused(&error, peak, "old", "more than 16777216 bytes of content, thinking and tool calls");

    // Streamed, the 0.2 module answers whole: the same cap, the same error.
    let (result, peak) = peak_during(stack.invoke_stream(request())).await;
    let error = result.err().expect("the answer is over the caps");
    assert_refused(&error, peak, "old", "more than 16777216 bytes of content, thinking and tool calls");
}

#[tokio::test]
async fn an_answer_within_the_caps_is_copied_whole() {
    let _one = SERIAL.lock().await;
    let rt = Runtime::builder().build().unwrap();
    // Five tool calls of three 1 MiB strings (15 MiB) and text of the inner answer.
    let config = json!({"mode": "alias-response", "target": "tool-calls", "size": 1 << 20, "count": 5});
    let stack = Stack::new(rt.clone(), vec![hostile(&rt, "five", config).await], ScriptedProvider::ok("x"));
    let response = stack.invoke(request()).await.expect("within the caps");
    assert_eq!(response.tool_calls.len(), 5);
    assert!(response.tool_calls.iter().all(|c| c.arguments.len() == 1 << 20 && c.id == c.arguments));
    assert_eq!(response.content, sample_response("x").content);

    let config = json!({"mode": "alias-response", "target": "metadata", "size": 1000, "count": 1000});
    let stack = Stack::new(rt.clone(), vec![hostile(&rt, "meta", config).await], ScriptedProvider::ok("x"));
    let response = stack.invoke(request()).await.expect("within the caps");
    assert_eq!(response.metadata.len(), 1000);
    assert_eq!(response.metadata_value("hostile.999").map(str::len), Some(1000));
}

#[tokio::test]
async fn spliced_events_sharing_one_string_are_copied_only_up_to_the_bound() {
    let _one = SERIAL.lock().await;
    let rt = Runtime::builder().max_stream_splices_per_call(1 << 16, 16 << 20).build().unwrap();
    // 4,096 text events and as many metadata values, all one 1 MiB string: 8 GiB whole.
    let config = json!({"mode": "alias-splice", "size": 1 << 20, "count": 4096});
    let stack =
        Stack::new(rt.clone(), vec![hostile(&rt, "splicer", config).await], ScriptedProvider::ok("x"));
    let (result, peak) = peak_during(stack.invoke_stream(request())).await;
    let error = result.err().expect("the splice is over the bound");
    eprintln!("splicer: {peak} bytes of heap during the call");
    assert!(peak < HEAP_BOUND, "the host allocated {peak} bytes for the splice");
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "splicer"), "{error:?}");
    assert!(error.message.contains("more than 65536 stream events or 16777216 bytes"), "{error:?}");

    // Within the bound, the events and metadata come through as spliced.
    let config = json!({"mode": "alias-splice", "size": 1000, "count": 3});
    let stack = Stack::new(rt.clone(), vec![hostile(&rt, "small", config).await], ScriptedProvider::ok("x"));
    let events: Vec<StreamEvent> =
        stack.invoke_stream(request()).await.unwrap().map(|item| item.unwrap()).collect().await;
    let texts: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(text) => Some(text.len()),
            _ => None,
        })
        .collect();
    assert_eq!(&texts[..3], [1000, 1000, 1000]);
    let stop = events.iter().find_map(|e| match e {
        StreamEvent::Stop { metadata, .. } => Some(metadata),
        _ => None,
    });
    let metadata = stop.expect("the stream stops");
    assert_eq!(metadata.iter().filter(|(k, v)| k.starts_with("hostile.") && v.len() == 1000).count(), 3);
}

#[tokio::test]
async fn a_log_message_is_never_copied_whole() {
    let _one = SERIAL.lock().await;
    let rt = Runtime::builder().build().unwrap();
    // One 32 MiB message at debug level.
    let config = json!({"mode": "big-log", "size": 32 << 20});
    let stack = Stack::new(rt.clone(), vec![hostile(&rt, "chatty", config).await], ScriptedProvider::ok("x"));
    // Filtered out (no subscriber here): the message is not read at all.
    let (result, peak) = peak_during(stack.invoke(request())).await;
    result.expect("the call succeeds");
    assert!(peak < 4 << 20, "the host allocated {peak} bytes for a log line nobody records");
    // Recorded: read in place, and cut to 4 KiB before anything is copied.
    let (captured, _guard) = logs::capture();
    let (result, peak) = peak_during(stack.invoke(request())).await;
    result.expect("the call succeeds");
    assert!(captured.text().contains("[cut: 4096 of 33554432 bytes shown]"), "the line was logged");
    assert!(peak < 4 << 20, "the host allocated {peak} bytes for one log line");
}
