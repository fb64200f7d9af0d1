//! The runtime seam: what differs between the three modes (a release tree of files, the same
//! tree with the app run by dewy, or containers behind dewy's proxy) behind one trait that the
//! deploy pipeline calls in one order: fetch, unpack, activate, clean up, and roll back.

mod assets;
mod container;
mod release_tree;
#[cfg(test)]
pub(crate) mod scripted;
mod server;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};

use super::state::{Live, Pending};
use crate::config::{Mode, Settings};
use crate::container::docker::Pulled;
use crate::container::{ProxyControl, Replica};
use crate::failure::DeployFailure;
use crate::notify::EventSink;
use crate::registry::{Registry, Release};
use crate::signature::{Refusal, Verified};

pub use assets::Assets;
pub use container::Containers;
pub use release_tree::ReleaseTree;
pub use server::Server;

/// What a fetch brought in.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// The artifact is in the cache, verified against the published checksum when there is one;
    /// its SHA-256 when known.
    Artifact { sha256: Option<String> },
    /// The image is in the engine.
    Image(Pulled),
}

impl Fetched {
    /// What a bad mark names: the artifact's SHA-256, or the image's digest (its ID without one).
    pub fn digest(&self) -> Option<String> {
        match self {
            Fetched::Artifact { sha256 } => sha256.clone(),
            Fetched::Image(p) => p.digest.clone().or_else(|| Some(p.id.clone())),
        }
    }
}

/// Where a prepared release is.
#[derive(Debug, Clone)]
pub enum Place {
    /// An extracted release directory under `releases/`.
    Dir(PathBuf),
    /// A pulled image.
    Image(Pulled),
}

/// A release made ready to go live.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The name the state records as the live release: the release directory's name, or the
    /// image reference.
    pub name: String,
    /// The artifact's SHA-256 or the image digest, when known.
    pub digest: Option<String>,
    /// Where the hooks run.
    pub hook_dir: PathBuf,
    pub place: Place,
}

/// What a runtime serves now, for `dewy status` and the `STATUS=` line.
#[derive(Debug, Clone, Default)]
pub struct Description {
    /// Server mode: `pid 4242 (generation 3) serving`.
    pub serving: Option<String>,
    /// Container mode: the replicas in the proxy.
    pub replicas: Vec<Replica>,
}

/// An operation the runtime of this mode does not have (`dewy restart` in assets mode…).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Asked of a mode that has no such thing.
    #[error("{0}")]
    WrongMode(String),
    /// The operation failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// What one mode does at each step of a deploy. The pipeline in `deploy/` owns the order, the
/// state, the hooks, the notifications and what a failure marks; a runtime owns the files,
/// processes or containers.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// The mode this runtime serves.
    fn mode(&self) -> Mode;

    /// The release tree of the file modes (assets and server). The steps below that only the
    /// tree is concerned with (`recover`, `holds`, `fetch`, `unpack`, `discard`, `clean_up`,
    /// `roll_back`) are its own by default; a runtime without one overrides each of them.
    fn release_tree(&self) -> Option<&ReleaseTree> {
        None
    }

    /// At start, before anything else: repair what a deploy cut short left behind. `pending` is
    /// the deploy recorded as running; `known` names the releases the state refers to. True when
    /// `pending` had already been made live (its release is what serves).
    fn recover(&self, pending: Option<&Pending>, known: &[&str]) -> anyhow::Result<bool> {
        match self.release_tree() {
            Some(tree) => tree.recover(pending, known),
            None => Err(no_tree(self.mode())),
        }
    }

    /// At start: take up the live release (start its app, adopt its containers).
    async fn adopt(&self, live: Option<&str>) -> anyhow::Result<()>;

    /// Before a deploy or rollback: catch up on what could not be done at start.
    async fn catch_up(&self, _live: Option<&str>) {}

    /// True when what the runtime would serve is still `live` (the `current` link names it).
    fn holds(&self, live: &Live) -> bool {
        self.release_tree().is_some_and(|tree| tree.holds(live))
    }

    /// False when the live release is not running and should be deployed again: no app
    /// generation was ever started, no replica is in the proxy.
    fn running(&self) -> bool;

    /// Bring the release in: the artifact into the cache (verified), or the image pulled.
    async fn fetch(&self, release: &Release, key: &str) -> Result<Fetched, DeployFailure> {
        match self.release_tree() {
            Some(tree) => tree.fetch(release, key).await,
            None => Err(DeployFailure::transient(no_tree(self.mode()))),
        }
    }

    /// Make the fetched release ready to go live (extract it); nothing serves it yet.
    async fn unpack(
        &self,
        release: &Release,
        key: &str,
        fetched: Fetched,
    ) -> Result<Prepared, DeployFailure> {
        match self.release_tree() {
            Some(tree) => tree.unpack(release, key, fetched).await,
            None => Err(DeployFailure::transient(no_tree(self.mode()))),
        }
    }

    /// Throw away a prepared release that will not go live.
    fn discard(&self, prepared: &Prepared) {
        if let Some(tree) = self.release_tree() {
            tree.discard(prepared)
        }
    }

    /// Make `prepared` serve in place of `previous`. On failure, `previous` serves as before and
    /// `prepared` is gone.
    async fn activate(
        &self,
        release: &Release,
        prepared: &Prepared,
        previous: Option<&Live>,
    ) -> Result<(), DeployFailure>;

    /// After a deploy: prune what is neither `live` nor `previous` beyond the configured counts.
    async fn clean_up(&self, _prepared: &Prepared, keep: &[&Live]) {
        if let Some(tree) = self.release_tree() {
            tree.prune(keep)
        }
    }

    /// Make `previous` serve again in place of `live`. The error says what failed; `live` still
    /// serves then.
    async fn roll_back(&self, _live: &Live, previous: &Live) -> anyhow::Result<()> {
        match self.release_tree() {
            Some(tree) => tree.switch_back(previous),
            None => Err(no_tree(self.mode())),
        }
    }

    /// After a rollback is recorded: start what serves `previous` (server mode's app).
    async fn after_roll_back(&self, _previous: &Live) {}

    /// When the deployer stops: stop or leave what runs, as configured.
    async fn stop(&self);

    /// What serves now.
    fn describe(&self) -> Description {
        Description::default()
    }

    /// Server mode: a new generation of the app for `version` without a deploy.
    async fn restart(&self, _version: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::WrongMode(format!(
            "there is no app to restart in {} mode",
            self.mode()
        )))
    }

    /// Server mode: the versions found crash-looping (the first call gets the receiver).
    fn crash_loops(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        None
    }

    /// Server mode: in a crash loop now.
    fn crash_looping(&self) -> bool {
        false
    }

    /// Container mode: (desired, running) replicas.
    fn replica_counts(&self) -> Option<(usize, usize)> {
        None
    }

    /// Container mode: the running containers as (name, upstream, deploy time, version).
    async fn containers(&self) -> Result<Vec<(String, String, String, String)>, RuntimeError> {
        Err(RuntimeError::WrongMode(format!(
            "this app runs in {} mode, not container mode",
            self.mode()
        )))
    }

    /// Container mode: the running containers in detail (the admin API's `/api/containers`);
    /// `None` in the other modes.
    async fn container_details(
        &self,
    ) -> Result<Option<Vec<crate::container::ContainerDetail>>, RuntimeError> {
        Ok(None)
    }

    /// Container mode: where the backends go.
    fn set_proxy(&self, _proxy: Arc<dyn ProxyControl>) {}

    /// Report the runtime's own events (server crashes and restarts) to `sink`.
    fn set_events(&self, _sink: Arc<dyn EventSink>) {}
}

/// What a tree-backed default step says when called on a runtime that has no release tree and
/// did not override it.
fn no_tree(mode: Mode) -> anyhow::Error {
    anyhow!("the {mode} mode runtime has no release tree")
}

/// The outcome of a signature check as a deploy step's result: a refusal fails the step, as
/// passing trouble when the signature could not be fetched or read, else as the release's fault
/// (naming `digest`, the artifact's SHA-256 or the image digest).
pub(crate) fn signature_checked(
    verdict: Result<Verified, Refusal>,
    release: &Release,
    digest: Option<String>,
) -> Result<Verified, DeployFailure> {
    verdict.map_err(|refusal| {
        let error = anyhow!(refusal.clone()).context(format!(
            "signature check of {} ({})",
            release.artifact,
            refusal.kind.as_str()
        ));
        if refusal.is_transient() {
            DeployFailure::transient(error)
        } else {
            DeployFailure::release(error, digest)
        }
    })
}

/// The runtime of the configured mode.
pub fn open(settings: &Settings, registry: Arc<dyn Registry>) -> anyhow::Result<Arc<dyn Runtime>> {
    Ok(match settings.mode {
        Mode::Assets => Arc::new(Assets::new(ReleaseTree::open(settings, registry)?)),
        Mode::Server => Arc::new(Server::new(
            ReleaseTree::open(settings, registry)?,
            crate::supervise::Supervisor::open(settings).context("server mode")?,
        )),
        Mode::Container => Arc::new(Containers::new(
            crate::container::ContainerMode::new(settings).context("container mode")?,
            settings.root.clone(),
            registry,
            settings.verify.clone(),
        )),
    })
}
