//! Opt-in hot reload: watch the files a model was built from and reload it when they change.
//!
//! The watcher watches *directories* (not recursively) and picks out the paths that matter,
//! because editors and deploy tools replace files by renaming a new one over them, which a
//! watch on the old file itself would not survive. Changes are debounced: a burst of writes
//! (a file written in several chunks, config.toml and a module saved together) makes one
//! reload once it has settled. Reading a file is not a change, or every reload would
//! trigger the next one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{BuildError, Model, Sources};

/// How long changes must settle before the watcher reloads (see [`Model::watch`]).
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// A stream of changes never holds a reload back longer than this many debounce periods.
const MAX_DEBOUNCES: u32 = 10;

/// Why a watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The reload task needs a tokio runtime to run on, and there is none current.
    #[error("watching a model needs a tokio runtime: call `watch` from within one")]
    NoRuntime,
    /// The operating system's file watcher could not be created.
    #[error("could not start the file watcher: {0}")]
    Start(#[source] notify::Error),
    /// A directory holding a watched file could not be watched.
    #[error("cannot watch {}: {source}", path.display())]
    Path {
        /// The directory.
        path: PathBuf,
        /// Why the watcher refused it.
        #[source]
        source: notify::Error,
    },
}

/// What a watcher has done so far, for programs (and tests) that want to follow it.
#[derive(Clone, Debug, Default)]
pub struct WatchStatus {
    /// Reloads attempted since the watcher started.
    pub attempts: u64,
    /// The last attempt: the version it published, or why it failed (the previous stack
    /// kept serving).
    pub last: Option<Result<u64, Arc<BuildError>>>,
}

/// A running watcher, from [`Model::watch`]. Dropping it stops the watching. It holds the
/// model weakly: a model that is dropped stops being watched too.
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
    status: watch::Receiver<WatchStatus>,
}

impl WatchHandle {
    /// Follows the watcher's reloads (e.g. `status().wait_for(|s| s.attempts >= 1)`).
    pub fn status(&self) -> watch::Receiver<WatchStatus> {
        self.status.clone()
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        // Cancelling mid-reload is safe: a reload publishes with one atomic store at its end.
        self.task.abort();
    }
}

pub(super) fn start(model: &Arc<Model>, debounce: Duration) -> Result<WatchHandle, WatchError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
    let (events_tx, events) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // The receiver is gone only when the watcher is stopping.
        let _ = events_tx.send(event);
    })
    .map_err(WatchError::Start)?;
    let mut watched = Watched { watcher, dirs: BTreeSet::new(), targets: Targets::default() };
    watched
        .follow(Targets::of(&[model.sources()]))
        .map_err(|(path, source)| WatchError::Path { path, source })?;
    let (status_tx, status) = watch::channel(WatchStatus::default());
    let debounce = debounce.max(Duration::from_millis(1));
    let task = runtime.spawn(run(Arc::downgrade(model), watched, events, status_tx, debounce));
    Ok(WatchHandle { task, status })
}

/// Waits for a change, lets it settle, reloads, logs the outcome, and follows the files
/// the configuration names now.
async fn run(
    model: Weak<Model>,
    mut watched: Watched,
    mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    status: watch::Sender<WatchStatus>,
    debounce: Duration,
) {
    loop {
        match events.recv().await {
            None => return,
            Some(event) if !watched.targets.matters(&event) => continue,
            Some(_) => {}
        }
        let give_up_at = Instant::now() + debounce * MAX_DEBOUNCES;
        let mut settle_at = Instant::now() + debounce;
        loop {
            match tokio::time::timeout_at(settle_at.min(give_up_at), events.recv()).await {
                Err(_settled) => break,
                Ok(None) => return,
                Ok(Some(event)) if watched.targets.matters(&event) => settle_at = Instant::now() + debounce,
                Ok(Some(_)) => {}
            }
        }
        let Some(model) = model.upgrade() else { return };
        let outcome = match model.publish_next().await {
            Ok(snapshot) => {
                tracing::info!("reloaded: {snapshot}");
                Ok(snapshot.version())
            }
            Err(error) => {
                tracing::warn!("reload failed: {error}; kept previous stack v{}", model.version());
                Err(Arc::new(error))
            }
        };
        status.send_modify(|s| {
            s.attempts += 1;
            s.last = Some(outcome);
        });
        let sources = model.watch_targets().await;
        drop(model);
        // Resolving paths and (un)watching directories touch the disk and wait on the
        // notify thread: off the async threads, like the reload itself.
        let followed = tokio::task::spawn_blocking(move || {
            let outcome = watched.follow(Targets::of(&sources));
            (watched, outcome)
        });
        match followed.await {
            Ok((again, outcome)) => {
                watched = again;
                if let Err((path, reason)) = outcome {
                    tracing::warn!(
                        "cannot watch {}: {reason}; changing it will not reload the model",
                        path.display()
                    );
                }
            }
            Err(e) => {
                tracing::error!("the model watcher stopped: {e}");
                return;
            }
        }
    }
}

/// The notify watcher and the directories it watches.
struct Watched {
    watcher: RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
    targets: Targets,
}

impl Watched {
    /// Watches the directories `targets` needs and no others. Keeps going past a directory
    /// that cannot be watched (it may not exist yet) and reports the first such.
    fn follow(&mut self, targets: Targets) -> Result<(), (PathBuf, notify::Error)> {
        let wanted = targets.dirs();
        for gone in self.dirs.difference(&wanted) {
            // It may be gone from disk already, which ends its watch anyway.
            let _ = self.watcher.unwatch(gone);
        }
        let mut first_error = None;
        let mut watching = BTreeSet::new();
        for dir in wanted {
            if !self.dirs.contains(&dir) {
                if let Err(e) = self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    first_error.get_or_insert((dir, e));
                    continue;
                }
            }
            watching.insert(dir);
        }
        self.dirs = watching;
        self.targets = targets;
        first_error.map_or(Ok(()), Err)
    }
}

/// The paths whose changes reload the model, absolute, with their directories resolved
/// (events name paths under the directories as they were watched).
#[derive(Default)]
struct Targets {
    files: BTreeSet<PathBuf>,
    /// Directories any `*.toml` in which matters (the provider files).
    toml_dirs: BTreeSet<PathBuf>,
}

impl Targets {
    fn of(all: &[Sources]) -> Self {
        let mut targets = Targets::default();
        for sources in all {
            targets.files.extend(sources.config_file.iter().chain(&sources.modules).map(|f| resolve_file(f)));
            targets.toml_dirs.extend(sources.providers_dir.iter().map(|d| resolve_dir(d)));
        }
        targets
    }

    fn dirs(&self) -> BTreeSet<PathBuf> {
        let parents = self.files.iter().filter_map(|f| f.parent().map(Path::to_path_buf));
        parents.chain(self.toml_dirs.iter().cloned()).collect()
    }

    /// Whether `event` changes a file that matters. Errors count: a reload is cheap when
    /// nothing changed, and missing a change is not.
    fn matters(&self, event: &notify::Result<notify::Event>) -> bool {
        let Ok(event) = event else { return true };
        let is_change = match event.kind {
            // Closing a file written to is the end of a write; other accesses are reads,
            // such as the reload's own.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        };
        is_change
            && event.paths.iter().any(|path| {
                self.files.contains(path)
                    || self.toml_dirs.contains(path)
                    || (path.extension().is_some_and(|ext| ext == "toml")
                        && path.parent().is_some_and(|dir| self.toml_dirs.contains(dir)))
            })
    }
}

/// `dir`, absolute and with symbolic links resolved where it exists.
fn resolve_dir(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::canonicalize(&absolute).unwrap_or(absolute)
}

/// `file` in its resolved directory (the file itself may be replaced or missing).
fn resolve_file(file: &Path) -> PathBuf {
    let parent = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match file.file_name() {
        Some(name) => resolve_dir(parent).join(name),
        None => resolve_dir(file),
    }
}
