//! The shared-state backends: the same operations against the in-process store and a real
//! `redis-server` (started here on a free loopback port), two stores on one server seeing
//! one state, and the documented behaviour when Redis dies mid-run.

use std::time::{Duration, Instant};

use arcllm::state::{
    Bucket, Clock, OnError, RedisSettings, Slot, StateConfig, StateKey, StateStore, Window, WindowKind,
    RECHECK_AFTER,
};
use arcllm_tests::logs;
use arcllm_tests::redis::RedisServer;

fn key<'a>(module: &'a str, slot: Slot, key: &'a str) -> StateKey<'a> {
    StateKey { module, slot, key: key.as_bytes() }
}

fn redis_store(server: &RedisServer, prefix: &str) -> StateStore {
    StateStore::redis(RedisSettings {
        url: server.url(),
        key_prefix: prefix.into(),
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
    })
    .expect("a Redis store")
}

/// Every operation, as any backend must answer it (the clock is real and the test quick:
/// nothing here depends on time passing).
async fn exercise(store: &StateStore) {
    // A bucket of 3, refilled one a minute: three takes, then a wait of about a minute.
    let bucket = Bucket { capacity: 3.0, refill_per_second: 1.0 / 60.0 };
    let b = key("rate_limit", Slot::Bucket, "openai");
    for left in [2.0, 1.0, 0.0] {
        let taken = store.take(b, bucket, 1.0).await.unwrap();
        assert!(taken.granted && (taken.remaining - left).abs() < 0.01, "{taken:?}");
    }
    let denied = store.take(b, bucket, 1.0).await.unwrap();
    assert!(
        !denied.granted && denied.wait > Duration::from_secs(55) && denied.wait <= Duration::from_secs(60),
        "{denied:?}"
    );

    // Counters, fixed and sliding, in windows far longer than the test.
    let fixed = Window { length: Duration::from_secs(3600), kind: WindowKind::Fixed };
    let sliding = Window { kind: WindowKind::Sliding, ..fixed };
    let c = key("retry", Slot::Counter, "requests:openai");
    assert_eq!(store.read(c, fixed).await.unwrap(), 0);
    assert_eq!(store.incr(c, fixed, 1).await.unwrap(), 1);
    assert_eq!(store.incr(c, fixed, 4).await.unwrap(), 5);
    assert_eq!(store.read(c, fixed).await.unwrap(), 5);
    let s = key("retry", Slot::Counter, "sliding");
    assert_eq!(store.incr(s, sliding, 2).await.unwrap(), 2);
    assert_eq!(store.read(s, sliding).await.unwrap(), 2);
    store.delete(c).await.unwrap();
    assert_eq!(store.read(c, fixed).await.unwrap(), 0);

    // Compare-and-set.
    let v = key("circuit_breaker", Slot::Value, "state:openai");
    let ttl = Duration::from_secs(60);
    assert_eq!(store.get(v).await.unwrap(), None);
    assert!(store.cas(v, None, Some(b"open"), ttl).await.unwrap().swapped);
    let lost = store.cas(v, None, Some(b"open"), ttl).await.unwrap();
    assert!(
        !lost.swapped && lost.current.as_ref().map(|s| s.value.as_slice()) == Some(&b"open"[..]),
        "{lost:?}"
    );
    let wrong = store.cas(v, Some(b"probe"), Some(b"open"), ttl).await.unwrap();
    assert!(!wrong.swapped);
    let got = store.get(v).await.unwrap().expect("set");
    assert!(got.value == b"open" && got.age < Duration::from_secs(5), "{got:?}");
    assert!(store.cas(v, Some(b"open"), Some(b"probe"), ttl).await.unwrap().swapped);
    assert!(store.cas(v, Some(b"probe"), None, ttl).await.unwrap().swapped);
    assert_eq!(store.get(v).await.unwrap(), None);

    // Namespaces: the same key of another module, or of another kind, is another thing.
    assert!(store.cas(key("a", Slot::Value, "k"), None, Some(b"a"), ttl).await.unwrap().swapped);
    assert_eq!(store.get(key("b", Slot::Value, "k")).await.unwrap(), None);
    assert_eq!(store.read(key("a", Slot::Counter, "k"), fixed).await.unwrap(), 0);
    assert!(store.take(key("b", Slot::Bucket, "openai"), bucket, 1.0).await.unwrap().granted);

    // Invalid operations are refused whatever `on_error` says.
    let err = store.take(b, bucket, 4.0).await.unwrap_err();
    assert!(!err.is_unavailable() && err.to_string().contains("capacity"), "{err}");
    let long = "k".repeat(arcllm::state::MAX_KEY_BYTES + 1);
    assert!(store.get(key("a", Slot::Value, &long)).await.is_err());
    let big = vec![0u8; arcllm::state::MAX_VALUE_BYTES + 1];
    assert!(store.cas(v, None, Some(&big), ttl).await.is_err());
}

#[tokio::test]
async fn the_in_process_backend_answers_every_operation() {
    exercise(&StateStore::memory(Clock::default(), 1000)).await;
}

#[tokio::test]
async fn the_redis_backend_answers_every_operation_in_one_round_trip_each() {
    let Some(server) = RedisServer::start("the_redis_backend_answers_every_operation") else { return };
    exercise(&redis_store(&server, "t1")).await;
}

#[tokio::test]
async fn in_process_time_to_live_windows_and_refill_follow_the_clock() {
    let (clock, time) = Clock::manual();
    let store = StateStore::memory(clock, 1000);
    let v = key("m", Slot::Value, "v");
    store.cas(v, None, Some(b"x"), Duration::from_secs(10)).await.unwrap();
    time.advance(Duration::from_secs(4));
    assert_eq!(store.get(v).await.unwrap().unwrap().age, Duration::from_secs(4));
    time.advance(Duration::from_secs(6));
    assert_eq!(store.get(v).await.unwrap(), None);
    let bucket = Bucket { capacity: 1.0, refill_per_second: 0.5 };
    let b = key("m", Slot::Bucket, "b");
    assert!(store.take(b, bucket, 1.0).await.unwrap().granted);
    assert_eq!(store.take(b, bucket, 1.0).await.unwrap().wait, Duration::from_secs(2));
    time.advance(Duration::from_secs(2));
    assert!(store.take(b, bucket, 1.0).await.unwrap().granted);
    let window = Window { length: Duration::from_secs(10), kind: WindowKind::Fixed };
    let c = key("m", Slot::Counter, "c");
    store.incr(c, window, 3).await.unwrap();
    time.advance(Duration::from_secs(10));
    assert_eq!(store.read(c, window).await.unwrap(), 0);
}

#[tokio::test]
async fn a_full_in_process_store_answers_as_on_error_says() {
    let (clock, _time) = Clock::manual();
    // 32 shards of one key each.
    let store = StateStore::memory(clock, 32);
    let window = Window { length: Duration::from_secs(60), kind: WindowKind::Fixed };
    let mut refused = None;
    for i in 0..200 {
        let name = format!("k{i}");
        let closed = store.clone().with_on_error(OnError::Closed);
        if let Err(error) = closed.incr(key("m", Slot::Counter, &name), window, 1).await {
            refused = Some((name, error));
            break;
        }
    }
    let (name, error) = refused.expect("a store of 32 keys fills up");
    assert!(error.is_unavailable() && error.to_string().contains("max_keys"), "{error}");
    // Open: the operation succeeds blind (a count of 0), and the store is still bounded.
    assert_eq!(store.incr(key("m", Slot::Counter, &name), window, 1).await.unwrap(), 0);
    assert!(store.as_memory().unwrap().len() <= 32);
}

#[tokio::test]
async fn two_stores_on_one_server_share_state_and_prefixes_keep_deployments_apart() {
    let Some(server) = RedisServer::start("two_stores_on_one_server_share_state") else { return };
    let (a, b) = (redis_store(&server, "gw"), redis_store(&server, "gw"));
    let other = redis_store(&server, "other");
    let bucket = Bucket { capacity: 10.0, refill_per_second: 0.001 };
    let k = key("rate_limit", Slot::Bucket, "rpm:openai");
    let mut granted = 0;
    for i in 0..30 {
        let store = if i % 2 == 0 { &a } else { &b };
        granted += usize::from(store.take(k, bucket, 1.0).await.unwrap().granted);
    }
    assert_eq!(granted, 10, "the two stores draw from one bucket");
    assert!(other.take(k, bucket, 1.0).await.unwrap().granted, "another prefix has its own");
    let v = key("circuit_breaker", Slot::Value, "state:openai");
    assert!(a.cas(v, None, Some(b"open"), Duration::from_secs(30)).await.unwrap().swapped);
    assert_eq!(b.get(v).await.unwrap().map(|s| s.value), Some(b"open".to_vec()));
}

#[tokio::test]
async fn concurrent_takes_on_redis_never_grant_more_than_the_bucket_holds() {
    let Some(server) = RedisServer::start("concurrent_takes_on_redis") else { return };
    let store = redis_store(&server, "race");
    let bucket = Bucket { capacity: 25.0, refill_per_second: 0.001 };
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store.take(key("m", Slot::Bucket, "b"), bucket, 1.0).await.unwrap().granted
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.unwrap());
    }
    assert_eq!(granted, 25);
}

#[tokio::test]
async fn redis_killed_mid_run_fails_open_fast_and_recovers_when_it_returns() {
    let Some(mut server) = RedisServer::start("redis_killed_mid_run") else { return };
    let (logs, _guard) = logs::capture();
    let open = redis_store(&server, "kill");
    let closed = open.clone().with_on_error(OnError::Closed);
    let bucket = Bucket { capacity: 2.0, refill_per_second: 0.001 };
    let k = key("rate_limit", Slot::Bucket, "rpm:openai");
    assert!(open.take(k, bucket, 1.0).await.unwrap().granted);
    assert!(open.take(k, bucket, 1.0).await.unwrap().granted);
    assert!(!open.take(k, bucket, 1.0).await.unwrap().granted, "the bucket is empty while Redis is up");

    server.kill();
    // Open: every take is granted blind, none waits past the timeout, and most not at all
    // (the backend stops trying for a second after a failure).
    let started = Instant::now();
    for _ in 0..200 {
        let one = Instant::now();
        assert!(open.take(k, bucket, 1.0).await.unwrap().granted);
        assert!(one.elapsed() < Duration::from_millis(1500), "{:?}", one.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Closed: the operation fails, naming the backend.
    let err = closed.take(k, bucket, 1.0).await.unwrap_err();
    assert!(err.is_unavailable() && err.to_string().contains("redis"), "{err}");
    let text = logs.text();
    assert!(text.contains("WARN") && text.contains("answering as if allowed"), "{text}");
    // Warnings are rate limited: far fewer lines than failed operations.
    assert!(text.matches("shared state:").count() <= 3, "{text}");

    // Back up (empty, as a restarted server without persistence is): the store reconnects
    // by itself once the recheck delay has passed.
    server.restart();
    tokio::time::sleep(RECHECK_AFTER + Duration::from_millis(100)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match closed.take(k, bucket, 1.0).await {
            Ok(taken) => {
                assert!(taken.granted && taken.remaining < 1.5, "{taken:?}");
                break;
            }
            Err(error) => {
                assert!(Instant::now() < deadline, "no reconnect within 10 s: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_redis_config_without_its_url_variable_is_an_error_naming_it() {
    let config = StateConfig {
        backend: arcllm::state::BackendConfig::Redis {
            url_env: "ARCLLM_TEST_NO_SUCH_REDIS_URL".into(),
            key_prefix: "x".into(),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        },
        on_error: OnError::Open,
    };
    let err = StateStore::from_config(&config).unwrap_err().to_string();
    assert!(err.contains("ARCLLM_TEST_NO_SUCH_REDIS_URL") && err.contains("url_env"), "{err}");
}
