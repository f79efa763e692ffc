//! Hot swap (issue #7): replacing a running model's chain — a changed retry table, a new
//! build of a third-party module file, a broken file — while calls run, losing none.
//!
//! The model under test is `tag_outer → retry → tag_inner → stub`, over real HTTP to a
//! local stub vendor that echoes the user text it receives. For configuration version K,
//! both tag modules carry the tag `vK` and append the suffixes ` <outer vK>` and
//! ` <inner vK>` to the request. A call that crossed chains would show two different tags,
//! or an echo rewritten by two versions; and since a model's version is 1 after build and
//! one more per reload, the call's K must lie between `version - 1` read before and after
//! the call.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arcllm::model::Snapshot;
use arcllm::runtime::Runtime;
use arcllm::types::*;
use arcllm::{load_model, BuildError, Model};
use arcllm_tests::{fixtures, logs};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The tests of this file run one at a time: the memory test reads the process's resident
/// size, which another test running beside it would move, and the backoff test needs a
/// reload to finish within a retry wait, which a concurrent load test would slow down.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// A generous upper bound for anything the tests wait for.
const PATIENCE: Duration = Duration::from_secs(60);

// --- the stub vendor -------------------------------------------------------------------

/// An OpenAI-format vendor that answers each call with the last user text it received.
/// A text whose first word is an id and that contains `flaky` gets one 503 per id first.
struct Stub {
    url: String,
    state: Arc<StubState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct StubState {
    /// Sent as `retry-after-ms` with each 503 (none: the retry module's own backoff).
    retry_after_ms: Option<u64>,
    /// Ids that got their 503.
    failed: Mutex<HashSet<String>>,
    /// Texts received that contain `record`, in order.
    recorded: Mutex<Vec<String>>,
    /// Signalled at each 503.
    failure_sent: Notify,
}

impl Stub {
    async fn start(retry_after_ms: Option<u64>) -> Stub {
        let state = Arc::new(StubState { retry_after_ms, ..StubState::default() });
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |body: Bytes| {
            let state = shared.clone();
            async move { state.answer(&body) }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub { url, state, task }
    }

    fn recorded(&self) -> Vec<String> {
        self.state.recorded.lock().unwrap().clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubState {
    fn answer(&self, body: &[u8]) -> HttpResponse {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = body["messages"]
            .as_array()
            .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        if text.contains("record") {
            self.recorded.lock().unwrap().push(text.clone());
        }
        let id = text.split(' ').next().unwrap_or_default().to_string();
        if text.contains("flaky") && self.failed.lock().unwrap().insert(id) {
            self.failure_sent.notify_one();
            let mut reply =
                (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":{"message":"flaky"}}"#).into_response();
            if let Some(ms) = self.retry_after_ms {
                reply.headers_mut().insert("retry-after-ms", ms.into());
            }
            return reply;
        }
        let answer = json!({
            "id": "chatcmpl-stub", "object": "chat.completion", "created": 1, "model": "stub-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        });
        ([("content-type", "application/json")], answer.to_string()).into_response()
    }
}

// --- the files -------------------------------------------------------------------------

const CONFIG: &str = "config.toml";
const OUTER: &str = "modules/tag-outer.wasm";
const INNER: &str = "modules/tag-inner.wasm";

/// A config directory: config.toml, `providers/stub.toml`, and the two tag modules.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(stub: &Stub) -> Workspace {
        let ws = Workspace { dir: tempfile::tempdir().expect("temp dir") };
        ws.write("providers/stub.toml", provider_toml(&stub.url, 30));
        ws.write(OUTER, fixtures::TAG);
        ws.write(INNER, tag_build(0));
        ws.write(CONFIG, config_toml(0, RETRY_FAST));
        ws
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes in place, as an editor saving over the file does.
    fn write(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write");
    }

    /// Writes a new file beside and renames it over the old one, as deploy tools do.
    fn replace(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(relative);
        let staged = path.with_extension("staged");
        std::fs::write(&staged, contents).expect("write");
        std::fs::rename(&staged, &path).expect("rename");
    }

    /// A model built from this directory's config.toml, on a runtime of its own (so that
    /// its compiled-component count is this test's alone).
    async fn model(&self) -> (Arc<Model>, Runtime) {
        let runtime = Runtime::builder().build().expect("runtime");
        let model = load_model("stub")
            .config_file(self.path(CONFIG))
            .runtime(runtime.clone())
            .build()
            .await
            .unwrap_or_else(|e| panic!("build: {e}"));
        assert_eq!(model.version(), 1);
        (Arc::new(model), runtime)
    }
}

fn provider_toml(url: &str, timeout_seconds: u32) -> String {
    format!(
        "[provider]\napi_format = \"openai-chat\"\nbase_url = \"{url}\"\napi_key_required = false\ndefault_model = \"stub-model\"\ntimeout_seconds = {timeout_seconds}\n"
    )
}

/// Retries a 503 after a few milliseconds.
const RETRY_FAST: &str = "max_retries = 3\nbackoff_base_seconds = 0.002\nmax_wait_seconds = 0.05";

/// config.toml for chain version `k`: both tags `vk`, and `retry` as the retry table.
fn config_toml(k: u64, retry: &str) -> String {
    format!(
        r#"[defaults]
provider = "stub"

[stack]
order = ["tag_outer", "retry", "tag_inner"]

[modules.tag_outer]
enabled = true
wasm = "{OUTER}"
tag = "v{k}"
suffix = " <outer v{k}>"

[modules.retry]
enabled = true
{retry}

[modules.tag_inner]
enabled = true
wasm = "{INNER}"
tag = "v{k}"
suffix = " <inner v{k}>"
"#
    )
}

/// A retry table that differs from one version to the next (and always retries a 503).
fn retry_table(k: u64) -> String {
    format!("max_retries = {}\nbackoff_base_seconds = 0.00{}\nmax_wait_seconds = 0.05", 2 + k % 3, 1 + k % 5)
}

/// Another build of the tag module: the same code, a different file (and content hash).
/// It is the fixture plus a custom section — id 0, its size, its name, a payload — which
/// every WebAssembly reader skips.
fn tag_build(build: u64) -> Vec<u8> {
    let name = b"arcllm-test-build";
    let mut section = leb128(name.len());
    section.extend_from_slice(name);
    section.extend_from_slice(build.to_string().as_bytes());
    let mut bytes = fixtures::TAG.to_vec();
    bytes.push(0);
    bytes.extend(leb128(section.len()));
    bytes.extend(section);
    bytes
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

// --- checking responses ----------------------------------------------------------------

/// The configuration version K of the one chain `response` went through, given the user
/// `text` that was sent; an error if it shows anything but one whole chain.
fn chain_version(response: &Response, text: &str) -> Result<u64, String> {
    let tags: Vec<&str> =
        response.metadata.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v.as_str()).collect();
    let [inner, outer] = tags[..] else { return Err(format!("expected two tags, got {tags:?}")) };
    if inner != outer {
        return Err(format!("mixed chain: inner tag {inner}, outer tag {outer}"));
    }
    let k: u64 = outer.strip_prefix('v').and_then(|k| k.parse().ok()).ok_or(format!("bad tag {outer}"))?;
    let echo = format!("{text} <outer v{k}> <inner v{k}>");
    if response.content.as_deref() != Some(echo.as_str()) {
        return Err(format!(
            "the request went through another chain: sent {text:?}, vendor saw {:?}",
            response.content
        ));
    }
    Ok(k)
}

/// Sends `text`; the answer must come through exactly one chain, having made the retry
/// attempts the text calls for. Returns the chain's K and the attempts.
async fn call(model: &Model, text: &str) -> Result<(u64, String), String> {
    let response = model.invoke(vec![Message::user(text)], vec![], Options::default()).await;
    let response = response.map_err(|e| format!("{text}: call failed: {}", e.summary()))?;
    let k = chain_version(&response, text).map_err(|e| format!("{text}: {e}"))?;
    let attempts = response.metadata_value("arcllm.retry.attempts").unwrap_or("none").to_string();
    let expected = if text.contains("flaky") { "2" } else { "1" };
    if attempts != expected {
        return Err(format!("{text}: {attempts} retry attempts, expected {expected}"));
    }
    Ok((k, attempts))
}

/// As [`call`], for models whose version is K + 1 (every reload changed the tags): the
/// chain must also have been current at some moment during the call.
async fn checked_call(model: &Model, text: &str) -> Result<(u64, String), String> {
    let before = model.version();
    let outcome = call(model, text).await;
    let after = model.version();
    let (k, attempts) = outcome?;
    if !(before..=after).contains(&(k + 1)) {
        return Err(format!("{text}: answered by version {} outside {before}..={after}", k + 1));
    }
    Ok((k, attempts))
}

// --- load ------------------------------------------------------------------------------

/// What a load run saw.
#[derive(Debug, Default)]
struct Tally {
    /// Good answers by configuration version K.
    by_version: BTreeMap<u64, u64>,
    calls: u64,
    retried: u64,
    failures: Vec<String>,
}

/// `concurrency` tasks, each calling the model in a loop until stopped; every fifth call
/// gets a 503 first, so retry runs (and sleeps) across swaps too.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(model: &Arc<Model>, concurrency: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let tasks = (0..concurrency)
            .map(|task| {
                let (model, stop, tally) = (model.clone(), stop.clone(), tally.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let text = format!("t{task}-{i}{}", if i % 5 == 4 { " flaky" } else { "" });
                        let outcome = checked_call(&model, &text).await;
                        let mut tally = tally.lock().unwrap();
                        tally.calls += 1;
                        match outcome {
                            Ok((k, attempts)) => {
                                *tally.by_version.entry(k).or_default() += 1;
                                tally.retried += u64::from(attempts != "1");
                            }
                            Err(failure) => tally.failures.push(failure),
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Load { stop, tally, tasks }
    }

    fn answered_by(&self, k: u64) -> u64 {
        self.tally.lock().unwrap().by_version.get(&k).copied().unwrap_or(0)
    }

    /// Waits until `n` more calls than now were answered by version K (proof that K is
    /// serving), or fails after [`PATIENCE`] (or at the first failed call).
    async fn wait_for_answers(&self, k: u64, n: u64) {
        let target = self.answered_by(k) + n;
        let waited = tokio::time::timeout(PATIENCE, async {
            while self.answered_by(k) < target {
                if let Some(failure) = self.tally.lock().unwrap().failures.first() {
                    panic!("a call failed under load: {failure}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "version {k} did not answer {n} more calls in {PATIENCE:?}: {:?}",
            self.tally
        );
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        Arc::try_unwrap(self.tally).expect("tasks ended").into_inner().unwrap()
    }
}

// --- the tests -------------------------------------------------------------------------

const SWAPS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_lose_no_call_and_never_mix_chains() {
    let _serial = serial().await;
    let stub = Stub::start(None).await;
    let ws = Workspace::new(&stub);
    let (model, _runtime) = ws.model().await;

    let load = Load::start(&model, 200);
    load.wait_for_answers(0, 200).await;
    let started = Instant::now();
    for k in 1..=SWAPS {
        // Each swap: a new build of the inner module's file and a new config (tags and
        // retry table). Each version must answer calls before the next swap.
        ws.replace(INNER, tag_build(k));
        ws.replace(CONFIG, config_toml(k, &retry_table(k)));
        let digest_before = *model.snapshot().modules()[2].digest();
        model.reload().await.unwrap_or_else(|e| panic!("swap {k}: {e}"));
        assert_eq!(model.version(), k + 1);
        assert_ne!(*model.snapshot().modules()[2].digest(), digest_before, "swap {k} loaded the new file");
        load.wait_for_answers(k, 50).await;
    }
    let swapping = started.elapsed();

    // Calls that start after the last swap see it (the loaders' own calls check this too).
    let (k, _) = checked_call(&model, "after-the-last-swap").await.expect("a call after the swaps");
    assert_eq!(k, SWAPS);
    let tally = load.finish().await;
    println!(
        "{SWAPS} swaps in {swapping:?} under 200 concurrent callers: {} calls ({} retried), {} failed; answers by version: {:?}",
        tally.calls,
        tally.retried,
        tally.failures.len(),
        tally.by_version
    );
    assert!(
        tally.failures.is_empty(),
        "{} of {} calls failed, first: {}",
        tally.failures.len(),
        tally.calls,
        tally.failures[0]
    );
    assert!(tally.retried > 0, "the load exercised retry");
    assert_eq!(tally.by_version.len() as u64, SWAPS + 1, "every version answered calls");
}

/// A bad swap, what it breaks, and what the error must say.
struct Breakage {
    what: &'static str,
    file: &'static str,
    contents: Vec<u8>,
    /// Strings the error must contain (besides the file's name).
    says: &'static [&'static str],
}

fn breakages() -> Vec<Breakage> {
    let config = |contents: String, says| Breakage {
        what: "config",
        file: CONFIG,
        contents: contents.into_bytes(),
        says,
    };
    let mut cases = vec![
        Breakage {
            what: "not wasm",
            file: INNER,
            contents: b"#!/bin/sh\necho hi\n".to_vec(),
            says: &["not a WebAssembly file"],
        },
        Breakage {
            what: "a core module",
            file: INNER,
            contents: wat::parse_str("(module)").unwrap(),
            says: &["core WebAssembly module, not a component"],
        },
        Breakage {
            what: "the wrong world",
            file: INNER,
            contents: wat::parse_str("(component)").unwrap(),
            says: &["does not implement the arc:llm/middleware@0.3.0 world"],
        },
        Breakage {
            what: "a truncated component",
            file: INNER,
            contents: fixtures::TAG[..fixtures::TAG.len() / 2].to_vec(),
            says: &["invalid component"],
        },
    ];
    let bad_table = config_toml(1, RETRY_FAST).replace("tag = \"v1\"\nsuffix = \" <inner v1>\"", "tag = 42");
    cases.push(Breakage { what: "bad table", ..config(bad_table, &["tag_inner", "tag must be a string"]) });
    cases.push(Breakage {
        what: "bad retry table",
        ..config(config_toml(1, "max_retries = -1"), &["retry", "max_retries"])
    });
    cases
        .push(Breakage { what: "TOML syntax", ..config("[stack\norder = [".into(), &["TOML syntax error"]) });
    cases.push(Breakage {
        what: "a missing module file",
        ..config(
            config_toml(1, RETRY_FAST).replace(INNER, "modules/missing.wasm"),
            &["missing.wasm", "cannot read the file"],
        )
    });
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_swap_keeps_the_old_chain_serving_and_names_the_file() {
    let _serial = serial().await;
    let stub = Stub::start(None).await;
    let ws = Workspace::new(&stub);
    let (model, _runtime) = ws.model().await;
    let load = Load::start(&model, 200);
    load.wait_for_answers(0, 100).await;

    let cases = breakages();
    for case in &cases {
        ws.replace(case.file, &case.contents);
        let error: BuildError =
            model.reload().await.expect_err(&format!("a swap to {} must fail", case.what));
        let text = error.to_string();
        println!("{}: {text}", case.what);
        let file = case.file.rsplit('/').next().unwrap();
        assert!(text.contains(file), "{}: the error names the file {file}: {text}", case.what);
        for needle in case.says {
            assert!(text.contains(needle), "{}: the error says {needle:?}: {text}", case.what);
        }
        assert_eq!(model.version(), 1, "{}: nothing was published", case.what);
        load.wait_for_answers(0, 100).await;
        // Put the good file back for the next case (nothing reloads it meanwhile).
        ws.replace(INNER, tag_build(0));
        ws.replace(CONFIG, config_toml(0, RETRY_FAST));
    }

    // A good swap after all that goes through.
    ws.replace(CONFIG, config_toml(1, RETRY_FAST));
    model.reload().await.unwrap_or_else(|e| panic!("the good swap: {e}"));
    assert_eq!(model.version(), 2);
    load.wait_for_answers(1, 100).await;
    let tally = load.finish().await;
    println!(
        "{} broken swaps then a good one under 200 callers: {} calls, {} failed; answers by version: {:?}",
        cases.len(),
        tally.calls,
        tally.failures.len(),
        tally.by_version
    );
    assert!(tally.failures.is_empty(), "{} calls failed, first: {}", tally.failures.len(), tally.failures[0]);
    assert_eq!(tally.by_version.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_sleeping_in_a_retry_backoff_finishes_on_its_old_chain() {
    let _serial = serial().await;
    // The stub asks for a 2 s wait: time enough for a reload (tens of milliseconds) to
    // finish while the call sleeps.
    let stub = Stub::start(Some(2000)).await;
    let ws = Workspace::new(&stub);
    ws.write(CONFIG, config_toml(0, "max_retries = 2\nmax_wait_seconds = 10"));
    let (model, _runtime) = ws.model().await;
    let v1: Weak<Snapshot> = Arc::downgrade(&model.snapshot());

    let call = tokio::spawn({
        let model = model.clone();
        async move { checked_call(&model, "slow flaky record").await }
    });
    tokio::time::timeout(PATIENCE, stub.state.failure_sent.notified())
        .await
        .expect("the first attempt got its 503");

    // Version 2 would not retry at all: if the sleeping call moved to it, it would fail.
    ws.write(CONFIG, config_toml(1, "max_retries = 0"));
    let reload_started = Instant::now();
    model.reload().await.unwrap_or_else(|e| panic!("reload: {e}"));
    let reload_took = reload_started.elapsed();
    assert_eq!(model.version(), 2);
    assert_eq!(
        stub.recorded().len(),
        1,
        "the call is still in its backoff when version 2 is published (the reload took {reload_took:?})"
    );
    assert!(v1.upgrade().is_some(), "the sleeping call holds version 1");

    let (k, _) = checked_call(&model, "fresh").await.expect("a call started now");
    assert_eq!(k, 1, "a call started after the swap runs on version 2");

    let (k, attempts) = call.await.expect("call task").expect("the sleeping call succeeds");
    assert_eq!((k, attempts.as_str()), (0, "2"), "it retried, on version 1");
    assert_eq!(
        stub.recorded(),
        vec!["slow flaky record <outer v0> <inner v0>".to_string(); 2],
        "both attempts went through version 1's modules"
    );
    assert!(v1.upgrade().is_none(), "version 1 is freed once its last call ended");
    println!("reload while a call slept in its backoff took {reload_took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_unchanged_files_reuses_the_compiled_components() {
    let _serial = serial().await;
    let stub = Stub::start(None).await;
    let ws = Workspace::new(&stub);
    let (model, runtime) = ws.model().await;
    // retry and the two tag files (fallback, rate_limit and circuit_breaker are off with
    // their default tables, which are not loaded to be checked).
    assert_eq!(runtime.compiled_components(), 3);

    let first = model.snapshot();
    let mut unchanged = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        model.reload().await.unwrap_or_else(|e| panic!("reload: {e}"));
        unchanged.push(started.elapsed());
        let current = model.snapshot();
        for (old, new) in first.modules().iter().zip(current.modules()) {
            // `digest` borrows from the compiled component: the same address while both
            // snapshots are alive means the very same compiled component, not a recompile.
            assert!(std::ptr::eq(old.digest(), new.digest()), "{} was compiled again", new.name);
        }
        assert_eq!(runtime.compiled_components(), 3);
    }
    assert_eq!(model.version(), 6);

    ws.replace(INNER, tag_build(1));
    let started = Instant::now();
    model.reload().await.unwrap_or_else(|e| panic!("reload: {e}"));
    let changed = started.elapsed();
    let current = model.snapshot();
    assert!(std::ptr::eq(first.modules()[0].digest(), current.modules()[0].digest()), "tag_outer reused");
    assert_ne!(first.modules()[2].digest(), current.modules()[2].digest(), "tag_inner is the new build");
    assert_eq!(runtime.compiled_components(), 4, "the old build lives as long as a snapshot uses it");
    drop(first);
    assert_eq!(runtime.compiled_components(), 3, "and is freed with the last one");
    println!("reload with unchanged files: {unchanged:?}; with one module file changed: {changed:?}");
}

/// The process's resident set size, from /proc (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

const MEMORY_SWAPS: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_swaps_release_every_old_snapshot() {
    let _serial = serial().await;
    let stub = Stub::start(None).await;
    let ws = Workspace::new(&stub);
    let (model, runtime) = ws.model().await;

    // Four calls run beside every reload, on the old chain or the new one: a snapshot is
    // freed by its last call as often as by the swap itself.
    let swap = |k: u64| {
        let (model, ws) = (model.clone(), &ws);
        async move {
            // The table changes on every swap; the module file every 100 (a compile each).
            ws.write(CONFIG, config_toml(k, &retry_table(k)));
            if k.is_multiple_of(100) {
                ws.replace(INNER, tag_build(k / 100));
            }
            let calls: Vec<_> = (0..4)
                .map(|i| {
                    let model = model.clone();
                    tokio::spawn(async move { checked_call(&model, &format!("m{k}-{i}")).await })
                })
                .collect();
            let replaced = Arc::downgrade(&model.snapshot());
            model.reload().await.unwrap_or_else(|e| panic!("swap {k}: {e}"));
            for call in calls {
                call.await.expect("call task").unwrap_or_else(|e| panic!("swap {k}: {e}"));
            }
            replaced
        }
    };

    // Warm up first: pools (instances, connections, the allocator's arenas) reach their
    // working size in the first swaps, and that is not growth.
    for k in 1..=50 {
        swap(k).await;
    }
    let (rss_before, fds_before) = (rss_bytes(), open_fds());
    let started = Instant::now();
    let mut replaced = Vec::new();
    for k in 51..=50 + MEMORY_SWAPS {
        replaced.push(swap(k).await);
    }
    let took = started.elapsed();
    let (rss_after, fds_after) = (rss_bytes(), open_fds());

    assert_eq!(model.version(), 51 + MEMORY_SWAPS);
    let alive = replaced.iter().filter(|w| w.strong_count() > 0).count();
    assert_eq!(alive, 0, "of {MEMORY_SWAPS} replaced snapshots, {alive} are still alive");
    // retry (the other built-ins are off with their default tables, and not loaded),
    // tag_outer's file, and the one build of tag_inner's file in use.
    assert_eq!(runtime.compiled_components(), 3, "old builds of the module file were freed");

    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "{MEMORY_SWAPS} swaps ({} calls) in {took:?}: RSS {:.1} MiB -> {:.1} MiB, open fds {fds_before:?} -> {fds_after:?}",
        4 * MEMORY_SWAPS,
        mib(rss_before.unwrap_or(0)),
        mib(rss_after.unwrap_or(0)),
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        // A snapshot holds an HTTP client (connection pool, TLS roots), the chain and its
        // module tables: about 250 KiB. Holding on to every replaced snapshot, this test
        // measured RSS growing by about 250 MiB over 1,000 swaps; releasing them, by 1 to
        // 2 MiB (allocator noise). 32 MiB catches a leak of one snapshot in eight swaps
        // with room for noise, and any leak of compiled module builds (megabytes each).
        let growth = after.saturating_sub(before);
        assert!(growth < 32 << 20, "RSS grew by {:.1} MiB over {MEMORY_SWAPS} swaps", mib(growth));
    }
    if let (Some(before), Some(after)) = (fds_before, fds_after) {
        // A leaked client keeps its connection: 2 descriptors (both ends) per swap.
        assert!(after <= before + 50, "open descriptors went from {before} to {after}");
    }
}

#[tokio::test]
async fn the_watcher_reloads_on_changes_and_keeps_the_chain_on_errors() {
    let _serial = serial().await;
    let (logs, _guard) = logs::capture();
    let stub = Stub::start(None).await;
    let ws = Workspace::new(&stub);
    let (model, _runtime) = ws.model().await;
    let sources = model.sources();
    assert_eq!(sources.config_file, Some(ws.path(CONFIG)));
    assert_eq!(sources.providers_dir, Some(ws.path("providers")));
    assert_eq!(sources.modules, vec![ws.path(OUTER), ws.path(INNER)]);

    let watcher = model.watch_debounced(Duration::from_millis(200)).expect("watch");
    assert_eq!(Arc::strong_count(&model), 1, "the watcher holds the model weakly");
    let mut status = watcher.status();
    let mut next = async |attempt: u64| {
        let reached = tokio::time::timeout(PATIENCE, status.wait_for(|s| s.attempts >= attempt)).await;
        let status =
            reached.expect("the watcher reloads within the patience").expect("watcher alive").clone();
        assert_eq!(status.attempts, attempt, "one reload per change");
        status.last.expect("an outcome")
    };

    // config.toml saved in place: a new chain.
    ws.write(CONFIG, config_toml(1, RETRY_FAST));
    assert_eq!(next(1).await.expect("reloaded"), 2);
    assert_eq!(call(&model, "w1").await.expect("call").0, 1);

    // A module file replaced by rename: a new chain with the new build.
    let old_build = *model.snapshot().modules()[2].digest();
    ws.replace(INNER, tag_build(7));
    assert_eq!(next(2).await.expect("reloaded"), 3);
    assert_ne!(*model.snapshot().modules()[2].digest(), old_build, "the new build is loaded");

    // A provider file changed: a new chain (with a new adapter).
    ws.write("providers/stub.toml", provider_toml(&stub.url, 20));
    assert_eq!(next(3).await.expect("reloaded"), 4);

    // A broken config.toml: the error, and the previous chain keeps answering.
    ws.write(CONFIG, "[stack\n");
    let error = next(4).await.expect_err("a syntax error does not load");
    assert!(
        error.to_string().contains("config.toml") && error.to_string().contains("TOML syntax error"),
        "{error}"
    );
    assert_eq!(model.version(), 4);
    assert_eq!(call(&model, "w2").await.expect("the old chain answers").0, 1);

    // Fixed again: reloads.
    ws.write(CONFIG, config_toml(2, RETRY_FAST));
    assert_eq!(next(5).await.expect("reloaded"), 5);
    assert_eq!(call(&model, "w3").await.expect("call").0, 2);

    let text = logs.text();
    let reloaded = "reloaded: stack v2 (tag_outer → retry → tag_inner → stub/stub-model)";
    assert!(text.lines().any(|l| l.contains("INFO") && l.contains(reloaded)), "{text}");
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains("reload failed: ")
            && l.contains("TOML syntax error")
            && l.contains("kept previous stack v4")),
        "{text}"
    );
}
