//! A runtime for pipeline tests: it records each step it is asked for and fails the one a test
//! names with the fault the test chooses, so the pipeline's decisions (what is marked bad, what
//! is retried, what the state records) are tested without files to extract, processes or Docker.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::anyhow;
use async_trait::async_trait;

use super::{Fetched, Place, Prepared, Runtime};
use crate::config::Mode;
use crate::deploy::state::{Live, Pending};
use crate::failure::{DeployFailure, Fault};
use crate::registry::Release;

/// A step a test can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Fetch,
    Unpack,
    Activate,
    RollBack,
}

/// The scripted runtime.
pub struct Scripted {
    dir: PathBuf,
    calls: Mutex<Vec<String>>,
    fail: Mutex<Option<(Step, Fault)>>,
    /// What serves now (a release name).
    serving: Mutex<Option<String>>,
    /// What `recover` answers for a pending deploy.
    pending_was_live: AtomicBool,
    running: AtomicBool,
}

impl Scripted {
    /// A runtime whose release "directories" are made under `dir` (hooks run there).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            calls: Mutex::new(Vec::new()),
            fail: Mutex::new(None),
            serving: Mutex::new(None),
            pending_was_live: AtomicBool::new(false),
            running: AtomicBool::new(true),
        }
    }

    /// Make `step` fail once with `fault`.
    pub fn fail(&self, step: Step, fault: Fault) {
        *self.fail.lock().unwrap_or_else(|p| p.into_inner()) = Some((step, fault));
    }

    /// The steps called so far, as `step version` lines.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The release name serving now.
    pub fn serving(&self) -> Option<String> {
        self.serving.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the next `recover` says about a pending deploy.
    pub fn set_pending_was_live(&self, live: bool) {
        self.pending_was_live.store(live, Ordering::SeqCst);
    }

    /// Whether the live release runs.
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::SeqCst);
    }

    fn step(&self, step: Step, what: &str) -> Result<(), DeployFailure> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{step:?} {what}").to_lowercase());
        let mut fail = self.fail.lock().unwrap_or_else(|p| p.into_inner());
        match *fail {
            Some((s, fault)) if s == step => {
                *fail = None;
                let error = anyhow!("{step:?} failed as scripted");
                Err(match fault {
                    Fault::Release => DeployFailure::release(error, Some("feed".into())),
                    Fault::Host => DeployFailure::transient(
                        anyhow::Error::from(std::io::Error::from_raw_os_error(libc::ENOSPC))
                            .context(format!("{step:?} failed as scripted")),
                    ),
                    Fault::Transient => DeployFailure::transient(error),
                })
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Runtime for Scripted {
    fn mode(&self) -> Mode {
        Mode::Assets
    }

    fn recover(&self, pending: Option<&Pending>, _known: &[&str]) -> anyhow::Result<bool> {
        Ok(pending.is_some() && self.pending_was_live.load(Ordering::SeqCst))
    }

    async fn adopt(&self, _live: Option<&str>) -> anyhow::Result<()> {
        Ok(())
    }

    fn holds(&self, live: &Live) -> bool {
        self.serving().as_deref() == Some(live.release.as_str())
    }

    fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    async fn fetch(&self, release: &Release, _key: &str) -> Result<Fetched, DeployFailure> {
        self.step(Step::Fetch, &release.version)?;
        Ok(Fetched::Artifact {
            sha256: Some(format!("sha-{}", release.version)),
        })
    }

    async fn unpack(
        &self,
        release: &Release,
        _key: &str,
        fetched: Fetched,
    ) -> Result<Prepared, DeployFailure> {
        self.step(Step::Unpack, &release.version)?;
        let name = format!("r-{}", release.version);
        let dir = self.dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| DeployFailure::transient(e.into()))?;
        Ok(Prepared {
            name,
            digest: fetched.digest(),
            hook_dir: dir.clone(),
            place: Place::Dir(dir),
        })
    }

    fn discard(&self, prepared: &Prepared) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("discard {}", prepared.name));
    }

    async fn activate(
        &self,
        release: &Release,
        prepared: &Prepared,
        _previous: Option<&Live>,
    ) -> Result<(), DeployFailure> {
        self.step(Step::Activate, &release.version)?;
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(prepared.name.clone());
        Ok(())
    }

    async fn clean_up(&self, prepared: &Prepared, _keep: &[&Live]) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("clean_up {}", prepared.name));
    }

    async fn roll_back(&self, _live: &Live, previous: &Live) -> anyhow::Result<()> {
        self.step(Step::RollBack, &previous.version)
            .map_err(|f| f.error)?;
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(previous.release.clone());
        Ok(())
    }

    async fn stop(&self) {}
}
