//! The rollout lock a deploy holds around its disruptive step: one interface, two engines (a
//! FleetLock server over HTTP, or a semaphore kept in etcd), chosen by the `fleet-lock` URL.

use super::etcd_lock::EtcdSemaphore;
use super::fleet_lock::{FleetLockClient, LockError};
use crate::config::fleet_lock::FleetLock;

/// A rollout lock: `acquire` takes one of the group's slots, `release` gives it back. Both are
/// idempotent (taking a slot held, giving back none, are fine), so `release` also frees a slot
/// held before a restart.
pub enum RolloutLock {
    FleetLock(FleetLockClient),
    Etcd(EtcdSemaphore),
}

impl RolloutLock {
    pub fn new(cfg: &FleetLock) -> anyhow::Result<Self> {
        Ok(match &cfg.etcd {
            Some(etcd) => Self::Etcd(EtcdSemaphore::new(etcd, &cfg.id, &cfg.url)),
            None => Self::FleetLock(FleetLockClient::new(cfg)?),
        })
    }

    /// Take a slot.
    pub async fn acquire(&self) -> Result<(), LockError> {
        match self {
            Self::FleetLock(c) => c.pre_reboot().await,
            Self::Etcd(c) => c.acquire().await,
        }
    }

    /// Give the slot back.
    pub async fn release(&self) -> Result<(), LockError> {
        match self {
            Self::FleetLock(c) => c.steady_state().await,
            Self::Etcd(c) => c.release().await,
        }
    }

    /// The lock and this deployer's place in it, for messages.
    pub fn described(&self) -> &str {
        match self {
            Self::FleetLock(c) => &c.described,
            Self::Etcd(c) => &c.described,
        }
    }

    /// What giving the slot back is called in messages.
    pub fn release_name(&self) -> &'static str {
        match self {
            Self::FleetLock(_) => "steady state reported",
            Self::Etcd(_) => "slot given back",
        }
    }
}
