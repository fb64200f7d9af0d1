//! FleetLock, the HTTP protocol Zincati speaks: `POST /v1/pre-reboot` before a deploy takes a
//! slot of the group's semaphore, `POST /v1/steady-state` once the release is healthy (after the
//! after-deploy hook) gives it back. A host that cannot get a slot does not deploy, says why, and
//! keeps serving; a slot held across a crash is given back when the deployer starts again. The
//! [`Deployer`] side below serves both engines of [`super::rollout_lock::RolloutLock`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::Deployer;
use crate::config::fleet_lock::FleetLock;
use crate::logging::MSG_SKIP;

/// How long one call to the lock server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of an error answer read and shown.
const ANSWER_LIMIT: usize = 2048;

/// Why a lock call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    /// The server answered, and not with success (no free slot, a bad request…).
    Refused(String),
    /// The server could not be asked.
    Unreachable(String),
}

/// The error body of the protocol: `{"kind": "failed_lock", "value": "semaphore is full"}`.
#[derive(Deserialize)]
struct ErrorBody {
    kind: String,
    value: String,
}

/// A FleetLock client for one deployer (its group and id).
pub struct FleetLockClient {
    http: reqwest::Client,
    pre_reboot: url::Url,
    steady_state: url::Url,
    body: serde_json::Value,
    /// `https://lock.example.com/ (group web, id host-1-web)`, for messages.
    pub described: String,
}

impl FleetLockClient {
    pub fn new(cfg: &FleetLock) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .user_agent(concat!("dewy/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("creating the fleet lock's HTTP client")?;
        Ok(Self {
            http,
            pre_reboot: cfg.url.join("v1/pre-reboot").context("the fleet lock URL")?,
            steady_state: cfg.url.join("v1/steady-state").context("the fleet lock URL")?,
            body: serde_json::json!({ "client_params": { "id": cfg.id, "group": cfg.group } }),
            described: format!("{} (group {}, id {})", cfg.url, cfg.group, cfg.id),
        })
    }

    /// Take a slot (held already by this id: fine).
    pub async fn pre_reboot(&self) -> Result<(), LockError> {
        self.call(&self.pre_reboot).await
    }

    /// Give the slot back (none held: fine).
    pub async fn steady_state(&self) -> Result<(), LockError> {
        self.call(&self.steady_state).await
    }

    async fn call(&self, url: &url::Url) -> Result<(), LockError> {
        let mut resp = self
            .http
            .post(url.clone())
            .header("fleet-lock-protocol", "true")
            .json(&self.body)
            .send()
            .await
            .map_err(|e| LockError::Unreachable(format!("{url}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let mut answer = Vec::new();
        while answer.len() < ANSWER_LIMIT {
            match resp.chunk().await {
                Ok(Some(c)) => answer.extend_from_slice(&c),
                _ => break,
            }
        }
        answer.truncate(ANSWER_LIMIT);
        let text = String::from_utf8_lossy(&answer);
        let why = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => format!("{}: {}", b.kind, b.value),
            Err(_) => text.trim().to_string(),
        };
        let why = crate::text::blanked(&why, ANSWER_LIMIT);
        Err(LockError::Refused(format!("{url} answered {status}: {why}")))
    }
}

impl Deployer {
    /// Give back a slot this deployer may still hold (from before a restart, or when giving it
    /// back failed): at start and at each check until the server took the call.
    pub(super) async fn settle_lock(&self) {
        let Some(lock) = &self.fleet_lock else { return };
        if !self.lock_dirty.load(Ordering::Relaxed) {
            return;
        }
        match lock.release().await {
            Ok(()) => {
                self.lock_dirty.store(false, Ordering::Relaxed);
                self.lock_failing.store(false, Ordering::Relaxed);
                tracing::info!(fleet_lock = %lock.described(), "Fleet lock: {}", lock.release_name());
            }
            Err(LockError::Refused(e) | LockError::Unreachable(e)) => {
                // Warned once per run of failures; the retries at each check log at debug.
                if self.lock_failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(fleet_lock = %lock.described(), error = %e, "Fleet lock: giving the slot back failed again");
                } else {
                    tracing::warn!(fleet_lock = %lock.described(), error = %e, "Fleet lock: giving the slot back failed; retried at each check");
                }
            }
        }
    }

    /// Before a deploy of the release of cache key `key`: take a slot. `Ok(true)` when one is
    /// held, `Ok(false)` when no lock is configured or the deploy repairs the live release;
    /// `Err` says why the deploy waits.
    pub(super) async fn take_lock(&self, version: &str, key: &str) -> Result<bool, String> {
        let Some(lock) = &self.fleet_lock else {
            return Ok(false);
        };
        if self.repairs_live(key) {
            return Ok(false);
        }
        let why = match lock.acquire().await {
            Ok(()) => {
                self.lock_dirty.store(true, Ordering::Relaxed);
                tracing::info!(fleet_lock = %lock.described(), dewy_version = %version, "Fleet lock taken");
                return Ok(true);
            }
            Err(LockError::Refused(e)) => {
                format!("waiting for the fleet lock {}: {e}", lock.described())
            }
            Err(LockError::Unreachable(e)) => format!(
                "cannot reach the fleet lock {}: {e}; not deploying, the live release keeps serving",
                lock.described()
            ),
        };
        if self.set_waiting(Some(why.clone())) {
            tracing::info!(message_id = MSG_SKIP, dewy_version = %version, reason = %why, "Deploy waits for the fleet lock");
        }
        Err(why)
    }

    /// After a deploy that held a slot, whatever its outcome (the release, or the previous one
    /// after a failure, serves): give the slot back.
    pub(super) async fn release_lock(&self) {
        self.settle_lock().await;
    }
}
