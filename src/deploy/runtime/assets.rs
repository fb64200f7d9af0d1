//! Assets mode: the release tree only. Activating a release is switching `current`; nothing runs.

use async_trait::async_trait;

use super::release_tree::ReleaseTree;
use super::{Fetched, Prepared, Runtime};
use crate::config::Mode;
use crate::deploy::state::{Live, Pending};
use crate::deploy::steps;
use crate::failure::DeployFailure;
use crate::registry::Release;

/// Files placed under `releases/`, `current` pointing at the live one.
pub struct Assets {
    tree: ReleaseTree,
}

impl Assets {
    pub fn new(tree: ReleaseTree) -> Self {
        Self { tree }
    }
}

#[async_trait]
impl Runtime for Assets {
    fn mode(&self) -> Mode {
        Mode::Assets
    }

    fn recover(&self, pending: Option<&Pending>, known: &[&str]) -> anyhow::Result<bool> {
        self.tree.recover(pending, known)
    }

    async fn adopt(&self, _live: Option<&str>) -> anyhow::Result<()> {
        Ok(())
    }

    fn holds(&self, live: &Live) -> bool {
        self.tree.holds(live)
    }

    fn running(&self) -> bool {
        true
    }

    async fn fetch(&self, release: &Release, key: &str) -> Result<Fetched, DeployFailure> {
        self.tree.fetch(release, key).await
    }

    async fn unpack(
        &self,
        release: &Release,
        key: &str,
        fetched: Fetched,
    ) -> Result<Prepared, DeployFailure> {
        self.tree.unpack(release, key, fetched).await
    }

    fn discard(&self, prepared: &Prepared) {
        self.tree.discard(prepared)
    }

    async fn activate(
        &self,
        release: &Release,
        prepared: &Prepared,
        _previous: Option<&Live>,
    ) -> Result<(), DeployFailure> {
        steps::timed_sync("switch", || self.tree.switch(release, prepared)).map(|_| ())
    }

    async fn clean_up(&self, _prepared: &Prepared, keep: &[&Live]) {
        self.tree.prune(keep)
    }

    async fn roll_back(&self, _live: &Live, previous: &Live) -> anyhow::Result<()> {
        self.tree.switch_back(previous)
    }

    async fn stop(&self) {}
}
