//! Container mode: images pulled into the engine, replicas replaced by a rolling update behind
//! dewy's proxy, adopted again after a restart of the deployer.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use async_trait::async_trait;

use super::{signature_checked, Description, Fetched, Place, Prepared, Runtime, RuntimeError};
use crate::config::Mode;
use crate::container::{ContainerMode, ProxyControl};
use crate::deploy::state::{Live, Pending};
use crate::deploy::steps;
use crate::failure::DeployFailure;
use crate::registry::{Registry, Release};
use crate::signature::{self, TrustedKey};

/// The app's containers and the proxy in front of them.
pub struct Containers {
    c: Arc<ContainerMode>,
    /// Where hooks run (the app's root: there is no release directory).
    root: PathBuf,
    /// The image source: its cosign signatures are read from it.
    registry: Arc<dyn Registry>,
    /// Keys trusted to sign images (`verify`); empty: images are not checked.
    keys: Vec<TrustedKey>,
}

impl Containers {
    pub fn new(
        c: Arc<ContainerMode>,
        root: PathBuf,
        registry: Arc<dyn Registry>,
        keys: Vec<TrustedKey>,
    ) -> Self {
        Self {
            c,
            root,
            registry,
            keys,
        }
    }

    /// Before the pull: the image manifest about to run must carry a cosign signature by a
    /// trusted key whose payload names that very digest.
    async fn verify_image(&self, release: &Release) -> Result<(), DeployFailure> {
        let Some((image, digest)) = release.artifact_url.rsplit_once('@') else {
            return Err(DeployFailure::release(
                anyhow!(
                    "{} is not pinned by digest, so its signature cannot be checked",
                    release.artifact_url
                ),
                None,
            ));
        };
        let signatures = self
            .registry
            .image_signatures(digest)
            .await
            .with_context(|| format!("reading the cosign signatures of {image}@{digest}"))
            .map_err(DeployFailure::transient)?;
        let verdict = signature::verify_image(&self.keys, image, digest, &signatures);
        let verified = signature_checked(verdict, release, Some(digest.to_string()))?;
        tracing::info!(dewy_version = %release.version, image = %release.artifact_url, signature = %verified, "Signature verified");
        Ok(())
    }
}

#[async_trait]
impl Runtime for Containers {
    fn mode(&self) -> Mode {
        Mode::Container
    }

    /// Containers of an interrupted deploy are not of the live version: adoption removes them.
    fn recover(&self, _pending: Option<&Pending>, _known: &[&str]) -> anyhow::Result<bool> {
        Ok(false)
    }

    async fn adopt(&self, live: Option<&str>) -> anyhow::Result<()> {
        match self.c.adopt(live).await {
            Ok(n) => {
                tracing::info!(count = n, dewy_version = %live.unwrap_or_default(), "Found existing containers")
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "Adopting the running containers failed; the next check tries the proxy again")
            }
        }
        Ok(())
    }

    async fn catch_up(&self, live: Option<&str>) {
        self.c.catch_up(live).await
    }

    /// The containers carry their version in a label: adoption checks them, not a link.
    fn holds(&self, _live: &Live) -> bool {
        true
    }

    fn running(&self) -> bool {
        self.c.replica_count() > 0
    }

    async fn fetch(&self, release: &Release, _key: &str) -> Result<Fetched, DeployFailure> {
        if !self.keys.is_empty() {
            steps::timed("verify", self.verify_image(release)).await?;
        }
        let pulled = steps::timed("pull", self.c.pull(release)).await?;
        Ok(Fetched::Image(pulled))
    }

    async fn unpack(
        &self,
        _release: &Release,
        _key: &str,
        fetched: Fetched,
    ) -> Result<Prepared, DeployFailure> {
        let digest = fetched.digest();
        let Fetched::Image(pulled) = fetched else {
            return Err(DeployFailure::transient(anyhow!(
                "container mode runs images, not artifacts"
            )));
        };
        Ok(Prepared {
            name: pulled.reference.clone(),
            digest,
            hook_dir: self.root.clone(),
            place: Place::Image(pulled),
        })
    }

    /// The image stays in the engine; `keep-images` prunes it after a later deploy.
    fn discard(&self, _prepared: &Prepared) {}

    async fn activate(
        &self,
        release: &Release,
        prepared: &Prepared,
        _previous: Option<&Live>,
    ) -> Result<(), DeployFailure> {
        let Place::Image(pulled) = &prepared.place else {
            return Err(DeployFailure::transient(anyhow!(
                "{} is not an image",
                prepared.name
            )));
        };
        let replicas = steps::timed("rollout", self.c.roll(release, pulled)).await?;
        tracing::info!(
            dewy_version = %release.version,
            replicas = replicas.len(),
            desired = self.c.desired_replicas(),
            "Replicas replaced"
        );
        Ok(())
    }

    async fn clean_up(&self, prepared: &Prepared, _keep: &[&Live]) {
        let (repository, _) = crate::container::docker::split_reference(&prepared.name);
        self.c.cleanup(&repository).await
    }

    /// The previous release's image (pulled again if the engine lost it) replaces the live one
    /// by the same rolling update.
    async fn roll_back(&self, _live: &Live, previous: &Live) -> anyhow::Result<()> {
        let release = Release {
            version: previous.version.clone(),
            artifact: previous.release.clone(),
            artifact_url: previous.artifact_url.clone(),
            checksum_url: None,
            published_at: None,
            signatures: Vec::new(),
        };
        let rolled = async {
            let pulled = self.c.pull_if_missing(&release).await?;
            self.c.roll(&release, &pulled).await
        }
        .await;
        rolled.map(|_| ()).map_err(|e| e.error)
    }

    async fn stop(&self) {
        self.c.shutdown().await
    }

    fn describe(&self) -> Description {
        Description {
            serving: None,
            replicas: self.c.replicas(),
        }
    }

    fn replica_counts(&self) -> Option<(usize, usize)> {
        Some((self.c.desired_replicas(), self.c.replica_count()))
    }

    async fn containers(&self) -> Result<Vec<(String, String, String, String)>, RuntimeError> {
        Ok(self.c.list().await?)
    }

    async fn container_details(
        &self,
    ) -> Result<Option<Vec<crate::container::ContainerDetail>>, RuntimeError> {
        Ok(Some(self.c.details().await?))
    }

    fn set_proxy(&self, proxy: Arc<dyn ProxyControl>) {
        self.c.set_proxy(proxy)
    }
}
