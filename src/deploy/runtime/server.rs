//! Server mode: the release tree, plus the app dewy runs from `current` with overlapping
//! generations. Activating a release is switching `current` and starting a generation of it.

use std::sync::Arc;

use async_trait::async_trait;

use super::release_tree::ReleaseTree;
use super::{Description, Prepared, Runtime, RuntimeError};
use crate::config::Mode;
use crate::deploy::state::Live;
use crate::deploy::steps;
use crate::failure::DeployFailure;
use crate::notify::EventSink;
use crate::registry::Release;
use crate::supervise::{Restart, Supervisor};

/// The release tree and the supervised app.
pub struct Server {
    tree: ReleaseTree,
    app: Arc<Supervisor>,
}

impl Server {
    pub fn new(tree: ReleaseTree, app: Arc<Supervisor>) -> Self {
        Self { tree, app }
    }
}

#[async_trait]
impl Runtime for Server {
    fn mode(&self) -> Mode {
        Mode::Server
    }

    fn release_tree(&self) -> Option<&ReleaseTree> {
        Some(&self.tree)
    }

    async fn adopt(&self, live: Option<&str>) -> anyhow::Result<()> {
        let Some(version) = live else {
            tracing::info!("No release is live yet; the server starts with the first deploy");
            return Ok(());
        };
        // Under systemd a generation an earlier deployer started may still serve in its unit.
        match self.app.adopt(version).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Looking for a running app generation failed; starting one")
            }
        }
        self.app.start(version, Restart::Deploy).await
    }

    fn running(&self) -> bool {
        self.app.supervising()
    }

    /// Switch `current`, then start a generation of the new release; when it does not get
    /// ready, `current` goes back and the old generation keeps serving.
    async fn activate(
        &self,
        release: &Release,
        prepared: &Prepared,
        previous: Option<&Live>,
    ) -> Result<(), DeployFailure> {
        let dir = steps::timed_sync("switch", || self.tree.switch(release, prepared))?;
        let started = steps::timed("restart", self.app.start(&release.version, Restart::Deploy)).await;
        if let Err(e) = started {
            self.tree.undo_switch(previous, &dir);
            return Err(DeployFailure::release(e, prepared.digest.clone()));
        }
        Ok(())
    }

    /// Start the rolled-back release; when it fails the supervisor keeps retrying it (it is
    /// what `current` points to) and the crash-loop rules take over.
    async fn after_roll_back(&self, previous: &Live) {
        if let Err(e) = self.app.start(&previous.version, Restart::Rollback).await {
            tracing::error!(dewy_version = %previous.version, error = %format!("{e:#}"), "Server failure after rollback");
        }
    }

    async fn stop(&self) {
        self.app.stop().await
    }

    fn describe(&self) -> Description {
        Description {
            serving: self
                .app
                .live()
                .map(|(pid, _, number)| format!("pid {pid} (generation {number}) serving")),
            replicas: Vec::new(),
        }
    }

    async fn restart(&self, version: &str) -> Result<(), RuntimeError> {
        Ok(self.app.start(version, Restart::Operator).await?)
    }

    fn crash_loops(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.app.crash_loops()
    }

    fn crash_looping(&self) -> bool {
        self.app.crash_looping()
    }

    fn set_events(&self, sink: Arc<dyn EventSink>) {
        self.app.set_events(sink)
    }
}
