//! Two models as two replicas sharing one real `redis-server` (started here on a free
//! loopback port), over real HTTP to a vendor double: together they stay within the rate
//! limit, a breaker one opens is open for the other, and when Redis dies mid-run calls keep
//! flowing (`on_error = "open"`) or are refused (`"closed"`), without a panic or a hang.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arcllm::config::Config;
use arcllm::state::{RedisSettings, StateStore};
use arcllm::types::*;
use arcllm::{load_model, Model};
use arcllm_tests::http::{Canned, MockServer};
use arcllm_tests::redis::RedisServer;

/// A config file with provider `primary` at `url` and `text` as its body.
fn config(dir: &tempfile::TempDir, url: &str, text: &str) -> Config {
    let providers = dir.path().join("providers");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(
        providers.join("primary.toml"),
        format!("[provider]\napi_format = \"openai-chat\"\nbase_url = \"{url}\"\napi_key_required = false\ndefault_model = \"m\"\ntimeout_seconds = 5\n"),
    )
    .unwrap();
    let path: PathBuf = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A replica: its own model, and its own connection to the server.
async fn replica(config: &Config, redis: &RedisServer) -> Model {
    let state = StateStore::redis(RedisSettings {
        url: redis.url(),
        key_prefix: "arcllm".into(),
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
    })
    .unwrap()
    .with_on_error(config.state.on_error);
    load_model("primary").config(config.clone()).state(state).build().await.unwrap()
}

async fn call(model: &Model) -> Result<Response, Error> {
    model.invoke(vec![Message::user("hello")], vec![], Options::default()).await
}

#[tokio::test]
async fn two_replicas_on_one_redis_stay_within_the_rate_limit_together() {
    let Some(redis) = RedisServer::start("two_replicas_stay_within_the_rate_limit") else { return };
    let server = MockServer::start(Canned::openai(200)).await;
    let dir = tempfile::tempdir().unwrap();
    // The first replica reads the server from config.toml's [state], as a deployment would.
    std::env::set_var("ARCLLM_TEST_REDIS_URL_RATE", redis.url());
    let text = "[state]\nbackend = \"redis\"\nurl_env = \"ARCLLM_TEST_REDIS_URL_RATE\"\n\
                [modules.rate_limit]\nenabled = true\nrequests_per_minute = 60\nburst_capacity = 5\nmax_wait_seconds = 0\n";
    let cfg = config(&dir, &server.url, text);
    let a = load_model("primary").config(cfg.clone()).build().await.unwrap();
    let b = replica(&cfg, &redis).await;
    assert_eq!(a.stack_names(), ["rate_limit"]);
    let started = Instant::now();
    let (mut granted, mut limited) = (0, 0);
    for i in 0..40 {
        match call(if i % 2 == 0 { &a } else { &b }).await {
            Ok(_) => granted += 1,
            Err(error) => {
                assert_eq!((error.kind, error.status), (ErrorKind::Api, Some(429)), "{error:?}");
                limited += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst of 5, plus one a second for the time the run took: across both replicas.
    let bound = 5.0 + elapsed.ceil();
    assert!(granted >= 5 && granted as f64 <= bound, "{granted} granted in {elapsed:.2}s (at most {bound})");
    assert_eq!(server.requests().len(), granted, "only granted calls reached the vendor");
    assert_eq!(granted + limited, 40);
}

#[tokio::test]
async fn a_breaker_opened_by_one_replica_is_open_for_the_other() {
    let Some(redis) = RedisServer::start("a_breaker_opened_by_one_replica") else { return };
    let server = MockServer::start(Canned::openai(503)).await;
    let dir = tempfile::tempdir().unwrap();
    let text = "[modules.circuit_breaker]\nenabled = true\nfailure_threshold = 2\ncooldown_seconds = 30\n";
    let cfg = config(&dir, &server.url, text);
    let (a, b) = (replica(&cfg, &redis).await, replica(&cfg, &redis).await);
    for _ in 0..2 {
        assert_eq!(call(&a).await.unwrap_err().status, Some(503));
    }
    assert_eq!(server.requests().len(), 2);
    let fast = call(&b).await.unwrap_err();
    assert!(fast.message.contains("circuit breaker for primary is open"), "{}", fast.message);
    assert!(fast.retry_after_ms.is_some_and(|ms| ms > 25_000), "{fast:?}");
    assert_eq!(server.requests().len(), 2, "the other replica made no call");
}

#[tokio::test]
async fn open_breaker_sends_fallback_to_the_next_provider_without_a_call() {
    let Some(redis) = RedisServer::start("open_breaker_sends_fallback_on") else { return };
    let (down, up) =
        (MockServer::start(Canned::openai(503)).await, MockServer::start(Canned::openai(200)).await);
    let dir = tempfile::tempdir().unwrap();
    let text = "[modules.fallback]\nenabled = true\nchain = [\"backup\"]\n\
                [modules.circuit_breaker]\nenabled = true\nfailure_threshold = 1\ncooldown_seconds = 30\n";
    let cfg = config(&dir, &down.url, text);
    std::fs::write(
        dir.path().join("providers/backup.toml"),
        format!("[provider]\napi_format = \"openai-chat\"\nbase_url = \"{}\"\napi_key_required = false\ndefault_model = \"m\"\n", up.url),
    )
    .unwrap();
    let cfg = Config::from_file(cfg.file.as_ref().unwrap()).unwrap();
    let model = replica(&cfg, &redis).await;
    assert_eq!(model.stack_names(), ["fallback", "circuit_breaker"]);
    for _ in 0..3 {
        let answer = call(&model).await.expect("the backup answers");
        assert_eq!(answer.metadata_value("arcllm.fallback.provider"), Some("backup"));
    }
    // The primary was called once: then its breaker was open, and fallback went straight on.
    assert_eq!((down.requests().len(), up.requests().len()), (1, 3));
}

#[tokio::test]
async fn redis_killed_mid_run_calls_keep_flowing_when_open_and_are_refused_when_closed() {
    let Some(mut redis) = RedisServer::start("redis_killed_mid_run_calls_keep_flowing") else { return };
    let server = MockServer::start(Canned::openai(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let text = "[modules.rate_limit]\nenabled = true\nrequests_per_minute = 1\nburst_capacity = 3\nmax_wait_seconds = 0\n\
                [modules.circuit_breaker]\nenabled = true\n";
    let open = replica(&config(&dir, &server.url, text), &redis).await;
    let closed_dir = tempfile::tempdir().unwrap();
    let closed_text = format!("[state]\non_error = \"closed\"\n{text}");
    let closed = replica(&config(&closed_dir, &server.url, &closed_text), &redis).await;
    for _ in 0..3 {
        call(&open).await.expect("within the burst");
    }
    assert_eq!(call(&closed).await.unwrap_err().status, Some(429), "the shared bucket is empty");

    redis.kill();
    let started = Instant::now();
    for _ in 0..20 {
        let one = Instant::now();
        call(&open).await.expect("open: the limits are lifted while Redis is down");
        assert!(one.elapsed() < Duration::from_secs(3), "{:?}", one.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let refused = call(&closed).await.unwrap_err();
    assert!(refused.message.contains("unavailable"), "{refused:?}");
    assert_eq!(server.requests().len(), 23);
}
