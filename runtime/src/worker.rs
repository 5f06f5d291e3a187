//! Runs a set of pipelines in one process and supervises each on its own: a failing
//! pipeline is reported and stops while the others keep running, and the admin API
//! pauses, resumes and restarts them (through a `WorkerHandle`).
//!
//! Pausing stops a pipeline at a final checkpoint; resuming and restarting build it
//! again from its file and start it from its checkpoint. The process ends when no
//! pipeline runs any more and none is paused (or on shutdown).
//!
//! Hot reload (a watched file changed, or SIGHUP): an added file starts its pipelines,
//! a removed one stops them after a final checkpoint, a changed one restarts only its
//! own pipelines from their checkpoints. A file that no longer validates leaves its
//! running pipelines untouched; the reason goes to the log, to their status
//! (`config_error`) and to `connectd_config_reloads_total{result="failed"}`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use connectd_sdk::{Registry, WorkerSettings};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{self, PipelinePlan, PipelineSpec};
use crate::engine::{self, CommittedOffsets, PipelineError};
use crate::metrics::Metrics;

/// How each pipeline ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub finished: Vec<String>,
    pub failed: Vec<(String, PipelineError)>,
}

/// What a pipeline is doing, as the admin API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PipelineState {
    Running,
    /// Stopped at a checkpoint on request; resumes from there.
    Paused,
    /// Stopped at a checkpoint by Kafka Connect's `stop` (KIP-875): as paused, and the
    /// state in which its offsets may be reset.
    Stopped,
    Failed,
    /// Its sources are exhausted and everything is committed (or the worker stopped).
    Finished,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    pub name: String,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub type_name: String,
    pub inputs: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    pub name: String,
    pub file: PathBuf,
    pub state: PipelineState,
    /// Why it failed: the component and the cause.
    pub error: Option<String>,
    /// When it entered `state` (RFC 3339).
    pub since: String,
    /// Why the last change to its file was not applied (it runs the version before).
    pub config_error: Option<String>,
    pub components: Vec<ComponentInfo>,
}

/// A request of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Stop,
    Resume,
    Restart,
    /// Forget the committed checkpoint in every sink (only while stopped).
    ResetOffsets,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    #[error("no pipeline named `{0}`")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (an unknown source, an offset its source refuses).
    #[error("{0}")]
    Invalid(String),
}

/// A source's new position (`None`: forget it, the source starts as configured).
pub type OffsetChange = (String, Option<serde_json::Value>);

/// What the admin API asks of the supervisor.
#[derive(Debug)]
enum Request {
    Control(Control),
    AlterOffsets(Vec<OffsetChange>),
}

/// How pipelines are built again from their files (resume, restart, hot reload).
#[derive(Debug)]
pub struct Loader {
    /// The `--config` arguments: files and globs, expanded again on a reload.
    pub patterns: Vec<String>,
    pub registry: Registry,
    pub state_dir: PathBuf,
    pub worker: WorkerSettings,
}

impl Loader {
    fn load_file(&self, file: &Path) -> Result<Vec<PipelinePlan>, String> {
        config::load(
            &[file.to_path_buf()],
            &self.registry,
            &self.state_dir,
            &self.worker,
        )
        .map_err(|p| p.to_string())
    }

    /// A new run of a pipeline, built from the spec it was loaded from (its file is
    /// not read again: a changed file is a reload, not a restart).
    fn instantiate(&self, spec: &Arc<PipelineSpec>) -> Result<PipelinePlan, String> {
        spec.instantiate(&self.registry, &self.state_dir, &self.worker)
            .map_err(|p| p.to_string())
    }
}

type Reply = oneshot::Sender<Result<(), ControlError>>;
type Statuses = Arc<Mutex<BTreeMap<String, PipelineStatus>>>;
type Offsets = Arc<Mutex<BTreeMap<String, CommittedOffsets>>>;

/// The admin API's view of the worker: statuses, and requests to the supervisor.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    statuses: Statuses,
    offsets: Offsets,
    commands: mpsc::UnboundedSender<(String, Request, Reply)>,
    reloads: mpsc::UnboundedSender<()>,
}

impl WorkerHandle {
    /// Re-reads the pipeline files (a file changed, or SIGHUP).
    pub fn reload(&self) {
        let _ = self.reloads.send(());
    }

    pub fn statuses(&self) -> Vec<PipelineStatus> {
        lock(&self.statuses).values().cloned().collect()
    }

    pub fn status(&self, name: &str) -> Option<PipelineStatus> {
        lock(&self.statuses).get(name).cloned()
    }

    /// The source offsets of the pipeline's newest committed checkpoint (None: no
    /// checkpoint yet; Err: no such pipeline).
    pub fn offsets(&self, name: &str) -> Result<Option<serde_json::Value>, ControlError> {
        if !lock(&self.statuses).contains_key(name) {
            return Err(ControlError::NotFound(name.to_string()));
        }
        Ok(lock(&self.offsets)
            .get(name)
            .and_then(|slot| lock(slot).clone()))
    }

    /// Hands a request to the supervisor; returns once it is under way.
    pub async fn control(&self, name: &str, what: Control) -> Result<(), ControlError> {
        self.request(name, Request::Control(what)).await
    }

    /// KIP-875's alter: moves sources of a stopped pipeline to new positions in its
    /// last checkpoint (each source checks its offset first).
    pub async fn alter_offsets(
        &self,
        name: &str,
        changes: Vec<OffsetChange>,
    ) -> Result<(), ControlError> {
        self.request(name, Request::AlterOffsets(changes)).await
    }

    async fn request(&self, name: &str, what: Request) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send((name.to_string(), what, reply))
            .map_err(|_| ControlError::Conflict("the worker is shutting down".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(ControlError::Conflict("the worker is shutting down".into())))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `text` with every secret value replaced (values shorter than 4 characters are left:
/// they would blank out ordinary words and numbers).
fn redact(secrets: &[String], text: &str) -> String {
    secrets
        .iter()
        .filter(|s| s.chars().count() >= 4)
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "<redacted>"))
}

fn file_hash(file: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let text = std::fs::read(file).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    Some(h.finish())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What to do when a pipeline's current run ends.
#[derive(Debug)]
enum Then {
    Report,
    Pause,
    Stop,
    Restart,
    /// Start this new version (its file changed).
    Replace(Box<PipelinePlan>),
    /// Forget it (its file is gone).
    Remove,
}

#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    then: Then,
}

#[derive(Debug)]
pub struct Worker {
    loader: Option<Loader>,
    metrics: Metrics,
    statuses: Statuses,
    offsets: Offsets,
    commands: mpsc::UnboundedReceiver<(String, Request, Reply)>,
    reloads: mpsc::UnboundedReceiver<()>,
    /// A hash of each pipeline file's text as last loaded: unchanged files are skipped.
    files: BTreeMap<PathBuf, u64>,
    running: BTreeMap<String, Running>,
    tasks: JoinSet<(String, Result<(), PipelineError>)>,
    /// Why each failed pipeline failed (for the exit report).
    failures: BTreeMap<String, PipelineError>,
    /// Each pipeline's interpolated values, redacted from the errors it reports.
    secrets: BTreeMap<String, Vec<String>>,
    /// What each pipeline was last started from: resume and restart build from it.
    specs: BTreeMap<String, Arc<PipelineSpec>>,
    stopping: bool,
    /// Runs until told to stop, even with no pipeline (pipelines come over the API).
    resident: bool,
}

impl Worker {
    /// Keeps running with no pipeline: pipelines may be created over the API.
    pub fn stay_resident(&mut self) {
        self.resident = true;
    }

    /// `loader` builds pipelines again for resume/restart (None: they cannot be).
    pub fn new(loader: Option<Loader>, metrics: Metrics) -> (Self, WorkerHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (reload_tx, reload_rx) = mpsc::unbounded_channel();
        let statuses = Statuses::default();
        let offsets = Offsets::default();
        let handle = WorkerHandle {
            statuses: statuses.clone(),
            offsets: offsets.clone(),
            commands: tx,
            reloads: reload_tx,
        };
        let worker = Worker {
            loader,
            metrics,
            statuses,
            offsets,
            commands: rx,
            reloads: reload_rx,
            files: BTreeMap::new(),
            running: BTreeMap::new(),
            tasks: JoinSet::new(),
            failures: BTreeMap::new(),
            secrets: BTreeMap::new(),
            specs: BTreeMap::new(),
            stopping: false,
            resident: false,
        };
        (worker, handle)
    }

    fn set(&mut self, name: &str, state: PipelineState, error: Option<PipelineError>) {
        let error = error.map(|e| {
            let secrets = self.secrets.get(name).map_or(&[][..], Vec::as_slice);
            PipelineError::new(redact(secrets, &e.component), redact(secrets, &e.message))
        });
        if let Some(s) = lock(&self.statuses).get_mut(name) {
            s.state = state;
            s.error = error.as_ref().map(ToString::to_string);
            s.since = now();
        }
        match error {
            Some(e) => self.failures.insert(name.to_string(), e),
            None => self.failures.remove(name),
        };
    }

    fn start(&mut self, plan: PipelinePlan) {
        let name = plan.name.clone();
        self.secrets.insert(name.clone(), plan.secrets.clone());
        self.specs.insert(name.clone(), Arc::clone(&plan.spec));
        tracing::info!(pipeline = %name, file = %plan.file.display(), "starting pipeline");
        let info =
            |kind: &'static str, name: &str, type_name: &str, inputs: &[String]| ComponentInfo {
                name: name.to_string(),
                kind,
                type_name: type_name.to_string(),
                inputs: inputs.to_vec(),
            };
        let components = plan
            .sources
            .iter()
            .map(|c| info("source", &c.name, &c.type_name, &c.inputs))
            .chain(
                plan.transforms
                    .iter()
                    .map(|c| info("transform", &c.name, &c.type_name, &c.inputs)),
            )
            .chain(
                plan.sinks
                    .iter()
                    .map(|c| info("sink", &c.name, &c.type_name, &c.inputs)),
            )
            .collect();
        lock(&self.statuses).insert(
            name.clone(),
            PipelineStatus {
                name: name.clone(),
                file: plan.file.clone(),
                state: PipelineState::Running,
                error: None,
                since: now(),
                config_error: None,
                components,
            },
        );
        if let Some(h) = file_hash(&plan.file) {
            self.files.entry(plan.file.clone()).or_insert(h);
        }
        let (stop, stop_rx) = watch::channel(self.stopping);
        self.running.insert(
            name.clone(),
            Running {
                stop,
                then: Then::Report,
            },
        );
        let metrics = self.metrics.clone();
        let committed = lock(&self.offsets).entry(name.clone()).or_default().clone();
        // Every log line of the pipeline carries its name (a field in JSON logs).
        let span = tracing::info_span!("pipeline", pipeline = %name);
        self.tasks.spawn(
            async move { (name, engine::run(plan, metrics, stop_rx, committed).await) }
                .instrument(span),
        );
    }

    /// Builds the pipeline again from its spec and starts it from its checkpoint.
    fn rebuild(&mut self, name: &str) -> Result<(), String> {
        let plan = self.instantiate(name)?;
        self.start(plan);
        Ok(())
    }

    /// A new run of the pipeline `name`, from the spec of its last start.
    fn instantiate(&self, name: &str) -> Result<PipelinePlan, String> {
        let spec = self
            .specs
            .get(name)
            .ok_or_else(|| format!("no pipeline named `{name}`"))?;
        let loader = self
            .loader
            .as_ref()
            .ok_or("this worker cannot rebuild pipelines")?;
        loader.instantiate(spec)
    }

    fn control(&mut self, name: &str, what: Control) -> Result<(), ControlError> {
        let state = lock(&self.statuses)
            .get(name)
            .map(|s| s.state)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        if what == Control::ResetOffsets {
            return Err(ControlError::Conflict(
                "an offset reset is handled by reset_offsets".into(),
            ));
        }
        if self.stopping && !matches!(what, Control::Pause | Control::Stop) {
            return Err(ControlError::Conflict("the worker is shutting down".into()));
        }
        if let Some(r) = self.running.get_mut(name) {
            // Running (or stopping for an earlier request): decided when the run ends.
            match (what, &r.then) {
                (_, Then::Replace(_) | Then::Remove) => {
                    return Err(ControlError::Conflict(format!(
                        "pipeline `{name}` is being replaced or removed after a change of its file"
                    )))
                }
                (Control::Pause, _) => r.then = Then::Pause,
                (Control::Stop, _) => r.then = Then::Stop,
                (Control::Restart, _) => r.then = Then::Restart,
                (Control::Resume, Then::Pause | Then::Stop) => r.then = Then::Restart,
                (Control::Resume, _) => return Ok(()),
                (Control::ResetOffsets, _) => {
                    return Err(ControlError::Conflict(format!(
                        "pipeline `{name}` is running: stop it first (PUT /connectors/{name}/stop)"
                    )))
                }
            }
            tracing::info!(pipeline = %name, request = ?what, "stopping the pipeline at a checkpoint");
            let _ = r.stop.send(true);
            return Ok(());
        }
        match (what, state) {
            (Control::Pause, PipelineState::Paused) => Ok(()),
            (Control::Pause, _) => Err(ControlError::Conflict(format!(
                "pipeline `{name}` is not running"
            ))),
            // Not running: stopped already, in effect.
            (Control::Stop, _) => {
                self.set(name, PipelineState::Stopped, None);
                Ok(())
            }
            (Control::Resume, s)
                if !matches!(s, PipelineState::Paused | PipelineState::Stopped) =>
            {
                Err(ControlError::Conflict(format!(
                    "pipeline `{name}` is not paused or stopped (restart it instead)"
                )))
            }
            _ => self.rebuild(name).map_err(|e| {
                self.set(
                    name,
                    PipelineState::Failed,
                    Some(PipelineError::new("config", e.clone())),
                );
                ControlError::Conflict(e)
            }),
        }
    }

    /// The pipeline built again from its spec, for changing its offsets: only while it
    /// is not running (`done`: what is done to them, for the refusal).
    fn stopped_plan(&self, name: &str, done: &str) -> Result<PipelinePlan, ControlError> {
        if !lock(&self.statuses).contains_key(name) {
            return Err(ControlError::NotFound(name.to_string()));
        }
        if self.running.contains_key(name) {
            return Err(ControlError::Conflict(format!(
                "pipeline `{name}` is running: stop it first (PUT /connectors/{name}/stop); offsets are {done} only while it is stopped"
            )));
        }
        self.instantiate(name).map_err(ControlError::Conflict)
    }

    /// Forgets the committed checkpoint in each of the pipeline's sinks, so that its
    /// next run starts from the beginning (what was written stays).
    async fn reset_offsets(&mut self, name: &str) -> Result<(), ControlError> {
        let plan = self.stopped_plan(name, "reset")?;
        let state_dir = plan.state_dir.clone();
        for mut source in plan.sources {
            source.component.reset().await.map_err(|e| {
                ControlError::Conflict(format!(
                    "source `{}` ({}): {e}",
                    source.name, source.type_name
                ))
            })?;
        }
        for mut sink in plan.sinks {
            sink.component.reset().await.map_err(|e| {
                ControlError::Conflict(format!("sink `{}` ({}): {e}", sink.name, sink.type_name))
            })?;
        }
        // The pipeline's own checkpoint log and write-ahead logs go last: a sink that
        // refuses the reset leaves the pipeline where it was.
        crate::engine::StateStore::remove(&state_dir)
            .map_err(|e| ControlError::Conflict(e.to_string()))?;
        crate::engine::Wal::remove_all(&state_dir).map_err(|e| {
            ControlError::Conflict(format!(
                "cannot remove the write-ahead logs under {}: {e}",
                state_dir.display()
            ))
        })?;
        if let Some(slot) = lock(&self.offsets).get(name) {
            *lock(slot) = None;
        }
        tracing::info!(pipeline = %name, "offsets reset: the next run starts from the beginning");
        Ok(())
    }

    async fn alter_offsets(
        &mut self,
        name: &str,
        changes: Vec<OffsetChange>,
    ) -> Result<(), ControlError> {
        let mut plan = self.stopped_plan(name, "altered")?;
        let store = crate::engine::StateStore::open(&plan.state_dir, plan.state_cache_bytes)
            .map_err(|e| ControlError::Conflict(e.to_string()))?;
        let mut manifest = store
            .latest()
            .map_err(|e| ControlError::Conflict(e.to_string()))?
            .ok_or_else(|| {
                ControlError::Conflict(format!(
                    "pipeline `{name}` has no checkpoint yet: there is no position to alter (its sources start as its file says)"
                ))
            })?;
        // Every source checks its new position (and moves what it keeps outside the
        // checkpoint) before the checkpoint changes.
        for (source, offset) in &changes {
            let known: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
            let known = known.join(", ");
            let Some(s) = plan.sources.iter_mut().find(|s| &s.name == source) else {
                return Err(ControlError::Invalid(format!(
                    "pipeline `{name}` has no source `{source}` (its sources: {known})"
                )));
            };
            let checked = match offset {
                Some(o) => s.component.alter(o).await,
                None => s.component.reset().await,
            };
            checked.map_err(|e| {
                ControlError::Invalid(format!("source `{source}` ({}): {e}", s.type_name))
            })?;
        }
        for (source, offset) in changes {
            match offset {
                Some(o) => manifest.state.sources.entry(source).or_default().offset = o,
                None => {
                    manifest.state.sources.remove(&source);
                }
            }
        }
        store
            .complete(&manifest)
            .map_err(|e| ControlError::Conflict(e.to_string()))?;
        if let Some(slot) = lock(&self.offsets).get(name) {
            crate::engine::publish_committed(slot, manifest.id, &manifest.state);
        }
        tracing::info!(pipeline = %name, checkpoint = manifest.id, "offsets altered");
        Ok(())
    }

    fn ended(&mut self, name: String, result: Result<(), PipelineError>) {
        let then = self.running.remove(&name).map_or(Then::Report, |r| r.then);
        match (result, then) {
            (_, Then::Remove) => {
                tracing::info!(pipeline = %name, "pipeline removed (its file is gone)");
                lock(&self.statuses).remove(&name);
                lock(&self.offsets).remove(&name);
                self.specs.remove(&name);
                self.failures.remove(&name);
            }
            // A changed file or a restart wants the pipeline running again: a run that
            // failed on the way out (its sink down, say, and the stop ending the
            // retries) leaves it as a crash would, and the new run recovers from the
            // last complete checkpoint. The new file may be the fix.
            (Err(e), then @ (Then::Replace(_) | Then::Restart)) if !self.stopping => {
                let secrets = self.secrets.get(&name).map_or(&[][..], Vec::as_slice);
                tracing::warn!(pipeline = %name, component = %e.component, error = %redact(secrets, &e.message), "the pipeline failed as it stopped; starting it again from its last checkpoint");
                self.running_again(name, then);
            }
            (Err(e), _) => {
                let secrets = self.secrets.get(&name).map_or(&[][..], Vec::as_slice);
                tracing::error!(pipeline = %name, component = %e.component, error = %redact(secrets, &e.message), "pipeline failed");
                self.set(&name, PipelineState::Failed, Some(e));
            }
            (Ok(()), Then::Pause) => {
                tracing::info!(pipeline = %name, "pipeline paused");
                self.set(&name, PipelineState::Paused, None);
            }
            (Ok(()), Then::Stop) => {
                tracing::info!(pipeline = %name, "pipeline stopped");
                self.set(&name, PipelineState::Stopped, None);
            }
            (Ok(()), then @ (Then::Replace(_) | Then::Restart)) if !self.stopping => {
                self.running_again(name, then)
            }
            (Ok(()), _) => {
                tracing::info!(pipeline = %name, "pipeline finished");
                self.set(&name, PipelineState::Finished, None);
            }
        }
    }

    /// Starts a pipeline that stopped to be replaced by its changed file, or restarted.
    fn running_again(&mut self, name: String, then: Then) {
        match then {
            Then::Replace(plan) => {
                tracing::info!(pipeline = %name, "starting the changed pipeline from its checkpoint");
                self.start(*plan);
            }
            _ => {
                if let Err(e) = self.rebuild(&name) {
                    tracing::error!(pipeline = %name, error = %e, "cannot restart the pipeline");
                    self.set(
                        &name,
                        PipelineState::Failed,
                        Some(PipelineError::new("config", e)),
                    );
                }
            }
        }
    }

    /// Applies what changed in the pipeline files since they were last loaded.
    fn reload_files(&mut self) {
        let Some(loader) = &self.loader else { return };
        let files = match config::current_paths(&loader.patterns) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "config reload: cannot list the pipeline files; nothing changed");
                self.metrics.config_reload(false);
                return;
            }
        };
        let before: BTreeMap<String, PathBuf> = lock(&self.statuses)
            .iter()
            .filter(|(n, _)| {
                !self
                    .running
                    .get(*n)
                    .is_some_and(|r| matches!(r.then, Then::Remove))
            })
            .map(|(n, s)| (n.clone(), s.file.clone()))
            .collect();
        let of_file = |file: &Path| -> Vec<String> {
            before
                .iter()
                .filter(|(_, f)| f.as_path() == file)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let mut kept: BTreeSet<String> = BTreeSet::new();
        let mut loaded: Vec<(PathBuf, u64, Result<Vec<PipelinePlan>, String>)> = Vec::new();
        for file in &files {
            let hash = file_hash(file);
            if hash.is_some() && self.files.get(file) == hash.as_ref() {
                kept.extend(of_file(file));
                continue;
            }
            loaded.push((file.clone(), hash.unwrap_or(0), loader.load_file(file)));
        }
        for (file, hash, result) in loaded {
            match result {
                Err(e) => {
                    tracing::error!(file = %file.display(), error = %e, "config reload: the changed file is not valid; its pipelines keep running as they were");
                    self.metrics.config_reload(false);
                    for name in of_file(&file) {
                        if let Some(s) = lock(&self.statuses).get_mut(&name) {
                            s.config_error = Some(e.clone());
                        }
                        kept.insert(name);
                    }
                }
                Ok(plans) => {
                    self.metrics.config_reload(true);
                    self.files.insert(file.clone(), hash);
                    for plan in plans {
                        let name = plan.name.clone();
                        match before.get(&name) {
                            Some(other) if *other != file => {
                                tracing::error!(file = %file.display(), pipeline = %name, other = %other.display(), "config reload: this pipeline name is already used by another file; not started");
                                continue;
                            }
                            Some(_) => self.replace(plan),
                            None => {
                                tracing::info!(pipeline = %name, file = %file.display(), "config reload: new pipeline");
                                self.start(plan);
                            }
                        }
                        kept.insert(name);
                    }
                }
            }
        }
        for (name, file) in &before {
            if !kept.contains(name) {
                self.remove(name);
                if !files.contains(file) {
                    self.files.remove(file);
                }
            }
        }
    }

    /// Its file changed: stop at a checkpoint, then start the new version from it.
    fn replace(&mut self, plan: PipelinePlan) {
        let name = plan.name.clone();
        tracing::info!(pipeline = %name, "config reload: the pipeline changed; restarting it from its checkpoint");
        match self.running.get_mut(&name) {
            Some(r) => {
                r.then = Then::Replace(Box::new(plan));
                let _ = r.stop.send(true);
            }
            None => self.start(plan),
        }
    }

    /// Its file is gone: stop at a final checkpoint and forget it.
    fn remove(&mut self, name: &str) {
        tracing::info!(pipeline = %name, "config reload: the pipeline's file is gone; stopping it at a final checkpoint");
        match self.running.get_mut(name) {
            Some(r) => {
                r.then = Then::Remove;
                let _ = r.stop.send(true);
            }
            None => {
                lock(&self.statuses).remove(name);
                lock(&self.offsets).remove(name);
                self.specs.remove(name);
                self.failures.remove(name);
            }
        }
    }

    fn any_paused(&self) -> bool {
        lock(&self.statuses)
            .values()
            .any(|s| matches!(s.state, PipelineState::Paused | PipelineState::Stopped))
    }

    pub async fn run(
        mut self,
        plans: Vec<PipelinePlan>,
        mut stop: watch::Receiver<bool>,
        ready: Arc<AtomicBool>,
    ) -> Outcome {
        self.stopping = *stop.borrow();
        for plan in plans {
            self.start(plan);
        }
        ready.store(true, Ordering::Relaxed);
        while !(self.tasks.is_empty() && (self.stopping || !(self.any_paused() || self.resident))) {
            tokio::select! {
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => match joined {
                    Ok((name, result)) => self.ended(name, result),
                    Err(e) => tracing::error!(error = %e, "a pipeline task ended abnormally"),
                },
                changed = stop.changed(), if !self.stopping => {
                    if changed.is_err() || *stop.borrow() {
                        self.stopping = true;
                        for r in self.running.values() {
                            let _ = r.stop.send(true);
                        }
                    }
                }
                Some((name, what, reply)) = self.commands.recv() => {
                    let result = match what {
                        Request::Control(Control::ResetOffsets) => self.reset_offsets(&name).await,
                        Request::Control(what) => self.control(&name, what),
                        Request::AlterOffsets(changes) => self.alter_offsets(&name, changes).await,
                    };
                    let _ = reply.send(result);
                }
                Some(()) = self.reloads.recv(), if !self.stopping => {
                    // Editors write a file in several steps: let them finish.
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    while self.reloads.try_recv().is_ok() {}
                    self.reload_files();
                }
            }
        }
        let mut outcome = Outcome::default();
        for name in lock(&self.statuses).keys() {
            match self.failures.remove(name) {
                Some(e) => outcome.failed.push((name.clone(), e)),
                None => outcome.finished.push(name.clone()),
            }
        }
        outcome
    }
}
