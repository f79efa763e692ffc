//! The benchmark's tools against each other over loopback: the load generator's figures
//! from the mock vendor must be complete and exact, or every gateway figure is suspect.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

struct Mock(Child);

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mock() -> (Mock, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arcllm-mock-vendor"))
        .args(["--chunks", "8", "--chunk-delay-ms", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the mock vendor");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the mock's address");
    (Mock(child), line.trim().to_owned())
}

fn loadgen(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_arcllm-loadgen"))
        .args(["--chunks", "8", "--warmup", "0.2", "--duration", "0.5"])
        .args(args)
        .output()
        .expect("run the load generator");
    assert!(out.status.success(), "loadgen failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("loadgen prints one JSON object")
}

#[test]
fn whole_answers_at_fixed_concurrency_all_succeed() {
    let (_mock, address) = start_mock();
    let url = format!("http://{address}/v1/chat/completions");
    let report = loadgen(&["--url", &url, "--concurrency", "4"]);
    assert_eq!(report["success_rate"], 1.0, "{report}");
    assert!(report["ok"].as_u64().unwrap() > 10, "{report}");
    assert!(report["rps"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["latency_us"]["p99"].as_u64().unwrap() >= report["latency_us"]["p50"].as_u64().unwrap());
}

#[test]
fn service_time_from_the_path_is_waited() {
    let (_mock, address) = start_mock();
    let url = format!("http://{address}/ms/20/v1/chat/completions");
    let report = loadgen(&["--url", &url, "--rate", "50"]);
    assert_eq!(report["success_rate"], 1.0, "{report}");
    assert!(report["latency_us"]["p50"].as_u64().unwrap() >= 20_000, "{report}");
}

#[test]
fn streams_are_timed_chunk_by_chunk() {
    let (_mock, address) = start_mock();
    let url = format!("http://{address}/v1/chat/completions");
    let report = loadgen(&["--url", &url, "--concurrency", "2", "--stream"]);
    assert_eq!(report["success_rate"], 1.0, "{report}");
    let ok = report["ok"].as_u64().unwrap();
    // 8 content chunks per answer: one time to first token and 7 gaps.
    assert_eq!(report["ttft_us"]["count"].as_u64().unwrap(), ok, "{report}");
    assert_eq!(report["gap_us"]["count"].as_u64().unwrap(), 7 * ok, "{report}");
    assert!(report["gap_us"]["p50"].as_u64().unwrap() >= 2_000, "{report}");
}

#[test]
fn a_wrong_answer_is_a_failure() {
    let (_mock, address) = start_mock();
    let url = format!("http://{address}/v1/chat/completions");
    // The generator expects 9 words; the mock sends 8.
    let out = Command::new(env!("CARGO_BIN_EXE_arcllm-loadgen"))
        .args(["--chunks", "9", "--warmup", "0", "--duration", "0.3", "--concurrency", "1"])
        .args(["--url", &url])
        .output()
        .expect("run the load generator");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], 0, "{report}");
    assert!(report["errors"]["wrong content"].as_u64().unwrap() > 0, "{report}");
}
