//! The server: the shared state, the accept loop (HTTP/1.1 with a header read timeout),
//! reload on SIGHUP and on file change, and graceful shutdown on SIGTERM/SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::auth::Keys;
use crate::config::GatewayConfig;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::models::Models;

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Listening beyond loopback without keys would open the vendors' keys to anyone.
    #[error("refusing to listen on {addr} without API keys: set {env} (comma-separated keys), or listen on a loopback address")]
    Exposed {
        /// The address asked for.
        addr: SocketAddr,
        /// The variable the keys are read from (`[server] api_keys_env`).
        env: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An enabled module does not load.
    #[error("cannot load the configured modules: {0}")]
    Modules(String),
    /// A signal handler could not be installed.
    #[error("cannot handle signals: {0}")]
    Signal(#[source] std::io::Error),
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) config: ArcSwap<GatewayConfig>,
    pub(crate) keys: Keys,
    pub(crate) limiter: Limiter,
    pub(crate) models: Models,
    pub(crate) metrics: Metrics,
    ready: AtomicBool,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

/// Counts a request as in flight while it lives.
pub(crate) struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// A gateway: its configuration, models and counters. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// A gateway for `config`, with the keys of `[server] api_keys_env`.
    pub fn new(config: GatewayConfig) -> Self {
        let keys = Keys::from_env(&config.server.api_keys_env);
        Self::with_keys(config, keys)
    }

    /// A gateway for `config` accepting `keys` (none: no authentication).
    pub fn with_keys(config: GatewayConfig, keys: Keys) -> Self {
        let s = &config.server;
        let shared = Shared {
            limiter: Limiter::new(s.max_concurrent, s.queue),
            models: Models::new(config.file.clone(), s.max_models, s.watch),
            keys,
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            config: ArcSwap::from_pointee(config),
        };
        Gateway { shared: Arc::new(shared) }
    }

    /// Refuses an address beyond loopback when no key is configured.
    pub fn check_exposure(&self, addr: SocketAddr) -> Result<(), ServeError> {
        if !addr.ip().is_loopback() && self.shared.keys.is_empty() {
            let env = self.shared.config.load().server.api_keys_env.clone();
            return Err(ServeError::Exposed { addr, env });
        }
        Ok(())
    }

    /// Loads the modules config.toml enables, then reports ready (`/readyz`).
    pub async fn warm(&self) -> Result<(), ServeError> {
        let config = self.shared.config.load_full();
        let count = crate::models::warm(&config.config).await.map_err(ServeError::Modules)?;
        tracing::info!("{count} module(s) loaded; ready");
        self.shared.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The routes, to serve or to test.
    pub fn router(&self) -> Router {
        crate::routes::router(self.shared.clone())
    }

    /// Re-reads config.toml's `[server]` and `[aliases]` (keeping the old ones if the file
    /// is invalid). Keys read only at start are reported when they changed.
    pub async fn reload_settings(&self) -> Result<(), String> {
        let Some(file) = self.shared.config.load().file.clone() else { return Ok(()) };
        let read = tokio::task::spawn_blocking(move || GatewayConfig::from_file(&file)).await;
        let fresh = read.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        let old = self.shared.config.load_full();
        let (a, b) = (&old.server, &fresh.server);
        let changed: Vec<&str> = [
            ("listen", a.listen != b.listen),
            ("api_keys_env", a.api_keys_env != b.api_keys_env),
            ("max_concurrent", a.max_concurrent != b.max_concurrent),
            ("queue", a.queue != b.queue),
            ("header_read_timeout_seconds", a.header_read_timeout != b.header_read_timeout),
            ("max_models", a.max_models != b.max_models),
            ("watch", a.watch != b.watch),
            ("log_level", a.log_level != b.log_level),
        ]
        .into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect();
        if !changed.is_empty() {
            tracing::warn!("[server] {} changed: takes effect at the next start", changed.join(", "));
        }
        self.shared.config.store(Arc::new(fresh));
        Ok(())
    }

    /// Reloads everything (SIGHUP): `[server]` and `[aliases]`, then every built model.
    /// Calls in flight finish on the stacks they started on; nothing fails meanwhile.
    pub async fn reload(&self) {
        if let Err(e) = self.reload_settings().await {
            tracing::error!("reload: config.toml not reloaded, the previous settings keep serving: {e}");
        }
        let failures = self.shared.models.reload_all().await;
        for (model, error) in &failures {
            tracing::error!("reload: model {model} kept its previous stack: {error}");
        }
        tracing::info!("reloaded ({} model(s) failed)", failures.len());
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, lets requests
    /// in flight finish within `[server] shutdown_grace_seconds`, and returns.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let router = self.router();
        let header_timeout = self.shared.config.load().server.header_read_timeout;
        let (close_tx, close_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(router.clone());
            let mut close = close_rx.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return drop(done),
                    _ = close.wait_for(|closing| *closing) => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
                drop(done);
            });
        }
        drop(listener);
        self.shared.draining.store(true, Ordering::Release);
        let grace = self.shared.config.load().server.shutdown_grace;
        tracing::info!(
            "shutting down: {} request(s) in flight, up to {grace:?} to finish",
            self.shared.in_flight()
        );
        let _ = close_tx.send(true);
        drop(done_tx);
        if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
            tracing::warn!(
                "{} request(s) still in flight after the grace period; closing",
                self.shared.in_flight()
            );
        }
    }
}

/// `arcllm serve`: checks, binds, warms, serves until SIGTERM or SIGINT (then drains),
/// reloading on SIGHUP and, with `[server] watch`, when config.toml changes.
pub async fn run(config: GatewayConfig, listen: Option<SocketAddr>) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let addr = listen.unwrap_or(config.server.listen);
    size_instance_pool(config.server.max_concurrent);
    let watch_file = config.file.clone().filter(|_| config.server.watch);
    let gateway = Gateway::new(config);
    gateway.check_exposure(addr)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ServeError::Signal)?;
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let keys = gateway.shared.keys.len();
    tracing::info!(
        "listening on http://{bound} ({})",
        if keys == 0 { "no authentication: loopback only".to_string() } else { format!("{keys} API key(s)") }
    );
    gateway.warm().await?;
    let reloader = gateway.clone();
    let hangups = tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            reloader.reload().await;
        }
    });
    let _watcher = watch_file.and_then(|file| watch_settings(&gateway, file));
    gateway
        .serve(listener, async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = interrupt.recv() => tracing::info!("SIGINT"),
            }
        })
        .await;
    hangups.abort();
    Ok(())
}

/// Sizes the process-wide pool of module instances for the gateway's concurrency before
/// anything creates it: each request in flight holds an instance per module of its stack
/// (four covers `retry(fallback)` with a fallback target's call in progress), while the
/// library's default is sized for one-shot commands that must start fast.
fn size_instance_pool(max_concurrent: usize) {
    use arcllm::runtime::{Runtime, DEFAULT_MAX_INSTANCES};
    let wanted = max_concurrent.saturating_mul(4).clamp(DEFAULT_MAX_INSTANCES as usize, 16_384) as u32;
    if let Err(e) = Runtime::configure_shared(Runtime::builder().max_instances(wanted)) {
        tracing::warn!("the module instance pool keeps its size ({e}); up to {max_concurrent} concurrent requests may wait for instances");
    }
}

/// Re-reads `[server]` and `[aliases]` when config.toml changes (the models watch their own
/// files). The watch is on the file's directory, so replacing the file is seen too.
fn watch_settings(gateway: &Gateway, file: PathBuf) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let file = std::path::absolute(&file).unwrap_or(file);
    let dir = file.parent()?.to_path_buf();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let target = file.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event.paths.iter().any(|p| p == &target || p.file_name() == target.file_name());
            if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| tracing::warn!("config.toml changes will not reload [server]/[aliases]: {e}"))
    .ok()?;
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!("cannot watch {}: {e}; use SIGHUP to reload", dir.display());
        return None;
    }
    let gateway = gateway.clone();
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let a burst of writes settle, then read once.
            while tokio::time::timeout(crate::SETTLE, rx.recv()).await.is_ok_and(|e| e.is_some()) {}
            match gateway.reload_settings().await {
                Ok(()) => tracing::info!("{}: [server] and [aliases] reloaded", file.display()),
                Err(e) => tracing::error!(
                    "{}: not reloaded, the previous settings keep serving: {e}",
                    file.display()
                ),
            }
        }
    });
    Some(watcher)
}
