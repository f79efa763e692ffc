//! Load generator for gateway benchmarks: OpenAI Chat Completions requests at a fixed
//! concurrency (closed loop) or a fixed rate (open loop), whole or streamed. Prints one JSON
//! object: requests sent and succeeded, errors by kind, achieved requests per second, latency
//! percentiles, and for streams time to first token and the gaps between content chunks.
//!
//! A request succeeds when the status is 200 and the text it carries is exactly the mock
//! vendor's (`--chunks` words), so a gateway that drops or reorders content fails it.
//!
//! Closed loop measures every request in flight at some time within the measured window;
//! open loop the requests whose slot fell within it, however long they took (up to
//! `--timeout`). Achieved requests per second: successes that ended within the window.
//!
//! Open loop corrects for coordinated omission: a request that could not be sent at its slot
//! (the generator was held back) is timed from the slot, not from when it left; one sent
//! within `--slot-tolerance-us` of its slot is timed from when it was sent. Slots are waited
//! for with the same precise timer as the mock's (`precise.rs`): tokio's timer fires on
//! millisecond ticks, which at 1,000 RPS and above sent the requests in bursts, one burst
//! per tick, and the bursts' queueing was most of Direct's own p99.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

#[path = "../precise.rs"]
mod precise;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator for OpenAI Chat Completions gateways")]
struct Args {
    /// Full URL of the chat completions endpoint.
    #[arg(long)]
    url: String,
    /// `model` field of each request.
    #[arg(long, default_value = "mock-model")]
    model: String,
    /// Ask for a streamed answer (SSE) and time its chunks.
    #[arg(long)]
    stream: bool,
    /// Closed loop: this many requests in flight, each sent when the previous one ended.
    #[arg(long, conflicts_with = "rate", required_unless_present = "rate")]
    concurrency: Option<usize>,
    /// Open loop: this many requests per second, on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// A request not answered in full within this many seconds failed (`timeout`).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Open loop: at most this many requests in flight; a slot past it waits (and is timed
    /// from the slot).
    #[arg(long, default_value_t = 4096)]
    max_inflight: usize,
    /// Open loop: a request sent within this many µs of its slot is timed from when it was sent.
    #[arg(long, default_value_t = 500)]
    slot_tolerance_us: u64,
    /// Sent as `Authorization: Bearer <key>` (a gateway's own key).
    #[arg(long, default_value = "sk-bench")]
    api_key: String,
    /// An extra request header, `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Words in the mock vendor's answer (its `--chunks`): the text a success must carry.
    #[arg(long, default_value_t = 20)]
    chunks: u32,
}

/// What one request did, in µs since the run started.
struct Record {
    start: u64,
    end: u64,
    error: Option<String>,
    ttft: Option<u64>,
    gaps: Vec<u64>,
}

struct Shared {
    args: Args,
    client: reqwest::Client,
    body: bytes::Bytes,
    expected: String,
    authorization: String,
    headers: Vec<(String, String)>,
    t0: Instant,
    records: Mutex<Vec<Record>>,
}

fn main() {
    let args = Args::parse();
    // One thread: the benchmark pins the generator to one core beside the mock vendor.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<Value, String> {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(args.timeout))
        .pool_idle_timeout(Duration::from_secs(30))
        .http1_only()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mut request = json!({"model": args.model, "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say the benchmark words."}]});
    if args.stream {
        request["stream"] = json!(true);
        request["stream_options"] = json!({"include_usage": true});
    }
    let mut headers = Vec::new();
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err(format!("--header {header:?}: expected `name: value`"));
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let shared = Arc::new(Shared {
        headers,
        body: bytes::Bytes::from(request.to_string()),
        expected: (0..args.chunks).map(|i| format!("word{i} ")).collect(),
        authorization: format!("Bearer {}", args.api_key),
        client,
        t0: Instant::now(),
        records: Mutex::new(Vec::new()),
        args: args.clone(),
    });
    let end = shared.t0 + Duration::from_secs_f64(args.warmup + args.duration);
    let mut late_sends = 0u64;
    if let Some(concurrency) = args.concurrency {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    while Instant::now() < end {
                        let start = Instant::now();
                        one(&shared, start).await;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.map_err(|e| format!("a worker failed: {e}"))?;
        }
    } else {
        let rate = args.rate.unwrap_or(1.0);
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(format!("--rate must be a positive number, not {rate}"));
        }
        let period = Duration::from_secs_f64(1.0 / rate);
        let tolerance = Duration::from_micros(args.slot_tolerance_us);
        let permits = Arc::new(tokio::sync::Semaphore::new(args.max_inflight));
        let mut inflight = Vec::new();
        let mut slot = shared.t0;
        while slot < end {
            precise::sleep_until(slot).await;
            let permit =
                permits.clone().acquire_owned().await.map_err(|e| format!("semaphore closed: {e}"))?;
            let now = Instant::now();
            let start = if now.duration_since(slot) <= tolerance {
                now
            } else {
                late_sends += 1;
                slot
            };
            let shared = shared.clone();
            inflight.push(tokio::spawn(async move {
                one(&shared, start).await;
                drop(permit);
            }));
            slot += period;
        }
        for task in inflight {
            task.await.map_err(|e| format!("a request task failed: {e}"))?;
        }
    }
    let records = std::mem::take(&mut *shared.records.lock().expect("records lock"));
    Ok(report(&args, records, late_sends))
}

/// Sends one request timed from `start` and records it.
async fn one(shared: &Shared, start: Instant) {
    let t = |at: Instant| at.duration_since(shared.t0).as_micros() as u64;
    let mut record = Record { start: t(start), end: 0, error: None, ttft: None, gaps: Vec::new() };
    let result = send(shared, start, &mut record).await;
    record.end = t(Instant::now());
    record.error = result.err();
    shared.records.lock().expect("records lock").push(record);
}

async fn send(shared: &Shared, start: Instant, record: &mut Record) -> Result<(), String> {
    let mut builder = shared
        .client
        .post(&shared.args.url)
        .header("content-type", "application/json")
        .header("authorization", &shared.authorization);
    for (name, value) in &shared.headers {
        builder = builder.header(name, value);
    }
    let response = builder.body(shared.body.clone()).send().await.map_err(classify)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("status {status}"));
    }
    if !shared.args.stream {
        let body = response.bytes().await.map_err(classify)?;
        let value: Value = serde_json::from_slice(&body).map_err(|_| "bad body".to_owned())?;
        return match value["choices"][0]["message"]["content"].as_str() {
            Some(text) if text == shared.expected => Ok(()),
            _ => Err("wrong content".to_owned()),
        };
    }
    let mut response = response;
    let mut buffer: Vec<u8> = Vec::new();
    let mut text = String::new();
    let mut last: Option<Instant> = None;
    let mut done = false;
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        let now = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(at) = find_event_end(&buffer) {
            let event: Vec<u8> = buffer.drain(..at.1).collect();
            for line in event[..at.0].split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let Some(data) = line.strip_prefix(b"data:") else {
                    continue;
                };
                let data = data.trim_ascii();
                if data == b"[DONE]" {
                    done = true;
                    continue;
                }
                let value: Value = serde_json::from_slice(data).map_err(|_| "bad event".to_owned())?;
                if let Some(piece) = value["choices"][0]["delta"]["content"].as_str() {
                    if !piece.is_empty() {
                        text.push_str(piece);
                        match last {
                            None => record.ttft = Some(now.duration_since(start).as_micros() as u64),
                            Some(previous) => {
                                record.gaps.push(now.duration_since(previous).as_micros() as u64)
                            }
                        }
                        last = Some(now);
                    }
                }
            }
        }
    }
    if !done {
        return Err("no [DONE]".to_owned());
    }
    if text != shared.expected {
        return Err("wrong content".to_owned());
    }
    Ok(())
}

/// The end of the first complete SSE event in `buffer`: (end of its text, end with the
/// blank line).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn classify(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "body".to_owned()
    } else {
        "transport".to_owned()
    }
}

fn percentiles(mut values: Vec<u64>) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
    let mean = values.iter().sum::<u64>() as f64 / values.len() as f64;
    let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / values.len() as f64;
    json!({"count": values.len(), "mean": mean, "stdev": var.sqrt(), "p50": at(0.50),
        "p90": at(0.90), "p99": at(0.99), "p999": at(0.999), "max": values[values.len() - 1]})
}

fn report(args: &Args, records: Vec<Record>, late_sends: u64) -> Value {
    let from = (args.warmup * 1e6) as u64;
    let to = ((args.warmup + args.duration) * 1e6) as u64;
    // Open loop: every slot in the window counts, however long it took (so a request that
    // is still queued at the end is not lost). Closed loop: every request in flight at some
    // time in the window (so a system slower than the window still yields figures, and a
    // request that failed after it is counted).
    let open_loop = args.concurrency.is_none();
    let measured: Vec<&Record> = records
        .iter()
        .filter(|r| if open_loop { r.start >= from && r.start < to } else { r.start < to && r.end >= from })
        .collect();
    let ok: Vec<&&Record> = measured.iter().filter(|r| r.error.is_none()).collect();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for record in &measured {
        if let Some(kind) = &record.error {
            *errors.entry(kind.clone()).or_default() += 1;
        }
    }
    let completed_in_window =
        records.iter().filter(|r| r.error.is_none() && r.end >= from && r.end < to).count();
    json!({
        "mode": if args.concurrency.is_some() { "concurrency" } else { "rate" },
        "concurrency": args.concurrency,
        "rate": args.rate,
        "stream": args.stream,
        "duration_s": args.duration,
        "sent": measured.len(),
        "total_ok": records.iter().filter(|r| r.error.is_none()).count(),
        "total_sent": records.len(),
        "ok": ok.len(),
        "success_rate": if measured.is_empty() { 0.0 } else { ok.len() as f64 / measured.len() as f64 },
        "errors": errors,
        "rps": completed_in_window as f64 / args.duration,
        "late_sends": late_sends,
        "latency_us": percentiles(ok.iter().map(|r| r.end - r.start).collect()),
        "ttft_us": percentiles(ok.iter().filter_map(|r| r.ttft).collect()),
        "gap_us": percentiles(ok.iter().flat_map(|r| r.gaps.iter().copied()).collect()),
    })
}
