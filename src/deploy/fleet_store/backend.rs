//! Where a fleet store keeps its keys: an etcd key prefix (one client, connected at the first
//! call) or an S3/GCS bucket prefix through the shared cache's [`ObjectStore`]; the same five
//! calls (get, put, create-if-absent, delete, list) over either.

use std::sync::Arc;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::super::etcd_lock::{bounded, connect};
use super::super::fleet_lock::LockError;
use crate::cache::shared::{Condition, ObjectStore, Written};
use crate::config::etcd_lock::EtcdLock;

/// The keys and values of the store, whatever keeps them.
pub(super) enum Backend {
    /// An etcd key prefix; the client is connected at the first call (and again after a
    /// failed connect).
    Etcd {
        cfg: EtcdLock,
        client: Box<tokio::sync::OnceCell<Client>>,
    },
    /// A bucket prefix.
    Objects(Arc<dyn ObjectStore>),
}

/// An object store's error, as the lock errors say it (it could not be asked, or refused).
fn unreachable(e: anyhow::Error) -> LockError {
    LockError::Unreachable(format!("{e:#}"))
}

impl Backend {
    async fn etcd(&self) -> Result<(Client, &str), LockError> {
        let Backend::Etcd { cfg, client } = self else {
            return Err(LockError::Refused("not an etcd store".into()));
        };
        let c = client.get_or_try_init(|| connect(cfg)).await?;
        Ok((c.clone(), cfg.prefix.as_str()))
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LockError> {
        match self {
            Backend::Objects(o) => Ok(o.get(key).await.map_err(unreachable)?.map(|(v, _)| v)),
            Backend::Etcd { .. } => {
                let (mut c, prefix) = self.etcd().await?;
                let got = bounded("reading the fleet store", c.get(format!("{prefix}{key}"), None)).await?;
                Ok(got.kvs().first().map(|kv| kv.value().to_vec()))
            }
        }
    }

    pub(super) async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), LockError> {
        match self {
            Backend::Objects(o) => {
                // The last writer wins: each host writes only its own key.
                let current = o.get(key).await.map_err(unreachable)?;
                let condition = match current {
                    Some((_, version)) => Condition::Matches(version),
                    None => Condition::Absent,
                };
                match o.put(key, value, condition).await.map_err(unreachable)? {
                    Written::Done(_) => Ok(()),
                    Written::Conflict => Err(LockError::Refused(format!(
                        "{key} was written by someone else meanwhile (two hosts with one fleet-id?)"
                    ))),
                }
            }
            Backend::Etcd { .. } => {
                let (mut c, prefix) = self.etcd().await?;
                bounded(
                    "writing the fleet store",
                    c.put(format!("{prefix}{key}"), value, None),
                )
                .await?;
                Ok(())
            }
        }
    }

    /// Create `key` unless it exists; true when this call created it.
    pub(super) async fn create(&self, key: &str, value: Vec<u8>) -> Result<bool, LockError> {
        match self {
            Backend::Objects(o) => Ok(matches!(
                o.put(key, value, Condition::Absent).await.map_err(unreachable)?,
                Written::Done(_)
            )),
            Backend::Etcd { .. } => {
                let (mut c, prefix) = self.etcd().await?;
                let key = format!("{prefix}{key}");
                let txn = Txn::new()
                    .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.as_str(), value, None)]);
                Ok(bounded("writing the fleet store", c.txn(txn)).await?.succeeded())
            }
        }
    }

    /// Delete `key`; true when it existed.
    pub(super) async fn delete(&self, key: &str) -> Result<bool, LockError> {
        match self {
            Backend::Objects(o) => o.delete(key).await.map_err(unreachable),
            Backend::Etcd { .. } => {
                let (mut c, prefix) = self.etcd().await?;
                let done = bounded(
                    "deleting from the fleet store",
                    c.delete(format!("{prefix}{key}"), None),
                )
                .await?;
                Ok(done.deleted() > 0)
            }
        }
    }

    /// The keys under `prefix` (relative, as the other calls take them).
    pub(super) async fn keys(&self, prefix: &str) -> Result<Vec<String>, LockError> {
        Ok(self
            .entries(prefix, false)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The keys under `prefix` and, when `values`, their values (an object store reads each).
    pub(super) async fn entries(
        &self,
        prefix: &str,
        values: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, LockError> {
        match self {
            Backend::Objects(o) => {
                let keys = o.list(prefix).await.map_err(unreachable)?;
                let mut out = Vec::with_capacity(keys.len());
                for key in keys {
                    let value = match values {
                        true => match o.get(&key).await.map_err(unreachable)? {
                            Some((v, _)) => v,
                            None => continue,
                        },
                        false => Vec::new(),
                    };
                    out.push((key, value));
                }
                Ok(out)
            }
            Backend::Etcd { .. } => {
                let (mut c, root) = self.etcd().await?;
                let mut opts = GetOptions::new().with_prefix();
                if !values {
                    opts = opts.with_keys_only();
                }
                let got = bounded(
                    "listing the fleet store",
                    c.get(format!("{root}{prefix}"), Some(opts)),
                )
                .await?;
                Ok(got
                    .kvs()
                    .iter()
                    .filter_map(|kv| {
                        let key = String::from_utf8_lossy(kv.key());
                        Some((key.strip_prefix(root)?.to_string(), kv.value().to_vec()))
                    })
                    .collect())
            }
        }
    }
}
