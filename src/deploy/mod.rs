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
pub mod rollout_lock;
pub mod runtime;
#[cfg(test)]
mod signed_tests;
pub mod state;
pub mod steps;
#[cfg(test)]
mod tests;
mod window;

use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use crate::config::Settings;
use crate::notify::{Event, EventSink};
use crate::registry::{Registry, Release};
pub use overrides::Overrides;
use runtime::{Runtime, RuntimeError};
use state::{HistoryEntry, Live, State, StateFile};

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

/// Why a nominated version is not deployed.
enum Nomination {
    /// The source does not publish it (for this host, by these rules): refused.
    Refused(String),
    /// The source could not be asked: a failure, retried at the next check.
    LookupFailed(String),
}

/// A version refused before anything was fetched: logged with the text escaped, nothing
/// recorded (the text may be hostile), the caller told why.
fn refused(version: &str, why: String) -> DeployResult {
    let shown = crate::registry::version::shown(version);
    tracing::warn!(
        message_id = crate::logging::MSG_SKIP,
        version = %shown,
        reason = %why,
        "Nominated version refused"
    );
    DeployResult::Failed {
        version: if crate::registry::version::check_text(version).is_ok() {
            version.to_string()
        } else {
            shown.clone()
        },
        error: format!("refused {shown}: {why}"),
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

/// A snapshot of the deployer for `dewy status` (sent over the bus as JSON, read back by the CLI).
/// A field a daemon of another version does not send reads as empty.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Status {
    pub app: String,
    pub mode: String,
    pub registry: String,
    pub root: String,
    pub live: Option<Live>,
    pub previous: Option<Live>,
    pub activity: String,
    /// Server mode: a crash loop dewy restarts the app through instead of rolling back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_loop: Option<String>,
    /// Server mode: the process serving now (`pid 4242 (generation 3) serving`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
    /// `min-age`: the newest release waits (`waiting for cooldown until …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// `dewy pause`: releases the watcher finds are held back until `dewy resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<state::Pause>,
    /// With `[[window]]`s: `open until …` or `closed until …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    pub last: Option<HistoryEntry>,
    pub bad: Vec<state::BadVersion>,
    /// Container mode: the replicas in the proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::container::Replica>,
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
            fleet_records: settings.fleet_store.as_ref().map(fleet_store::FleetRecords::new),
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

    /// Deploy a release found in this process by a watcher sharing this deployer's registry,
    /// unless a skip rule applies. The version must still follow the source's grammar.
    pub async fn offer(&self, release: Release) -> DeployResult {
        let _guard = self.busy.lock().await;
        if let Err(e) = self.registry.version_of(&release.version) {
            return refused(&release.version, format!("{e}"));
        }
        self.run(release, Trigger::Watcher).await
    }

    /// Deploy the version another process (the watcher, over D-Bus) nominates. Nothing of the
    /// caller's is used but the version text: the release is resolved from this deployer's own
    /// source ([`crate::registry::resolve`]), must pass its pre-release and slot rules, and a
    /// version older than the live one is only taken when the source itself says it is the
    /// newest (a newer release was withdrawn).
    pub async fn nominate(&self, version: &str) -> DeployResult {
        let _guard = self.busy.lock().await;
        let release = match self.resolve_nomination(version).await {
            Ok(release) => release,
            Err(Nomination::Refused(why)) => return refused(version, why),
            Err(Nomination::LookupFailed(error)) => {
                tracing::error!(
                    message_id = crate::logging::MSG_FAILURE,
                    dewy_version = version,
                    error = %error,
                    "Looking up the nominated version failed; the live release keeps serving"
                );
                self.emit(Event::Failed {
                    stage: crate::notify::Stage::Deploy,
                    version: Some(version.to_string()),
                    error: error.clone(),
                    next_step: format!(
                        "dewy looks it up again at the next check; verify {} and its credentials",
                        self.settings.registry
                    ),
                    command: self.settings.mode.to_string(),
                });
                return DeployResult::Failed {
                    version: version.to_string(),
                    error,
                };
            }
        };
        self.run(release, Trigger::Watcher).await
    }

    async fn resolve_nomination(&self, version: &str) -> Result<Release, Nomination> {
        use crate::registry::{CheckError, ResolveError};
        let release = match crate::registry::resolve(self.registry.as_ref(), version).await {
            Ok(release) => release,
            // The source answered and has no such release for this host: nothing to deploy.
            Err(e @ (ResolveError::Invalid(_) | ResolveError::Mismatch(_)))
            | Err(e @ ResolveError::Check(CheckError::NoRelease(_) | CheckError::ArtifactNotFound { .. })) => {
                return Err(Nomination::Refused(format!("{e:#}")))
            }
            Err(e) => return Err(Nomination::LookupFailed(format!("looking up {version}: {e:#}"))),
        };
        let rules = self.registry.selector();
        let wanted = self
            .registry
            .version_of(&release.version)
            .map_err(|e| Nomination::Refused(e.to_string()))?;
        if !rules.accepts(&wanted) {
            return Err(Nomination::Refused(format!(
                "{} does not pass the source's version rules (pre-release: {}, slot: {})",
                release.version,
                rules.prerelease,
                rules.slot.as_deref().unwrap_or("any")
            )));
        }
        let live = self
            .live_version()
            .and_then(|v| self.registry.version_of(&v).ok());
        if let Some(live) = live.filter(|live| wanted < *live) {
            let newest = self
                .registry
                .latest()
                .await
                .map_err(|e| {
                    Nomination::LookupFailed(format!(
                        "{} is older than the live {live}, and asking the source for its newest release failed: {e:#}",
                        release.version
                    ))
                })?;
            if newest.version != release.version {
                return Err(Nomination::Refused(format!(
                    "{} is older than the live {live} and not the newest release of the source ({})",
                    release.version, newest.version
                )));
            }
        }
        Ok(release)
    }

    /// Deploy a given version now (operator request). While paused, or outside every deploy
    /// window, it is refused unless `overrides` sets that rule aside.
    pub async fn deploy_version(&self, version: &str, overrides: Overrides) -> DeployResult {
        let _guard = self.busy.lock().await;
        if let Some(refused) = self.refused_by_pause(version, overrides) {
            return refused;
        }
        if let Some(refused) = self.refused_by_window(version, overrides) {
            return refused;
        }
        match crate::registry::resolve(self.registry.as_ref(), version).await {
            Ok(release) => self.run(release, Trigger::Operator).await,
            Err(crate::registry::ResolveError::Invalid(e)) => refused(version, e.to_string()),
            Err(e) => {
                let error = format!("looking up {version}: {e:#}");
                self.emit(Event::Failed {
                    stage: crate::notify::Stage::Deploy,
                    version: Some(version.to_string()),
                    error: error.clone(),
                    next_step: format!(
                        "check that {version} exists in {} (`dewy status {}` shows the newest)",
                        self.settings.registry, self.settings.app
                    ),
                    command: self.settings.mode.to_string(),
                });
                DeployResult::Failed {
                    version: version.to_string(),
                    error,
                }
            }
        }
    }

    /// Make the previous release live again and mark the current version bad.
    pub async fn rollback(&self) -> DeployResult {
        let _guard = self.busy.lock().await;
        self.roll_back_to_previous("rolled back by operator").await
    }

    /// Remove a version from the bad-version ledger, and with a fleet store its fleet-wide mark;
    /// true when it was in either. The text must be a version of the source's grammar, or be in
    /// the ledger as it is (a ledger written under other version rules can still be cleared).
    pub async fn forget_bad(&self, version: &str) -> anyhow::Result<bool> {
        crate::registry::version::check_text(version)?;
        let removed = {
            let mut st = self.lock_state();
            if !st.bad.contains_key(version) {
                self.registry.version_of(version)?;
            }
            let removed = st.bad.remove(version).is_some();
            if removed {
                self.state_file.save(&st)?;
                tracing::info!(dewy_version = version, "Bad version forgotten");
            }
            removed
        };
        let fleet = self.forget_fleet_bad(version).await?;
        if fleet {
            tracing::info!(dewy_version = version, "Bad version forgotten fleet-wide");
        }
        Ok(removed || fleet)
    }

    /// A snapshot for `dewy status`.
    pub fn status(&self) -> Status {
        let st = self.lock_state();
        Status {
            app: self.settings.app.clone(),
            mode: self.settings.mode.to_string(),
            registry: self.settings.registry.clone(),
            root: self.settings.root.display().to_string(),
            live: st.live.clone(),
            previous: st.previous.clone(),
            activity: self.activity(),
            crash_loop: self.crash_loop(),
            serving: self.runtime.describe().serving,
            waiting: self.waiting.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            paused: st.paused.clone(),
            window: self.window_state(),
            last: st.history.back().cloned(),
            bad: st.bad.values().cloned().collect(),
            replicas: self.runtime.describe().replicas,
        }
    }

    /// The newest `limit` history entries, oldest first.
    pub fn history(&self, limit: usize) -> Vec<HistoryEntry> {
        let st = self.lock_state();
        let skip = st.history.len().saturating_sub(limit);
        st.history.iter().skip(skip).cloned().collect()
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
