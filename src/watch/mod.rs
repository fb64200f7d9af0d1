//! The watcher: polls the registry on an interval (with jitter), applies the grace period and
//! offers new releases to the deployer, in-process or over D-Bus.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;

use crate::deploy::DeployResult;
use crate::logging::{MSG_CHECK, MSG_FAILURE, MSG_SKIP};
use crate::notify::{Event, EventSink, Stage};
use crate::registry::{CheckError, Registry, Release};
use crate::units::format_duration;

/// Something releases can be offered to: the deployer itself, or its D-Bus client.
#[async_trait::async_trait]
pub trait DeployTarget: Send + Sync {
    async fn offer(&self, release: Release) -> anyhow::Result<DeployResult>;
}

/// The result of one check, as `dewy check-now` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// `deployed`, `skipped`, `failed`, `grace-period`, `rate-limited` or `error`.
    pub outcome: String,
    pub version: String,
    pub detail: String,
}

/// What `dewy status` shows about the watcher (sent over the bus as JSON, read back by the CLI).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WatchStatus {
    pub registry: String,
    pub last_check: Option<DateTime<Utc>>,
    pub next_check: Option<DateTime<Utc>>,
    pub latest: Option<String>,
    pub last: Option<CheckReport>,
    pub checks: u64,
    pub errors: u64,
}

/// Polls one app's registry.
pub struct Watcher {
    registry: Arc<dyn Registry>,
    target: Arc<dyn DeployTarget>,
    interval: Duration,
    grace_period: Duration,
    wake: Notify,
    checking: tokio::sync::Mutex<()>,
    status: Mutex<WatchStatus>,
    backoff_until: Mutex<Option<tokio::time::Instant>>,
    /// The app name (for the hints in failure messages) and where events go.
    events: OnceLock<(String, Arc<dyn EventSink>)>,
}

impl Watcher {
    pub fn new(
        registry_url: &str,
        registry: Arc<dyn Registry>,
        target: Arc<dyn DeployTarget>,
        interval: Duration,
        grace_period: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry,
            target,
            interval,
            grace_period,
            wake: Notify::new(),
            checking: tokio::sync::Mutex::new(()),
            status: Mutex::new(WatchStatus {
                registry: registry_url.to_string(),
                ..Default::default()
            }),
            backoff_until: Mutex::new(None),
            events: OnceLock::new(),
        })
    }

    /// Report check events to `sink` (notifiers, metrics); only the first call counts.
    /// `app` names the app in the operator hints of failure messages.
    pub fn set_events(&self, app: &str, sink: Arc<dyn EventSink>) {
        let _ = self.events.set((app.to_string(), sink));
    }

    fn emit(&self, event: Event) {
        if let Some((_, sink)) = self.events.get() {
            sink.emit(event);
        }
    }

    fn app(&self) -> &str {
        self.events.get().map_or("APP", |(app, _)| app.as_str())
    }

    fn check_failed(&self, version: Option<String>, error: String, next_step: String) {
        self.emit(Event::Failed {
            stage: Stage::Check,
            version,
            error,
            next_step,
            command: String::new(),
        });
    }

    /// A snapshot for `dewy status`.
    pub fn status(&self) -> WatchStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Run a check now (`dewy check-now`) and return its result.
    pub async fn check_now(&self) -> CheckReport {
        self.check().await
    }

    /// Poll until the task is dropped: first check at once, then every interval (±10 %).
    pub async fn run(self: Arc<Self>) {
        loop {
            self.check().await;
            let wait = self.next_wait();
            if let Ok(mut s) = self.status.lock() {
                s.next_check = chrono::Duration::from_std(wait).ok().map(|d| Utc::now() + d);
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    fn next_wait(&self) -> Duration {
        let jitter = 0.9 + fastrand::f64() * 0.2;
        let base = self.interval.mul_f64(jitter);
        let backoff = self
            .backoff_until
            .lock()
            .ok()
            .and_then(|b| *b)
            .map(|until| until.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or_default();
        base.max(backoff)
    }

    /// One check: newest release → grace period → offer to the deployer.
    pub async fn check(&self) -> CheckReport {
        let _guard = self.checking.lock().await;
        let report = self.check_inner().await;
        if let Ok(mut s) = self.status.lock() {
            s.checks += 1;
            s.last_check = Some(Utc::now());
            if matches!(report.outcome.as_str(), "error" | "failed" | "rate-limited") {
                s.errors += 1;
            }
            if !report.version.is_empty() {
                s.latest = Some(report.version.clone());
            }
            s.last = Some(report.clone());
        }
        report
    }

    async fn check_inner(&self) -> CheckReport {
        let release = match self.registry.latest().await {
            Ok(r) => r,
            Err(CheckError::ArtifactNotFound {
                version,
                published_at,
            }) => {
                return self.artifact_missing(version, published_at);
            }
            Err(CheckError::RateLimited { retry_after }) => {
                if let Ok(mut b) = self.backoff_until.lock() {
                    // A registry's Retry-After is not trusted to be sane: capped, never an overflow.
                    let wait = retry_after.min(Duration::from_secs(24 * 3600));
                    *b = tokio::time::Instant::now().checked_add(wait);
                }
                tracing::warn!(
                    message_id = MSG_FAILURE,
                    retry_after = %format_duration(retry_after),
                    "Registry rate limit reached; waiting before the next check"
                );
                self.check_failed(
                    None,
                    "the registry's rate limit is reached".into(),
                    format!(
                        "dewy waits {} before the next check; give dewy a token (e.g. GITHUB_TOKEN) or a longer interval",
                        format_duration(retry_after)
                    ),
                );
                return report(
                    "rate-limited",
                    "",
                    format!("retry after {}", format_duration(retry_after)),
                );
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(message_id = MSG_FAILURE, error = %error, "Current failure");
                self.check_failed(
                    None,
                    error.clone(),
                    format!(
                        "dewy retries at every check; verify the registry URL, its credentials and the network (`dewy check-now {}` to retry now)",
                        self.app()
                    ),
                );
                return report("error", "", error);
            }
        };
        tracing::debug!(
            message_id = MSG_CHECK,
            dewy_version = %release.version,
            artifact = %release.artifact,
            "Found latest release"
        );
        let version = release.version.clone();
        self.emit(Event::CheckSucceeded {
            version: version.clone(),
        });
        match self.target.offer(release).await {
            Ok(DeployResult::Deployed { version, release }) => report("deployed", &version, release),
            Ok(DeployResult::Skipped { version, reason }) => report("skipped", &version, reason),
            Ok(DeployResult::Failed { version, error }) => report("failed", &version, error),
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(message_id = MSG_FAILURE, dewy_version = %version, error = %error, "Offering the release to the deployer failed");
                self.check_failed(
                    Some(version.clone()),
                    error.clone(),
                    format!(
                        "the deployer did not answer; check it runs (`systemctl status dewy@{}`)",
                        self.app()
                    ),
                );
                report("error", &version, error)
            }
        }
    }

    fn artifact_missing(&self, version: String, published_at: Option<DateTime<Utc>>) -> CheckReport {
        let grace = format_duration(self.grace_period);
        let within = published_at
            .is_some_and(|t| chrono::Duration::from_std(self.grace_period).is_ok_and(|g| Utc::now() - t < g));
        if within {
            tracing::debug!(
                message_id = MSG_SKIP,
                dewy_version = %version,
                reason = "artifact not found",
                grace_period = %grace,
                "Artifact not found within grace period"
            );
            report(
                "grace-period",
                &version,
                format!("artifact not found; within the {grace} grace period"),
            )
        } else {
            let error = format!("artifact for {version} not found (past the {grace} grace period)");
            tracing::error!(message_id = MSG_FAILURE, dewy_version = %version, error = %error, "Artifact not found");
            self.check_failed(
                Some(version.clone()),
                error.clone(),
                "upload the artifact to the release, or remove the release so an older one is newest".into(),
            );
            report("error", &version, error)
        }
    }
}

fn report(outcome: &str, version: &str, detail: impl Into<String>) -> CheckReport {
    CheckReport {
        outcome: outcome.to_string(),
        version: version.to_string(),
        detail: detail.into(),
    }
}
