//! The least a gateway can add on this machine: a proxy built from the HTTP stack `arcllm
//! serve` uses (axum's server, reqwest's pooled client, one multi-threaded tokio runtime)
//! that forwards each request's method, path, headers and body to one upstream and streams
//! the answer back. It parses neither body: the request's is read whole (axum's body cannot
//! be shared across threads, as reqwest's wants), the answer's streamed through. The benchmark runs it beside arcllm as
//! the `floor` system: what it adds over `direct` is the cost of one more process and two
//! more loopback hops, which no gateway avoids, so arcllm's own share is what it adds
//! over the floor.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use clap::Parser;

#[derive(Parser)]
#[command(about = "A byte-forwarding proxy: the floor any gateway adds")]
struct Args {
    /// Address to listen on (`127.0.0.1:0`: a free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The upstream's base URL, e.g. `http://127.0.0.1:9000`; the request's path and query
    /// are appended.
    #[arg(long)]
    upstream: String,
}

#[derive(Clone)]
struct Upstream {
    base: String,
    client: reqwest::Client,
}

/// Hop-by-hop headers (RFC 9110, 7.6.1) and `host`, which the client sets for the upstream.
const NOT_FORWARDED: &[&str] =
    &["connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"];

fn forwarded(name: &HeaderName) -> bool {
    !NOT_FORWARDED.contains(&name.as_str())
}

async fn forward(State(upstream): State<Upstream>, request: Request) -> Result<Response, StatusCode> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = upstream.client.request(parts.method, format!("{}{path}", upstream.base));
    for (name, value) in parts.headers.iter().filter(|(name, _)| forwarded(name)) {
        outgoing = outgoing.header(name, value);
    }
    let answer = outgoing
        .body(axum::body::to_bytes(body, 16 << 20).await.map_err(|_| StatusCode::BAD_REQUEST)?)
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    let (mut parts, body) = axum::http::Response::from(answer).into_parts();
    let hop_by_hop: Vec<HeaderName> = parts.headers.keys().filter(|name| !forwarded(name)).cloned().collect();
    for name in hop_by_hop {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // reqwest is built without a TLS provider of its own (see the workspace): install one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let upstream =
        Upstream { base: args.upstream.trim_end_matches('/').to_string(), client: reqwest::Client::new() };
    let app = axum::Router::new().fallback(forward).with_state(upstream);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
