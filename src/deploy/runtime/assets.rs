//! Assets mode: the release tree only. Activating a release is switching `current`; nothing runs.

use async_trait::async_trait;

use super::release_tree::ReleaseTree;
use super::{Prepared, Runtime};
use crate::config::Mode;
use crate::deploy::state::Live;
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

    fn release_tree(&self) -> Option<&ReleaseTree> {
        Some(&self.tree)
    }

    async fn adopt(&self, _live: Option<&str>) -> anyhow::Result<()> {
        Ok(())
    }

    fn running(&self) -> bool {
        true
    }

    async fn activate(
        &self,
        release: &Release,
        prepared: &Prepared,
        _previous: Option<&Live>,
    ) -> Result<(), DeployFailure> {
        steps::timed_sync("switch", || self.tree.switch(release, prepared)).map(|_| ())
    }

    async fn stop(&self) {}
}
