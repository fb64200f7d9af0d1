//! Container mode's deploy: pull, hooks, the rolling update and the state that records it.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::state::Live;
use super::{DeployResult, Deployer, Trigger};
use crate::container::ContainerMode;
use crate::failure::DeployFailure;
use crate::logging::{MSG_DEPLOY, MSG_ROLLBACK};
use crate::notify::Event;
use crate::registry::Release;

impl Deployer {
    pub(super) async fn deploy_container(
        &self,
        c: &Arc<ContainerMode>,
        release: &Release,
        key: &str,
        trigger: Trigger,
        started: Instant,
    ) -> Result<String, DeployFailure> {
        let version = &release.version;
        let pulled = c.pull(release).await?;
        tracing::info!(
            dewy_version = %version,
            notification = %format!("Pulled image for {version}"),
            "Image pull notification"
        );
        self.emit(Event::ImagePulled {
            version: version.clone(),
            image: release.artifact.clone(),
        });
        let reason = trigger.reason();
        let prev_version = self.live_version();
        let digest = pulled.digest.clone().or_else(|| Some(pulled.id.clone()));
        self.begin(release, key, digest.clone(), reason, prev_version.as_deref())
            .map_err(DeployFailure::transient)?;
        let root = self.settings.root.clone();
        let hook_env = self.hook_env(version, prev_version.as_deref(), &root);
        if let Err(e) = self.before_hook(&root, &hook_env, version).await {
            let _ = self.update_state(|st| st.pending = None);
            return Err(DeployFailure::transient(e));
        }
        let replicas = c.roll(release, &pulled).await?;
        let live = Live {
            version: version.clone(),
            cache_key: key.to_string(),
            artifact_url: release.artifact_url.clone(),
            release: pulled.reference.clone(),
            sha256: digest,
            deployed_at: Utc::now(),
        };
        self.complete(live, prev_version.clone(), reason, started, &root, hook_env)
            .await
            .map_err(DeployFailure::transient)?;
        let (repository, _) = crate::container::docker::split_reference(&pulled.reference);
        c.cleanup(&repository).await;
        tracing::info!(
            message_id = MSG_DEPLOY,
            dewy_version = %version,
            replicas = replicas.len(),
            desired = c.desired_replicas(),
            duration_ms = started.elapsed().as_millis() as u64,
            "Deploy completed"
        );
        self.emit(Event::Deployed {
            version: version.clone(),
            previous: prev_version,
            duration: started.elapsed(),
            command: self.settings.mode.to_string(),
        });
        Ok(pulled.reference)
    }

    /// `dewy rollback` in container mode: the previous release's image replaces the live one by
    /// the same rolling update; the version rolled back from is marked bad.
    pub(super) async fn container_rollback(&self, c: &Arc<ContainerMode>, reason: &str) -> DeployResult {
        c.catch_up(self.live_version().as_deref()).await;
        let (live, previous) = match self.rollback_pair() {
            Ok(pair) => pair,
            Err(failed) => return failed,
        };
        let release = Release {
            version: previous.version.clone(),
            artifact: previous.release.clone(),
            artifact_url: previous.artifact_url.clone(),
            checksum_url: None,
            published_at: None,
            signatures: Vec::new(),
        };
        self.set_activity(format!("rolling back to {}", previous.version));
        let rolled = async {
            let pulled = c.pull_if_missing(&release).await?;
            c.roll(&release, &pulled).await
        }
        .await;
        self.set_activity("idle".into());
        if let Err(e) = rolled {
            let next_step = format!(
                "{} keeps serving; fix the cause and run `dewy rollback {}` again",
                live.version, self.settings.app
            );
            return self.rollback_failed(previous, format!("{:#}", e.error), next_step);
        }
        tracing::warn!(
            message_id = MSG_ROLLBACK,
            dewy_version = %previous.version,
            from = %live.version,
            reason,
            "Rolled back"
        );
        self.finish_rollback(&live, previous, reason)
    }
}
