//! The deployer: skip rules, the one deploy pipeline over the mode's runtime, hooks, rollback,
//! the bad-version ledger and crash recovery. One deploy runs at a time.

mod crash_loop;
pub mod etcd_lock;
pub mod fleet_lock;
pub mod fleet_store;
mod hook_step;
mod overrides;
pub mod pause;
mod pipeline;
mod recovery;
mod requests;
pub mod rollout_lock;
pub mod runtime;
#[cfg(test)]
mod signed_tests;
pub mod state;
pub mod status;
pub mod steps;
#[cfg(test)]
mod tests;
mod window;

use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use crate::config::Settings;
use crate::notify::{Event, EventSink};
use crate::registry::Registry;
pub use overrides::Overrides;
use runtime::{Runtime, RuntimeError};
use state::{State, StateFile};
pub use status::Status;

/// What happened to a release offered to the deployer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum DeployResult {
    /// The release is live now.
    Deployed { version: String, release: String },
    /// Nothing to do (same version live, known bad version…).
    Skipped { version: String, reason: String },
    /// The deploy failed; the previous release keeps serving.
    Failed { version: String, error: String },
}

impl DeployResult {
    /// Short name of the result: `deployed`, `skipped` or `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            DeployResult::Deployed { .. } => "deployed",
            DeployResult::Skipped { .. } => "skipped",
            DeployResult::Failed { .. } => "failed",
        }
    }
}

/// Why a deploy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The watcher found a newer release.
    Watcher,
    /// An operator asked for a version (`dewy deploy`): the bad-version ledger is not consulted.
    Operator,
}

impl Trigger {
    /// The reason recorded with the deploy.
    pub fn reason(self) -> &'static str {
        match self {
            Trigger::Watcher => "new release",
            Trigger::Operator => "operator",
        }
    }
}

/// The deploy pipeline of one app.
pub struct Deployer {
    settings: Settings,
    registry: Arc<dyn Registry>,
    state_file: StateFile,
    state: Mutex<State>,
    /// What the deployer is doing; watched by the bus layer for `PropertiesChanged`.
    activity: tokio::sync::watch::Sender<String>,
    /// Server mode: the crash loop dewy keeps restarting instead of rolling back, described.
    crash_loop: Mutex<Option<String>>,
    /// `min-age`: why the newest release waits.
    waiting: Mutex<Option<String>>,
    busy: tokio::sync::Mutex<()>,
    events: OnceLock<Arc<dyn EventSink>>,
    /// What the repair at start found, told to the operators once the events have a sink.
    recovered: Mutex<Vec<Event>>,
    /// What the mode does at each step: files, the app, or containers.
    runtime: Arc<dyn Runtime>,
    /// `fleet-lock`: the FleetLock server or etcd semaphore a deploy takes a slot of.
    fleet_lock: Option<rollout_lock::RolloutLock>,
    /// `fleet-store`: the fleet's records of who runs what and of bad releases, and the waves.
    fleet_records: Option<fleet_store::FleetRecords>,
    /// A slot may be held (taken and not yet given back, or held before a restart).
    lock_dirty: std::sync::atomic::AtomicBool,
    /// The last steady-state call failed (warned once, then logged at debug).
    lock_failing: std::sync::atomic::AtomicBool,
}

impl Deployer {
    /// Open the state and the runtime of the configured mode, and repair whatever a crash left
    /// behind.
    pub fn open(settings: Settings, registry: Arc<dyn Registry>) -> anyhow::Result<Arc<Self>> {
        let runtime = runtime::open(&settings, registry.clone())?;
        Self::with_runtime(settings, registry, runtime)
    }

    /// A deployer over a given runtime.
    pub fn with_runtime(
        settings: Settings,
        registry: Arc<dyn Registry>,
        runtime: Arc<dyn Runtime>,
    ) -> anyhow::Result<Arc<Self>> {
        let state_file = StateFile::new(&settings.state_dir);
        let state = state_file.load()?;
        let fleet_lock = settings
            .fleet_lock
            .as_ref()
            .map(rollout_lock::RolloutLock::new)
            .transpose()?;
        let fleet_records = settings
            .fleet_store
            .as_ref()
            .map(fleet_store::FleetRecords::new)
            .transpose()?;
        if let Some(store) = &fleet_records {
            store.restore_bad(&state.fleet_bad_owed);
        }
        let d = Arc::new(Self {
            registry,
            state_file,
            state: Mutex::new(state),
            activity: tokio::sync::watch::Sender::new("idle".into()),
            crash_loop: Mutex::new(None),
            waiting: Mutex::new(None),
            busy: tokio::sync::Mutex::new(()),
            events: OnceLock::new(),
            recovered: Mutex::new(Vec::new()),
            runtime,
            lock_dirty: std::sync::atomic::AtomicBool::new(fleet_lock.is_some()),
            lock_failing: std::sync::atomic::AtomicBool::new(false),
            fleet_records,
            fleet_lock,
            settings,
        });
        d.recover()?;
        Ok(d)
    }

    /// Report deploy events to `sink` (notifiers, metrics); only the first call counts.
    pub fn set_events(&self, sink: Arc<dyn EventSink>) {
        self.runtime.set_events(sink.clone());
        let _ = self.events.set(sink);
    }

    /// Send what the repair at start found (an interrupted deploy) to the event sink.
    pub fn report_recovery(&self) {
        let events = std::mem::take(&mut *self.recovered.lock().unwrap_or_else(|p| p.into_inner()));
        for event in events {
            self.emit(event);
        }
    }

    /// Container mode: where the backends go (dewy-proxy over D-Bus, or the in-process proxy).
    pub fn set_proxy(&self, proxy: Arc<dyn crate::container::ProxyControl>) {
        self.runtime.set_proxy(proxy);
    }

    /// Container mode: (desired, running) replicas; `None` in the other modes.
    pub fn replica_counts(&self) -> Option<(usize, usize)> {
        self.runtime.replica_counts()
    }

    /// Container mode: the running containers as (name, upstream, deploy time, version).
    pub async fn containers(&self) -> Result<Vec<(String, String, String, String)>, RuntimeError> {
        self.runtime.containers().await
    }

    /// Container mode: the running containers in detail; `None` in the other modes.
    pub async fn container_details(
        &self,
    ) -> Result<Option<Vec<crate::container::ContainerDetail>>, RuntimeError> {
        self.runtime.container_details().await
    }

    /// At start: take up the live release. Server mode starts its app (first generation) and
    /// watches for crash loops; container mode adopts the running containers.
    pub async fn start_app(self: &Arc<Self>) {
        if let Some(mut loops) = self.runtime.crash_loops() {
            let me = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(version) = loops.recv().await {
                    let Some(d) = me.upgrade() else { return };
                    d.on_crash_loop(&version).await;
                }
            });
        }
        let _guard = self.busy.lock().await;
        let live = self.live_version();
        // A slot of the fleet lock held when the deployer stopped is given back.
        self.settle_lock().await;
        let live_since = self
            .lock_state()
            .live
            .as_ref()
            .map(|l| (l.version.clone(), l.deployed_at));
        if let Some((version, since)) = live_since {
            self.record_live(&version, since).await;
        }
        if let Err(e) = self.runtime.adopt(live.as_deref()).await {
            let version = live.unwrap_or_default();
            let error = format!("{e:#}");
            tracing::error!(dewy_version = %version, error = %error, "Server failure");
            self.emit(Event::Failed {
                stage: crate::notify::Stage::Deploy,
                version: Some(version),
                error,
                next_step: "dewy deploys the live release again at the next check".into(),
                command: self.settings.mode.to_string(),
            });
        }
    }

    /// Server mode: the live release crash-loops. Roll back when it is the release's fault and a
    /// good previous release exists; otherwise keep it (the supervisor restarts it with capped
    /// backoff), say why, and mark nothing bad.
    async fn on_crash_loop(&self, version: &str) {
        let _guard = self.busy.lock().await;
        let verdict = {
            let st = self.lock_state();
            crash_loop::verdict(
                version,
                st.live.as_ref(),
                st.previous.as_ref(),
                &st.bad,
                self.settings.blame_window,
                chrono::Utc::now(),
            )
        };
        let crashes = crate::supervise::CRASH_LOOP;
        match verdict {
            crash_loop::Verdict::Stale => {}
            crash_loop::Verdict::Keep(why) => {
                let error = format!(
                    "{version} crashed {crashes} times in a row, each within {:?} of starting",
                    crate::supervise::STABLE_AFTER
                );
                tracing::error!(
                    dewy_version = version,
                    reason = %why,
                    "Server crash loop; keeping {version} and restarting it with backoff, nothing is marked bad"
                );
                *self.crash_loop.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                    "{version} crash-looping since {}; kept and restarted with backoff (up to {:?}): {why}",
                    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
                    crate::supervise::MAX_BACKOFF
                ));
                self.emit(Event::Failed {
                    stage: crate::notify::Stage::Run,
                    version: Some(version.to_string()),
                    error,
                    next_step: format!(
                        "no rollback: {why}. dewy keeps {version} and restarts it with backoff up to {:?}; nothing is marked bad. Its output: journalctl -t {}",
                        crate::supervise::MAX_BACKOFF,
                        self.settings.app
                    ),
                    command: self.settings.mode.to_string(),
                });
            }
            crash_loop::Verdict::RollBack => {
                let reason = format!("{version} crashed {crashes} times in a row after it started");
                self.roll_back_to_previous(&reason).await;
            }
        }
    }

    /// Server mode: what `dewy status` says about a crash loop dewy chose not to roll back, while
    /// it lasts (the app has not run for [`crate::supervise::STABLE_AFTER`] since).
    pub fn crash_loop(&self) -> Option<String> {
        let mut kept = self.crash_loop.lock().unwrap_or_else(|p| p.into_inner());
        if !self.runtime.crash_looping() {
            *kept = None;
        }
        kept.clone()
    }

    /// Server mode: restart the app the zero-downtime way without a deploy (SIGUSR1).
    pub async fn restart_app(&self) -> Result<(), RuntimeError> {
        let _guard = self.busy.lock().await;
        let version = self
            .live_version()
            .ok_or_else(|| anyhow::anyhow!("no release is live yet"))?;
        self.runtime.restart(&version).await
    }

    /// When the deployer stops: stop the app gracefully (SIGTERM, drain, SIGKILL), or the
    /// containers as configured.
    pub async fn stop_app(&self) {
        self.runtime.stop().await;
    }

    /// False when the live release is not running (server mode: no generation of the app was
    /// ever started or the last start failed; container mode: no replica): then the live version
    /// is deployed again. A crashed app is restarted by the supervisor.
    pub fn app_running(&self) -> bool {
        self.runtime.running()
    }

    pub(crate) fn emit(&self, event: Event) {
        if let Some(sink) = self.events.get() {
            sink.emit(event);
        }
    }

    /// Record why the newest release waits (`None`: it does not); true when that changed.
    fn set_waiting(&self, why: Option<String>) -> bool {
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let changed = *w != why;
        *w = why;
        changed
    }

    /// Wait until no deploy is running.
    pub async fn wait_idle(&self) {
        let _guard = self.busy.lock().await;
    }

    /// The settings this deployer runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The version live now, if any.
    pub fn live_version(&self) -> Option<String> {
        self.lock_state().live.as_ref().map(|l| l.version.clone())
    }

    /// What the deployer is doing (`idle`, `deploying v1.2.3`…).
    pub fn activity(&self) -> String {
        self.activity.borrow().clone()
    }

    /// Changes of [`Self::activity`] (the live version changes only with them).
    pub fn watch_activity(&self) -> tokio::sync::watch::Receiver<String> {
        self.activity.subscribe()
    }

    fn set_activity(&self, what: String) {
        self.activity.send_replace(what);
        crate::systemd::sd_notify::status(&self.status_line());
    }

    /// The `STATUS=` line: the live version, what the deployer is doing and, in server mode,
    /// the serving process (`v1.2.3 live; idle; pid 4242 (generation 3) serving`).
    pub fn status_line(&self) -> String {
        let live = self.live_version().unwrap_or_else(|| "nothing".into());
        let mut line = format!("{live} live; {}", self.activity());
        if self.crash_loop().is_some() {
            line.push_str("; crash loop, restarting with backoff");
        }
        if let Some(serving) = self.runtime.describe().serving {
            line.push_str("; ");
            line.push_str(&serving);
        }
        line
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
