//! The host-work bounds that config.toml's `[limits]` sets per model: request bytes held
//! for handles a module makes, module log caps, idle memory per store and per model, and
//! the per-stack share of instance slots. Each is read, checked, and applied to the
//! model's stack over real HTTP to a local vendor double.

use std::path::PathBuf;

use arcllm::config::Config;
use arcllm::runtime::Runtime;
use arcllm::types::*;
use arcllm::{load_model, Model};
use arcllm_tests::http::{Canned, MockServer};
use arcllm_tests::*;
use serde_json::json;

/// A config directory with provider `local` in front of `server`, the hostile and tag
/// fixtures, and `config` as config.toml.
struct Setup {
    dir: tempfile::TempDir,
    _server: MockServer,
}

impl Setup {
    async fn new() -> Self {
        let server = MockServer::start(Canned::json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        })))
        .await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("providers")).unwrap();
        std::fs::write(
            dir.path().join("providers/local.toml"),
            format!("[provider]\napi_format = \"openai-chat\"\nbase_url = \"{}\"\napi_key_required = false\ndefault_model = \"m\"\ntimeout_seconds = 5\n", server.url),
        )
        .unwrap();
        std::fs::write(dir.path().join("hostile.wasm"), fixtures::HOSTILE).unwrap();
        std::fs::write(dir.path().join("tag.wasm"), fixtures::TAG).unwrap();
        Setup { dir, _server: server }
    }

    fn write(&self, text: &str) -> PathBuf {
        let file = self.dir.path().join("config.toml");
        std::fs::write(&file, format!("[defaults]\nprovider = \"local\"\n{text}")).unwrap();
        file
    }

    /// A model whose stack is the one module `[modules.m]` (table `module`) under `limits`.
    async fn model(&self, limits: &str, module: &str) -> Model {
        let file = self.write(&format!(
            "[limits]\n{limits}\n[stack]\norder = [\"m\"]\n[modules.m]\nenabled = true\n{module}\n"
        ));
        load_model("local")
            .config_file(&file)
            .runtime(Runtime::builder().build().unwrap())
            .build()
            .await
            .unwrap_or_else(|e| panic!("build: {e}"))
    }
}

async fn invoke(model: &Model) -> Result<Response, Error> {
    model.invoke(vec![Message::user("hi")], vec![], Options::default()).await
}

const KEYS: &[&str] = &[
    "max_instances_per_stack",
    "max_request_bytes_per_call",
    "max_log_line_bytes",
    "max_log_lines_per_call",
    "max_idle_store_memory_bytes",
    "max_idle_memory_bytes",
];

#[tokio::test]
async fn the_keys_are_read_and_bad_values_are_errors_naming_them() {
    let setup = Setup::new().await;
    let text: String = KEYS.iter().zip(1..).map(|(key, n)| format!("{key} = {n}\n")).collect();
    let file = setup.write(&format!("[limits]\n{text}"));
    let limits = Config::from_file(&file).expect("accepted").limits;
    assert_eq!(limits.max_instances_per_stack, Some(1));
    assert_eq!(limits.max_request_bytes_per_call, Some(2));
    assert_eq!(limits.max_log_line_bytes, Some(3));
    assert_eq!(limits.max_log_lines_per_call, Some(4));
    assert_eq!(limits.max_idle_store_memory_bytes, Some(5));
    assert_eq!(limits.max_idle_memory_bytes, Some(6));
    // Unset: the runtime's own settings.
    let file = setup.write("");
    let limits = Config::from_file(&file).unwrap().limits;
    assert_eq!((limits.max_request_bytes_per_call, limits.max_idle_memory_bytes), (None, None));

    for key in KEYS {
        for bad in ["0", "-1", "1.5", "\"big\""] {
            let file = setup.write(&format!("[limits]\n{key} = {bad}\n"));
            let error = Config::from_file(&file).expect_err("rejected").to_string();
            assert!(
                error.contains(&format!("limits.{key}")) && error.contains("positive integer"),
                "{error}"
            );
        }
    }
}

#[tokio::test]
async fn max_request_bytes_per_call_stops_a_module_that_makes_big_handles() {
    let setup = Setup::new().await;
    // 20 handles of 1 MiB: within the default (4× the 64 MiB memory cap), over 16 MiB.
    let module = "wasm = \"hostile.wasm\"\nmode = \"big-handle\"\nsize = 1048576\ncount = 20";
    let within = setup.model("", module).await;
    assert_eq!(invoke(&within).await.expect("within the default").content.as_deref(), Some("ok"));
    let over = setup.model("max_request_bytes_per_call = 16777216", module).await;
    let error = invoke(&over).await.expect_err("over the config's bound");
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "m"), "{error}");
    assert!(error.message.contains("more than 16777216 bytes of requests"), "{error}");
    assert!(error.message.contains("limits.max_request_bytes_per_call"), "{error}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_log_caps_come_from_the_config() {
    let setup = Setup::new().await;
    let (captured, _guard) = logs::capture();
    let model = setup
        .model(
            "max_log_lines_per_call = 3\nmax_log_line_bytes = 8",
            "wasm = \"hostile.wasm\"\nmode = \"log-flood\"\ncount = 10",
        )
        .await;
    invoke(&model).await.expect("the call succeeds");
    let text = captured.text();
    assert_eq!(text.matches("flood li … [cut: 8 of").count(), 3, "{text}");
    assert_eq!(
        text.matches("module `m` logged 3 lines in this call; its further lines in this call are dropped")
            .count(),
        1,
        "{text}"
    );
}

/// The calls the tag module has counted in its memory: 1 when every call gets a fresh
/// store, rising when its store is kept idle and reused.
async fn calls_seen(model: &Model) -> u64 {
    let response = invoke(model).await.expect("call");
    response.metadata_value("calls").expect("tag reports calls").parse().unwrap()
}

#[tokio::test]
async fn idle_memory_limits_from_the_config_drop_stores_instead_of_keeping_them() {
    let setup = Setup::new().await;
    let tag = "wasm = \"tag.wasm\"\ntag = \"t\"\ncount_calls = true\nshare_state = true";
    // The check that the test can fail: without the keys the store is kept and reused.
    let kept = setup.model("", tag).await;
    assert_eq!((calls_seen(&kept).await, calls_seen(&kept).await), (1, 2));
    for limit in ["max_idle_store_memory_bytes = 4096", "max_idle_memory_bytes = 4096"] {
        let dropped = setup.model(limit, tag).await;
        assert_eq!((calls_seen(&dropped).await, calls_seen(&dropped).await), (1, 1), "{limit}");
    }
    // A per-model allowance that fits one store keeps it.
    let roomy = setup.model("max_idle_memory_bytes = 1073741824", tag).await;
    assert_eq!((calls_seen(&roomy).await, calls_seen(&roomy).await), (1, 2));
}
