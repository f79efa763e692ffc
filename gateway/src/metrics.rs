//! Prometheus metrics, in the text exposition format at `GET /metrics`.
//!
//! - `arcllm_gateway_requests_total{route,provider,status}`;
//! - `arcllm_gateway_retries_total{provider}`: attempts past the first that arcllm's retry
//!   module made (its `arcllm.retry.attempts` metadata) in successful requests;
//! - `arcllm_gateway_fallbacks_total{provider,to}`: answers a fallback gave
//!   (`arcllm.fallback.provider` naming another provider);
//! - `arcllm_gateway_resumes_total{provider}`: streamed answers continued after a failure
//!   past their first content (`resume = true`: `arcllm.retry.resumed` and
//!   `arcllm.fallback.resumed`), in successful requests;
//! - `arcllm_gateway_upstream_seconds{provider}`: time in the model's stack (modules,
//!   waits between retries and the vendor);
//! - `arcllm_gateway_overhead_seconds{route}`: the rest of the request's time (reading,
//!   queueing, decoding, routing, encoding, writing);
//! - `arcllm_gateway_in_flight`, `arcllm_gateway_queued`: requests being served, waiting.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const UPSTREAM_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const OVERHEAD_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

/// What one finished request contributes.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The route.
    pub route: &'static str,
    /// The provider the model routed to (empty when routing failed).
    pub provider: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The whole request.
    pub total: Duration,
    /// Time in the model's stack.
    pub upstream: Duration,
    /// Attempts the retry module reported.
    pub attempts: Option<u32>,
    /// The fallback target that answered, when not the model's own provider.
    pub fallback: Option<String>,
    /// How many times retry and fallback resumed the streamed answer.
    pub resumed: u32,
}

#[derive(Clone, Debug)]
struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Histogram { buckets, counts: vec![0; buckets.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, count) in self.buckets.iter().zip(&mut self.counts) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, label: &str, value: &str) {
        for (bound, count) in self.buckets.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{label}=\"{value}\",le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(&'static str, String, u16), u64>,
    retries: BTreeMap<String, u64>,
    fallbacks: BTreeMap<(String, String), u64>,
    resumes: BTreeMap<String, u64>,
    upstream: BTreeMap<String, Histogram>,
    overhead: BTreeMap<&'static str, Histogram>,
}

/// The gateway's counters and histograms.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Counts a finished request.
    pub fn record(&self, o: &Outcome) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.requests.entry((o.route, o.provider.clone(), o.status)).or_default() += 1;
        if let Some(attempts) = o.attempts.filter(|a| *a > 1) {
            *m.retries.entry(o.provider.clone()).or_default() += u64::from(attempts - 1);
        }
        if let Some(to) = &o.fallback {
            *m.fallbacks.entry((o.provider.clone(), to.clone())).or_default() += 1;
        }
        if o.resumed > 0 {
            *m.resumes.entry(o.provider.clone()).or_default() += u64::from(o.resumed);
        }
        if !o.provider.is_empty() {
            m.upstream
                .entry(o.provider.clone())
                .or_insert_with(|| Histogram::new(UPSTREAM_BUCKETS))
                .observe(o.upstream.as_secs_f64());
        }
        m.overhead
            .entry(o.route)
            .or_insert_with(|| Histogram::new(OVERHEAD_BUCKETS))
            .observe(o.total.saturating_sub(o.upstream).as_secs_f64());
    }

    /// The metrics in Prometheus' text format, with the gauges given.
    pub fn render(&self, in_flight: usize, queued: usize) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "arcllm_gateway_requests_total",
            "counter",
            "Requests answered, by route, provider and status.",
        );
        for ((route, provider, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "arcllm_gateway_requests_total{{route=\"{route}\",provider=\"{}\",status=\"{status}\"}} {n}",
                escape(provider)
            );
        }
        let per_provider = |out: &mut String, name: &str, help: &str, counts: &BTreeMap<String, u64>| {
            head(out, name, "counter", help);
            for (provider, n) in counts {
                let _ = writeln!(out, "{name}{{provider=\"{}\"}} {n}", escape(provider));
            }
        };
        per_provider(
            &mut out,
            "arcllm_gateway_retries_total",
            "Retries arcllm's retry module made in answered requests.",
            &m.retries,
        );
        head(&mut out, "arcllm_gateway_fallbacks_total", "counter", "Answers given by a fallback provider.");
        for ((provider, to), n) in &m.fallbacks {
            let _ = writeln!(
                out,
                "arcllm_gateway_fallbacks_total{{provider=\"{}\",to=\"{}\"}} {n}",
                escape(provider),
                escape(to)
            );
        }
        per_provider(
            &mut out,
            "arcllm_gateway_resumes_total",
            "Streamed answers continued after a mid-stream failure (resume = true).",
            &m.resumes,
        );
        let name = "arcllm_gateway_upstream_seconds";
        head(&mut out, name, "histogram", "Time in the model's stack: modules, retry waits and the vendor.");
        for (provider, h) in &m.upstream {
            h.render(&mut out, name, "provider", &escape(provider));
        }
        let name = "arcllm_gateway_overhead_seconds";
        head(&mut out, name, "histogram", "Request time outside the model's stack.");
        for (route, h) in &m.overhead {
            h.render(&mut out, name, "route", route);
        }
        head(&mut out, "arcllm_gateway_in_flight", "gauge", "Requests being served.");
        let _ = writeln!(out, "arcllm_gateway_in_flight {in_flight}");
        head(&mut out, "arcllm_gateway_queued", "gauge", "Requests waiting for a slot.");
        let _ = writeln!(out, "arcllm_gateway_queued {queued}");
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let metrics = Metrics::default();
        metrics.record(&Outcome {
            route: "/v1/messages",
            provider: "anthropic".into(),
            status: 200,
            total: Duration::from_millis(120),
            upstream: Duration::from_millis(100),
            attempts: Some(3),
            fallback: Some("openai".into()),
            resumed: 2,
        });
        let text = metrics.render(2, 1);
        for line in [
            "arcllm_gateway_requests_total{route=\"/v1/messages\",provider=\"anthropic\",status=\"200\"} 1",
            "arcllm_gateway_retries_total{provider=\"anthropic\"} 2",
            "arcllm_gateway_fallbacks_total{provider=\"anthropic\",to=\"openai\"} 1",
            "arcllm_gateway_resumes_total{provider=\"anthropic\"} 2",
            "arcllm_gateway_upstream_seconds_bucket{provider=\"anthropic\",le=\"0.1\"} 1",
            "arcllm_gateway_upstream_seconds_bucket{provider=\"anthropic\",le=\"0.05\"} 0",
            "arcllm_gateway_overhead_seconds_bucket{route=\"/v1/messages\",le=\"0.025\"} 1",
            "arcllm_gateway_overhead_seconds_bucket{route=\"/v1/messages\",le=\"0.01\"} 0",
            "arcllm_gateway_in_flight 2",
            "arcllm_gateway_queued 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
