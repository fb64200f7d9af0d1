//! Server mode: the deployer runs the app, hands it the listening sockets by the socket
//! activation protocol, restarts it with overlapping generations on deploy, restarts it with
//! backoff when it crashes, and stops it gracefully with the deployer.

pub mod app_units;
mod fdstore;
pub mod generation;
mod listen;
mod orphan;
mod restarts;
pub mod sockets;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;

use crate::config::{Readiness, Settings};
use crate::notify::{Event, EventSink, Stage};
use generation::{describe, Check, Generation, Launch};
use sockets::Socket;

pub use crate::notify::event::Restart;

/// Longest wait between two restarts of a crashing app.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// An app that ran this long before crashing starts again from the shortest backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// This many crashes in a row, each before [`STABLE_AFTER`], is a crash loop: the deployer is
/// told, and rolls back when the release is to blame.
pub const CRASH_LOOP: u32 = 3;

/// The app of one deployer in server mode.
pub struct Supervisor {
    settings: Settings,
    sockets: Vec<Socket>,
    run_dir: PathBuf,
    current: Mutex<Option<Arc<Generation>>>,
    ops: tokio::sync::Mutex<()>,
    next: AtomicU64,
    stopping: AtomicBool,
    backoff: Mutex<Duration>,
    quick_crashes: AtomicU32,
    /// The version crash restarts start: the last one started, or the last one asked for when
    /// its start failed with no generation left running (a rollback onto a release that also
    /// fails keeps being retried as that release, which `current` points to).
    wanted: Mutex<String>,
    crash_loops: tokio::sync::mpsc::UnboundedSender<String>,
    crash_loop_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    events: OnceLock<Arc<dyn EventSink>>,
    /// Under systemd: each generation in its own transient unit (connected on first use;
    /// `None` inside when systemd's manager could not be reached).
    scoped: bool,
    units: tokio::sync::OnceCell<Option<app_units::AppUnits>>,
    /// The listening sockets differ from the last deployer's (a port was added or dropped): a
    /// generation it left running lacks them and is replaced rather than kept.
    sockets_changed: bool,
}

impl Supervisor {
    /// Take the sockets from dewy's own socket activation, or bind the configured ports.
    pub fn open(settings: &Settings) -> anyhow::Result<Arc<Self>> {
        let run_dir = settings.state_dir.join("run");
        let scoped = app_units::under_systemd();
        // Under systemd the app outlives the deployer in its own unit and is adopted; elsewhere
        // whatever a killed deployer left holds the ports and goes.
        if !scoped {
            orphan::stop_leftover(&run_dir, &settings.root, settings.drain_time);
        }
        let (sockets, sockets_changed) = Self::listen(settings)?;
        if sockets.len() >= sockets::MAX_SOCKETS {
            anyhow::bail!("too many listening sockets ({})", sockets.len());
        }
        let (crash_loops, rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Arc::new(Self {
            run_dir,
            settings: settings.clone(),
            sockets,
            current: Mutex::new(None),
            ops: tokio::sync::Mutex::new(()),
            next: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            backoff: Mutex::new(Duration::from_secs(1)),
            quick_crashes: AtomicU32::new(0),
            wanted: Mutex::new(String::new()),
            crash_loops,
            crash_loop_rx: Mutex::new(Some(rx)),
            events: OnceLock::new(),
            scoped,
            units: tokio::sync::OnceCell::new(),
            sockets_changed,
        }))
    }

    /// The app's units under systemd, connected on first use; `None` outside systemd or when
    /// the manager cannot be reached (then generations run in the deployer's own unit).
    async fn units(&self) -> Option<&app_units::AppUnits> {
        if !self.scoped {
            return None;
        }
        self.units
            .get_or_init(|| async {
                match app_units::AppUnits::connect(&self.settings.app).await {
                    Ok(u) => Some(u),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "systemd's manager is not reachable; the app runs in the deployer's unit and stops with it");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// At start under systemd: take over the generation an earlier deployer left running in its
    /// unit (preferring one of `live`, then the newest), stop the others. True when the adopted
    /// generation runs `live`: then nothing needs starting.
    pub async fn adopt(self: &Arc<Self>, live: &str) -> anyhow::Result<bool> {
        let Some(units) = self.units().await else {
            return Ok(false);
        };
        let _op = self.ops.lock().await;
        let mut running = units.running().await?;
        if let Some(newest) = running.first() {
            self.next.fetch_max(newest.number + 1, Ordering::SeqCst);
        }
        // Of `live` first, newest first (the sort keeps the number order within each).
        running.sort_by_key(|f| f.version != live);
        let mut found = running.into_iter();
        let Some(keep) = found.next() else {
            return Ok(false);
        };
        for other in found {
            tracing::warn!(unit = %other.unit, pid = other.pid, dewy_version = %other.version, "Stopping an older app generation left by an earlier deployer");
            if let Err(e) = units.stop(&other.unit).await {
                tracing::warn!(unit = %other.unit, error = %format!("{e:#}"), "Stopping it failed");
            }
        }
        let gen = Arc::new(Generation::adopt(
            keep.number,
            &keep.version,
            keep.pid,
            keep.unit.clone(),
        )?);
        tracing::info!(pid = keep.pid, generation = keep.number, unit = %keep.unit, dewy_version = %keep.version, "Adopted the running app");
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(gen.clone());
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = keep.version.clone();
        orphan::record(&self.run_dir, &[keep.pid]);
        self.watch(gen);
        if self.sockets_changed {
            tracing::info!(
                pid = keep.pid,
                "The listening sockets changed since it started; a new generation replaces it"
            );
            return Ok(false);
        }
        Ok(keep.version == live)
    }

    /// Move a just-spawned, gated generation into its own unit, then let it exec the app. When
    /// the unit cannot be made, the app still starts (in the deployer's unit), with a warning.
    async fn enclose(&self, gen: &Generation, version: &str) {
        if let Some(units) = self.units().await {
            match units
                .enclose(
                    gen.number,
                    version,
                    gen.pid,
                    self.settings.drain_time,
                    &self.settings.app_properties,
                )
                .await
            {
                Ok(unit) => {
                    tracing::info!(pid = gen.pid, generation = gen.number, unit = %unit, "App generation in its own unit");
                    *gen.unit.lock().unwrap_or_else(|p| p.into_inner()) = Some(unit);
                }
                Err(e) => {
                    tracing::warn!(pid = gen.pid, error = %format!("{e:#}"), "Could not give the app its own unit; it runs in the deployer's and stops with it")
                }
            }
        }
        gen.release().await;
    }

    /// Report server events to `sink`; only the first call counts.
    pub fn set_events(&self, sink: Arc<dyn EventSink>) {
        let _ = self.events.set(sink);
    }

    fn emit(&self, event: Event) {
        if let Some(sink) = self.events.get() {
            sink.emit(event);
        }
    }

    /// The versions found crash-looping (once per loop); only the first call gets the receiver.
    pub fn crash_loops(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.crash_loop_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// True while a generation runs.
    pub fn running(&self) -> bool {
        self.current_gen().is_some_and(|g| g.exited().is_none())
    }

    /// True once a generation was started (it may be down and waiting for its restart).
    pub fn supervising(&self) -> bool {
        self.current_gen().is_some()
    }

    /// The pid and version of the running generation.
    pub fn live(&self) -> Option<(i32, String, u64)> {
        self.current_gen()
            .filter(|g| g.exited().is_none())
            .map(|g| (g.pid, g.version.clone(), g.number))
    }

    fn current_gen(&self) -> Option<Arc<Generation>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Start a generation for `version` (the release `current` points to), wait until it is
    /// ready, then stop the previous generation gracefully. On failure the new generation is
    /// killed and the previous one keeps serving. `why` is reported with the restart.
    pub async fn start(self: &Arc<Self>, version: &str, why: Restart) -> anyhow::Result<()> {
        let _op = self.ops.lock().await;
        if self.stopping.load(Ordering::SeqCst) {
            anyhow::bail!("dewy is stopping");
        }
        self.quick_crashes.store(0, Ordering::SeqCst);
        *self.backoff.lock().unwrap_or_else(|p| p.into_inner()) = Duration::from_secs(1);
        let result = self.start_locked(version, why).await;
        let running = self.current_gen().is_some_and(|g| g.exited().is_none());
        if result.is_err() && !running {
            *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = version.to_string();
        }
        result
    }

    async fn start_locked(self: &Arc<Self>, version: &str, why: Restart) -> anyhow::Result<()> {
        let old = self.current_gen().filter(|g| g.exited().is_none());
        let check = self.check();
        let number = self.next.fetch_add(1, Ordering::SeqCst);
        let gen = Generation::spawn(Launch {
            number,
            version,
            command: &self.settings.command,
            cwd: &self.settings.root,
            sockets: &self.sockets,
            run_dir: &self.run_dir,
            probe: matches!(check, Check::Health(_)),
            journal_ident: std::env::var_os("JOURNAL_STREAM")
                .is_some()
                .then_some(self.settings.app.as_str()),
            gated: self.scoped,
        })?;
        if self.scoped {
            self.enclose(&gen, version).await;
        }
        let gen = Arc::new(gen);
        let old_pid = old.as_ref().map(|o| o.pid);
        orphan::record(
            &self.run_dir,
            &old_pid.into_iter().chain([gen.pid]).collect::<Vec<_>>(),
        );
        crate::fault_inject::point("restart", version);
        tracing::info!(pid = gen.pid, generation = number, dewy_version = version, readiness = ?check, "Server process started; waiting until it is ready");
        match gen.wait_ready(&check, self.settings.health_timeout).await {
            Ok(sent_ready) => {
                if sent_ready {
                    self.remember_notify();
                }
            }
            Err(e) => {
                let status = gen.kill().await;
                orphan::record(&self.run_dir, &old_pid.into_iter().collect::<Vec<_>>());
                tracing::error!(pid = gen.pid, generation = number, dewy_version = version, status = %describe(status), error = %format!("{e:#}"), "New server process failed; the previous one keeps serving");
                return Err(e.context(format!("starting {version}")));
            }
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(gen.clone());
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = version.to_string();
        self.watch(gen.clone());
        crate::fault_inject::point("started", version);
        if let Some(old) = &old {
            tracing::info!(
                old_pid = old.pid,
                new_pid = gen.pid,
                dewy_version = version,
                "Restarting server"
            );
            let status = old.stop(self.settings.drain_time).await;
            tracing::info!(pid = old.pid, status = %describe(status), "Previous server process stopped");
        }
        orphan::record(&self.run_dir, &[gen.pid]);
        // A generation replacing a running one, or one that exited on its own, is a restart.
        if old.is_some() || why == Restart::Crash {
            tracing::info!(
                dewy_version = version,
                pid = gen.pid,
                reason = why.as_str(),
                "Server restarted for {version}"
            );
            self.emit(Event::ServerRestarted {
                version: version.to_string(),
                reason: why,
            });
        } else {
            tracing::info!(
                dewy_version = version,
                pid = gen.pid,
                "Server started for {version}"
            );
            self.emit(Event::ServerStarted {
                version: version.to_string(),
            });
        }
        let name = format!("{version} (pid {}, generation {number})", gen.pid);
        crate::systemd::sd_notify::status(&format!("{name} serving"));
        Ok(())
    }

    /// The readiness check for the next generation (`auto` resolved).
    fn check(&self) -> Check {
        let health = || self.settings.health_path.clone().map(Check::Health);
        let alive = Check::Alive(self.settings.alive_delay);
        match self.settings.readiness {
            Readiness::Notify => Check::Notify,
            Readiness::Alive => alive,
            Readiness::Health => health().unwrap_or(alive),
            Readiness::Auto if self.notify_seen() => Check::Notify,
            Readiness::Auto => health().unwrap_or(alive),
        }
    }

    fn notify_marker(&self) -> PathBuf {
        self.settings.state_dir.join("app-sends-ready")
    }

    fn notify_seen(&self) -> bool {
        self.notify_marker().exists()
    }

    fn remember_notify(&self) {
        if !self.notify_seen() {
            if let Err(e) = std::fs::write(self.notify_marker(), b"READY=1 seen\n") {
                tracing::warn!(error = %e, "Could not remember that the app sends READY=1");
            }
        }
    }

    /// When the deployer stops: stop the app for good (SIGTERM, drain, SIGKILL; no process is
    /// left behind), unless it runs in its own unit and systemd is restarting the deployer
    /// (`systemctl restart`, a package upgrade): then it keeps serving for the next deployer.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _op = self.ops.lock().await;
        let in_unit = self
            .current_gen()
            .is_some_and(|g| g.unit.lock().unwrap_or_else(|p| p.into_inner()).is_some());
        if in_unit {
            if let Some(units) = self.units().await {
                if units.deployer_restarting().await {
                    if let Some(gen) = self.current_gen() {
                        tracing::info!(
                            pid = gen.pid,
                            generation = gen.number,
                            "The deployer restarts; the app keeps serving in its unit"
                        );
                    }
                    return;
                }
            }
        }
        let gen = self.current.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(gen) = gen {
            tracing::info!(pid = gen.pid, "Stopping the server");
            let status = gen.stop(self.settings.drain_time).await;
            tracing::info!(pid = gen.pid, status = %describe(status), "Server stopped");
            orphan::clear(&self.run_dir);
        }
    }
}
