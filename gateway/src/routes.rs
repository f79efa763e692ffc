//! The HTTP routes: the two front ends, `/v1/models`, and the operational endpoints.

use std::sync::Arc;
use std::time::Duration;

use arcllm::stream::{EventStream, StreamEvent};
use arcllm::types::Response as ArcResponse;
use arcllm::Model;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::errors::ApiError;
use crate::metrics::Outcome;
use crate::server::Shared;
use crate::{anthropic, models, openai, Decoded, Front};

/// The gateway's routes over `shared`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(list_models))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

use axum::Json;

async fn chat_completions(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    handle(shared, Front::OpenAi, headers, body).await
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    handle(shared, Front::Anthropic, headers, body).await
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready"}))).into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = shared.keys.check(&headers) {
        return e.response(Front::OpenAi);
    }
    let text = shared.metrics.render(shared.in_flight(), shared.limiter.queued());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /v1/models`: the aliases and each provider (with the models its file describes), in
/// Anthropic's list shape when the client sends `anthropic-version`, else OpenAI's.
async fn list_models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let front = if headers.contains_key("anthropic-version") { Front::Anthropic } else { Front::OpenAi };
    if let Err(e) = shared.keys.check(&headers) {
        return e.response(front);
    }
    let config = shared.config.load_full();
    let mut ids: Vec<(String, String)> =
        config.aliases.iter().map(|(alias, target)| (alias.clone(), target.name().to_string())).collect();
    let catalog = tokio::task::spawn_blocking(move || config.config.catalog()).await;
    match catalog {
        Ok(Ok(catalog)) => {
            for name in catalog.names() {
                ids.push((name.to_string(), name.to_string()));
                let provider = catalog.get(name).expect("listed");
                let mut models: Vec<&String> = provider.models.keys().collect();
                if !models.contains(&&provider.provider.default_model) {
                    models.push(&provider.provider.default_model);
                }
                ids.extend(models.into_iter().map(|m| (format!("{name}/{m}"), name.to_string())));
            }
        }
        Ok(Err(e)) => {
            return ApiError::Internal(format!("cannot read the provider files: {e}")).response(front)
        }
        Err(e) => return ApiError::Internal(format!("cannot read the provider files: {e}")).response(front),
    }
    let body = match front {
        Front::OpenAi => json!({
            "object": "list",
            "data": ids.iter().map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner})).collect::<Vec<_>>(),
        }),
        Front::Anthropic => json!({
            "data": ids.iter().map(|(id, _)| json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": ids.first().map(|(id, _)| id.clone()),
            "last_id": ids.last().map(|(id, _)| id.clone()),
        }),
    };
    Json(body).into_response()
}

/// One request's bookkeeping, reported (metrics, access log) when it is dropped: at the end
/// of a plain answer, or when a stream ends or its client goes away.
struct Call {
    shared: Arc<Shared>,
    started: Instant,
    front: Front,
    model: String,
    stream: bool,
    outcome: Outcome,
    /// Why the request failed, for the log.
    failure: Option<String>,
    _in_flight: crate::server::InFlight,
}

impl Call {
    fn fail(&mut self, error: &ApiError) {
        self.outcome.status = error.status().as_u16();
        self.failure = Some(error.to_string());
    }

    fn answered(&mut self, metadata: &[(String, String)]) {
        let value = |key: &str| metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        self.outcome.attempts = value("arcllm.retry.attempts").and_then(|v| v.parse().ok());
        self.outcome.fallback = value("arcllm.fallback.provider")
            .filter(|answered| {
                *answered != self.outcome.provider
                    && !answered.starts_with(&format!("{}/", self.outcome.provider))
            })
            .map(str::to_owned);
        let resumed = |key: &str| value(key).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        self.outcome.resumed =
            resumed("arcllm.retry.resumed").saturating_add(resumed("arcllm.fallback.resumed"));
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.outcome.total = self.started.elapsed();
        self.shared.metrics.record(&self.outcome);
        if self.shared.config.load().server.access_log {
            let o = &self.outcome;
            tracing::info!(
                target: "arcllm::access",
                route = o.route,
                model = %self.model,
                provider = %o.provider,
                stream = self.stream,
                status = o.status,
                total_ms = o.total.as_secs_f64() * 1e3,
                upstream_ms = o.upstream.as_secs_f64() * 1e3,
                attempts = o.attempts.unwrap_or(1),
                fallback = o.fallback.as_deref().unwrap_or("-"),
                resumed = o.resumed,
                error = self.failure.as_deref().unwrap_or("-"),
                "{} {} {}", o.route, o.status, self.front_name()
            );
        }
    }
}

impl Call {
    fn front_name(&self) -> &'static str {
        match self.front {
            Front::OpenAi => "openai",
            Front::Anthropic => "anthropic",
        }
    }
}

async fn handle(shared: Arc<Shared>, front: Front, headers: HeaderMap, body: Body) -> Response {
    let mut call = Call {
        _in_flight: shared.enter(),
        shared: shared.clone(),
        started: Instant::now(),
        front,
        model: String::new(),
        stream: false,
        outcome: Outcome { route: front.route(), status: 200, ..Outcome::default() },
        failure: None,
    };
    match serve(&shared, front, &headers, body, &mut call).await {
        Ok(Answer::Whole(body)) => Json(body).into_response(),
        Ok(Answer::Stream(stream)) => sse(stream.run(call)),
        Err(error) => {
            call.fail(&error);
            error.response(front)
        }
    }
}

enum Answer {
    Whole(Value),
    Stream(Streaming),
}

async fn serve(
    shared: &Arc<Shared>,
    front: Front,
    headers: &HeaderMap,
    body: Body,
    call: &mut Call,
) -> Result<Answer, ApiError> {
    let config = shared.config.load_full();
    let server = &config.server;
    let deadline = call.started + server.request_timeout;
    shared.keys.check(headers)?;
    let body =
        crate::limits::read_body(body, headers, server.max_body_bytes, server.body_read_timeout).await?;
    let decoded = match front {
        Front::OpenAi => openai::decode(&body)?,
        Front::Anthropic => anthropic::decode(&body)?,
    };
    drop(body);
    call.model = decoded.model.clone();
    call.stream = decoded.stream;
    let settings = models::module_settings(headers, server.allow_module_headers)?;
    let target = models::resolve(&decoded.model, &config.aliases)?;
    call.outcome.provider = target.name().to_string();
    let permit = shared.limiter.acquire(deadline, server.request_timeout).await?;
    let model = shared.models.get(&target, &settings).await?;
    let retried = model.stack_names().iter().any(|m| m == "retry");
    let upstream = |error| ApiError::Upstream { error, retried };
    let deadline_error = ApiError::Deadline(server.request_timeout.as_secs_f64());
    let Decoded { request, stream, include_usage, .. } = decoded;
    let started = Instant::now();
    if !stream {
        let answer = tokio::time::timeout_at(deadline, model.invoke_request(request)).await;
        call.outcome.upstream = started.elapsed();
        let response = answer.map_err(|_| deadline_error)?.map_err(upstream)?;
        call.answered(&response.metadata);
        return encode(front, &response).map(Answer::Whole);
    }
    let events = tokio::time::timeout_at(
        deadline,
        model.invoke_stream(request.messages, request.tools, request.options),
    )
    .await;
    call.outcome.upstream = started.elapsed();
    let events = events.map_err(|_| deadline_error)?.map_err(upstream)?;
    Ok(Answer::Stream(Streaming {
        events,
        encoder: match front {
            Front::OpenAi => Encoder::OpenAi(openai::ChunkEncoder::new(
                crate::new_id("chatcmpl-"),
                crate::unix_now(),
                include_usage,
            )),
            Front::Anthropic => Encoder::Anthropic(anthropic::EventEncoder::new(crate::new_id("msg_"))),
        },
        deadline,
        timeout: server.request_timeout,
        retried,
        _permit: permit,
        _model: model,
    }))
}

fn encode(front: Front, response: &ArcResponse) -> Result<Value, ApiError> {
    match front {
        Front::OpenAi => Ok(openai::encode(response, &crate::new_id("chatcmpl-"), crate::unix_now())),
        Front::Anthropic => anthropic::encode(response, &crate::new_id("msg_")),
    }
}

enum Encoder {
    OpenAi(openai::ChunkEncoder),
    Anthropic(anthropic::EventEncoder),
}

impl Encoder {
    fn event(&mut self, event: StreamEvent) -> Vec<String> {
        match self {
            Encoder::OpenAi(e) => e.event(event),
            Encoder::Anthropic(e) => e.event(event),
        }
    }
    fn error(&self, error: &ApiError) -> String {
        match self {
            Encoder::OpenAi(e) => e.error(error),
            Encoder::Anthropic(e) => e.error(error),
        }
    }
}

/// A started answer: its events, encoded as they come; the slot and the model are held
/// until the stream ends.
struct Streaming {
    events: EventStream,
    encoder: Encoder,
    deadline: Instant,
    timeout: Duration,
    retried: bool,
    _permit: OwnedSemaphorePermit,
    _model: Arc<Model>,
}

impl Streaming {
    /// The body's frames; `call` is reported when the stream ends or is dropped.
    fn run(
        self,
        call: Call,
    ) -> impl futures_util::Stream<Item = Result<String, std::convert::Infallible>> + Send {
        futures_util::stream::unfold(Some((self, call)), |state| async move {
            let (mut this, mut call) = state?;
            loop {
                let waited = Instant::now();
                let next = tokio::time::timeout_at(this.deadline, this.events.next()).await;
                call.outcome.upstream += waited.elapsed();
                let error = match next {
                    Ok(None) => return None,
                    Ok(Some(Ok(event))) => {
                        if let StreamEvent::Stop { metadata, .. } = &event {
                            call.answered(metadata);
                        }
                        let frames = this.encoder.event(event);
                        if frames.is_empty() {
                            continue;
                        }
                        return Some((Ok(frames.concat()), Some((this, call))));
                    }
                    Ok(Some(Err(error))) => ApiError::Upstream { error, retried: this.retried },
                    Err(_) => ApiError::Deadline(this.timeout.as_secs_f64()),
                };
                // The status line went out as 200; the log and metrics count the failure.
                call.fail(&error);
                return Some((Ok(this.encoder.error(&error)), None));
            }
        })
    }
}

fn sse(
    frames: impl futures_util::Stream<Item = Result<String, std::convert::Infallible>> + Send + 'static,
) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(frames))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
