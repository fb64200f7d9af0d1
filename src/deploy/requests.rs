//! What the watcher and the operators ask of the deployer: a found release offered or a
//! version nominated (over D-Bus), an operator's `dewy deploy VERSION`, `dewy rollback` and
//! `dewy forget-bad`; each waits for the deploy running, then goes through the pipeline.

use super::{DeployResult, Deployer, Overrides, Trigger};
use crate::notify::Event;
use crate::registry::Release;

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
    let shown = crate::text::shown(version);
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

impl Deployer {
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
}
