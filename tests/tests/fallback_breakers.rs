//! Fallback consults the circuit breakers of its chain's targets: with the built-in
//! `circuit_breaker` in a model's stack, every registry target runs behind it (same table,
//! same shared state, same keys). Two models share one store, in process and in a real
//! `redis-server`, over real HTTP to three vendor doubles: `b`'s breaker, opened by a model
//! calling `b` directly, makes another model's fallback chain `[b, c]` skip `b` without a
//! request; the fallback's own failures count towards `b`'s breaker; the fallback's call may
//! be the half-open probe; and with every target skipped or failed the primary error is
//! returned as before.

use std::path::PathBuf;
use std::time::Duration;

use arcllm::config::Config;
use arcllm::state::{Clock, ManualClock, RedisSettings, StateStore};
use arcllm::types::*;
use arcllm::{load_model, Model, Setting};
use arcllm_tests::http::{Canned, MockServer};
use arcllm_tests::redis::RedisServer;

/// Vendors `a` (the primary, down), `b` (down) and `c`, and a config.toml naming them with
/// fallback `[b, c]` and a breaker that opens after two failures.
struct Vendors {
    a: MockServer,
    b: MockServer,
    c: MockServer,
    config: Config,
    _dir: tempfile::TempDir,
}

async fn vendors(c_status: u16) -> Vendors {
    let (a, b, c) = (
        MockServer::start(Canned::openai(503)).await,
        MockServer::start(Canned::openai(503)).await,
        MockServer::start(Canned::openai(c_status)).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let providers = dir.path().join("providers");
    std::fs::create_dir_all(&providers).unwrap();
    for (name, server) in [("a", &a), ("b", &b), ("c", &c)] {
        std::fs::write(
            providers.join(format!("{name}.toml")),
            format!("[provider]\napi_format = \"openai-chat\"\nbase_url = \"{}\"\napi_key_required = false\ndefault_model = \"m\"\ntimeout_seconds = 5\n", server.url),
        )
        .unwrap();
    }
    let path: PathBuf = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[modules.fallback]\nenabled = true\nchain = [\"b\", \"c\"]\n\
         [modules.circuit_breaker]\nenabled = true\nfailure_threshold = 2\ncooldown_seconds = 30\n",
    )
    .unwrap();
    let config = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    Vendors { a, b, c, config, _dir: dir }
}

impl Vendors {
    /// A model calling `b` directly, behind the breaker (no fallback).
    async fn on_b(&self, state: &StateStore) -> Model {
        let model = load_model("b").config(self.config.clone()).state(state.clone()).fallback(Setting::Off);
        let model = model.build().await.unwrap();
        assert_eq!(model.stack_names(), ["circuit_breaker"]);
        model
    }

    /// Another model: primary `a`, falling back to `[b, c]`.
    async fn on_a(&self, state: &StateStore) -> Model {
        let model = load_model("a").config(self.config.clone()).state(state.clone()).build().await.unwrap();
        assert_eq!(model.stack_names(), ["fallback", "circuit_breaker"]);
        model
    }

    fn counts(&self) -> (usize, usize, usize) {
        (self.a.requests().len(), self.b.requests().len(), self.c.requests().len())
    }
}

async fn call(model: &Model) -> Result<Response, Error> {
    model.invoke(vec![Message::user("hello")], vec![], Options::default()).await
}

/// Opens `b`'s breaker by calling it directly twice.
async fn open_b(vendors: &Vendors, state: &StateStore) {
    let on_b = vendors.on_b(state).await;
    for _ in 0..2 {
        assert_eq!(call(&on_b).await.unwrap_err().status, Some(503));
    }
    let fast = call(&on_b).await.unwrap_err();
    assert!(fast.message.contains("circuit breaker for b is open"), "{fast:?}");
    assert_eq!(vendors.counts(), (0, 2, 0));
}

async fn an_open_breaker_makes_fallback_skip_its_target(state: StateStore) {
    let vendors = vendors(200).await;
    open_b(&vendors, &state).await;
    let on_a = vendors.on_a(&state).await;
    let answer = call(&on_a).await.expect("c answers");
    assert_eq!(answer.metadata_value("arcllm.fallback.provider"), Some("c"));
    assert_eq!(vendors.counts(), (1, 2, 1), "b was skipped: no request from the fallback");
}

async fn fallback_failures_count_towards_the_targets_breaker(state: StateStore) {
    let vendors = vendors(200).await;
    let on_a = vendors.on_a(&state).await;
    for _ in 0..2 {
        let answer = call(&on_a).await.expect("c answers");
        assert_eq!(answer.metadata_value("arcllm.fallback.provider"), Some("c"));
    }
    // a failed twice (its breaker is open now too), b failed twice on the fallback's calls.
    assert_eq!(vendors.counts(), (2, 2, 2));
    let fast = call(&vendors.on_b(&state).await).await.unwrap_err();
    assert!(fast.message.contains("circuit breaker for b is open"), "{fast:?}");
    assert_eq!(vendors.b.requests().len(), 2, "the breaker the fallback opened keeps b's own model off it");
}

async fn with_every_target_skipped_or_failed_the_primary_error_is_returned(state: StateStore) {
    let vendors = vendors(500).await;
    open_b(&vendors, &state).await;
    let error = call(&vendors.on_a(&state).await).await.unwrap_err();
    assert_eq!(
        (error.kind, error.status, error.provider.as_str()),
        (ErrorKind::Api, Some(503), "a"),
        "{error:?}"
    );
    assert_eq!(vendors.counts(), (1, 2, 1));
}

fn memory() -> (StateStore, ManualClock) {
    let (clock, hand) = Clock::manual();
    (StateStore::memory(clock, 10_000), hand)
}

async fn redis(server: &RedisServer) -> StateStore {
    StateStore::redis(RedisSettings {
        url: server.url(),
        key_prefix: "arcllm".into(),
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
    })
    .unwrap()
}

#[tokio::test]
async fn in_process_an_open_breaker_makes_fallback_skip_its_target() {
    an_open_breaker_makes_fallback_skip_its_target(memory().0).await;
}

#[tokio::test]
async fn in_process_fallback_failures_count_towards_the_targets_breaker() {
    fallback_failures_count_towards_the_targets_breaker(memory().0).await;
}

#[tokio::test]
async fn in_process_with_every_target_skipped_or_failed_the_primary_error_is_returned() {
    with_every_target_skipped_or_failed_the_primary_error_is_returned(memory().0).await;
}

#[tokio::test]
async fn redis_an_open_breaker_makes_fallback_skip_its_target() {
    let Some(server) = RedisServer::start("redis_an_open_breaker_makes_fallback_skip_its_target") else {
        return;
    };
    an_open_breaker_makes_fallback_skip_its_target(redis(&server).await).await;
}

#[tokio::test]
async fn redis_fallback_failures_count_towards_the_targets_breaker() {
    let Some(server) = RedisServer::start("redis_fallback_failures_count_towards_the_targets_breaker") else {
        return;
    };
    fallback_failures_count_towards_the_targets_breaker(redis(&server).await).await;
}

#[tokio::test]
async fn redis_with_every_target_skipped_or_failed_the_primary_error_is_returned() {
    let Some(server) = RedisServer::start("redis_with_every_target_skipped_or_failed") else { return };
    with_every_target_skipped_or_failed_the_primary_error_is_returned(redis(&server).await).await;
}

#[tokio::test]
async fn after_the_cooldown_the_fallbacks_call_may_be_the_probe() {
    let (state, clock) = memory();
    let vendors = vendors(200).await;
    open_b(&vendors, &state).await;
    let on_a = vendors.on_a(&state).await;
    clock.advance(Duration::from_secs(31));
    // Half-open: the fallback's call to b is the probe; b is still down, so the breaker
    // opens again and c answers.
    let answer = call(&on_a).await.expect("c answers");
    assert_eq!(answer.metadata_value("arcllm.fallback.provider"), Some("c"));
    assert_eq!(vendors.counts(), (1, 3, 1));
    // Open again for another cooldown: skipped.
    call(&on_a).await.expect("c answers");
    assert_eq!(vendors.counts(), (2, 3, 2));
}

#[tokio::test]
async fn a_model_without_the_breaker_calls_its_targets_whatever_their_breakers_say() {
    let (state, _clock) = memory();
    let vendors = vendors(200).await;
    open_b(&vendors, &state).await;
    let model = load_model("a").config(vendors.config.clone()).state(state.clone());
    let model = model.module("circuit_breaker", Setting::Off).build().await.unwrap();
    assert_eq!(model.stack_names(), ["fallback"]);
    call(&model).await.expect("c answers");
    assert_eq!(vendors.counts(), (1, 3, 1), "no breaker in this stack: b is called");
}
