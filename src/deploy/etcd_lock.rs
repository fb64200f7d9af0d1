//! The etcd rollout lock (`fleet-lock = "etcd://…"`): a semaphore of `slots` kept as leased keys
//! under a prefix, with the maintained `etcd-client` crate.
//!
//! The scheme is etcd's own create-revision ordering (the recipe behind its `concurrency`
//! mutex, widened to `slots` holders):
//!
//! 1. grant a lease of `ttl` seconds, and put the key `<prefix><fleet-id>` attached to it (a key
//!    left by this host's previous run is overwritten in place: it keeps its create revision,
//!    so its place in the queue);
//! 2. list the keys under the prefix sorted by create revision: the host holds a slot when its
//!    key is among the first `slots`; otherwise it deletes its key, revokes the lease and waits
//!    (the next check asks again).
//!
//! Why no more than `slots` hosts hold at once, whatever the interleaving: a key made later has
//! a higher create revision than every key that exists, so the keys older than a holder's can
//! only disappear after its listing, never appear. If `slots + 1` hosts held at once, the
//! youngest of them would have at least `slots` older live keys (the other holders), which all
//! were there when it listed: it could not have been among the first `slots`. A host that does
//! not get a slot may briefly hold a place in the listing of others (until it deletes its key),
//! which only makes them wait one more check; no count is compared, so no transaction can race.
//!
//! While it holds a slot the host keeps its lease alive (every third of the TTL); giving the
//! slot back deletes the key and revokes the lease. A host that crashes stops the keep-alives,
//! so its key, and its slot, disappear when the lease expires (`ttl`); a host that starts again
//! deletes its key at once (the same "steady state at start" as for a FleetLock server).

use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions, SortOrder, SortTarget};

use super::fleet_lock::LockError;
use crate::config::etcd_lock::EtcdLock;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call to etcd may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before the keep-alive stream is opened again after it failed.
const KEEP_ALIVE_RETRY: Duration = Duration::from_secs(1);
/// Most holders named in the message of a full semaphore.
const NAMED_HOLDERS: usize = 5;

/// The slot held: its lease and the task keeping it alive.
struct Held {
    lease: i64,
    keeper: tokio::task::JoinHandle<()>,
}

/// An etcd semaphore client for one deployer (its `fleet-id`).
pub struct EtcdSemaphore {
    cfg: EtcdLock,
    /// `<prefix><fleet-id>`.
    key: String,
    held: Mutex<Option<Held>>,
    /// `etcd://host:2379/prefix?slots=2 (id host-1-web)`, for messages.
    pub described: String,
}

/// An etcd error, as unreachable when the server could not be asked and refused otherwise.
fn classify(what: &str, e: etcd_client::Error) -> LockError {
    use etcd_client::Error as E;
    let text = format!("{what}: {e}");
    match &e {
        E::GRpcStatus(s)
            if !matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            ) =>
        {
            LockError::Refused(text)
        }
        _ => LockError::Unreachable(text),
    }
}

/// Connect to the etcd of `cfg` (its TLS and user).
pub(super) async fn connect(cfg: &EtcdLock) -> Result<Client, LockError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(CALL_TIMEOUT);
    if cfg.tls {
        opts = opts.with_tls(etcd_client::TlsOptions::new().with_native_roots());
    }
    if let Some((user, password)) = &cfg.user {
        // The token etcd hands out lapses (5 min unused by default, or a JWT's fixed life) while
        // the fleet store's client and a held slot's keep-alive live on: ask for a new one then.
        opts = opts
            .with_user(user.clone(), password.clone())
            .with_auto_token_refresh(true);
    }
    bounded(
        &format!("connecting to {}", cfg.endpoint),
        Client::connect([cfg.endpoint.as_str()], Some(opts)),
    )
    .await
}

/// A call to etcd bounded by [`CALL_TIMEOUT`].
pub(super) async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, LockError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map_err(|e| classify(what, e)),
        Err(_) => Err(LockError::Unreachable(format!(
            "{what}: no answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

impl EtcdSemaphore {
    pub fn new(cfg: &EtcdLock, id: &str, url: &url::Url) -> Self {
        Self {
            key: format!("{}{id}", cfg.prefix),
            described: format!("{url} (id {id})"),
            cfg: cfg.clone(),
            held: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Client, LockError> {
        connect(&self.cfg).await
    }

    /// Take a slot (held already: fine).
    pub async fn acquire(&self) -> Result<(), LockError> {
        if self.holds() {
            return Ok(());
        }
        let mut client = self.connect().await?;
        let ttl = i64::try_from(self.cfg.ttl.as_secs()).unwrap_or(i64::MAX);
        let lease = bounded("granting a lease", client.lease_grant(ttl, None))
            .await?
            .id();
        match self.queue(&mut client, lease).await {
            Ok(()) => {
                let keeper = tokio::spawn(keep_alive(client, lease, self.cfg.ttl, self.described.clone()));
                if let Ok(mut held) = self.held.lock() {
                    if let Some(old) = held.replace(Held { lease, keeper }) {
                        old.keeper.abort();
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Revoking the lease deletes the key too; when etcd is gone the lease expires.
                let _ = bounded("revoking the lease", client.lease_revoke(lease)).await;
                Err(e)
            }
        }
    }

    /// Steps 1 and 2 of the scheme (see the module's documentation).
    async fn queue(&self, client: &mut Client, lease: i64) -> Result<(), LockError> {
        let put = PutOptions::new().with_lease(lease);
        bounded(
            "putting the slot key",
            client.put(self.key.as_str(), self.key.as_str(), Some(put)),
        )
        .await?;
        let list = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        let keys = bounded(
            "listing the slot keys",
            client.get(self.cfg.prefix.as_str(), Some(list)),
        )
        .await?;
        let kvs = keys.kvs();
        let slots = usize::try_from(self.cfg.slots).unwrap_or(usize::MAX);
        if kvs.iter().take(slots).any(|kv| kv.key() == self.key.as_bytes()) {
            return Ok(());
        }
        let holders: Vec<String> = kvs
            .iter()
            .take(slots.min(NAMED_HOLDERS))
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let name = key.strip_prefix(self.cfg.prefix.as_str()).unwrap_or(&key);
                crate::text::blanked(name, crate::text::SHOWN_LEN)
            })
            .collect();
        Err(LockError::Refused(format!(
            "semaphore is full ({} of {} slots held, by {}{})",
            kvs.len().min(slots),
            self.cfg.slots,
            holders.join(", "),
            if slots > NAMED_HOLDERS { "…" } else { "" }
        )))
    }

    fn holds(&self) -> bool {
        self.held.lock().map(|h| h.is_some()).unwrap_or(false)
    }

    /// Give the slot back: delete the key (also one left by a previous run) and revoke the lease
    /// (none held: fine).
    pub async fn release(&self) -> Result<(), LockError> {
        let held = self.held.lock().ok().and_then(|mut h| h.take());
        let lease = held.map(|h| {
            // No more keep-alives: if the calls below fail, the lease expires with its TTL.
            h.keeper.abort();
            h.lease
        });
        let mut client = self.connect().await?;
        bounded("deleting the slot key", client.delete(self.key.as_str(), None)).await?;
        if let Some(lease) = lease {
            if let Err(LockError::Refused(e) | LockError::Unreachable(e)) =
                bounded("revoking the lease", client.lease_revoke(lease)).await
            {
                // The key is gone, so is the slot; the lease expires by itself.
                tracing::debug!(fleet_lock = %self.described, error = %e, "Fleet lock: revoking the lease failed");
            }
        }
        Ok(())
    }
}

impl Drop for EtcdSemaphore {
    fn drop(&mut self) {
        if let Ok(mut h) = self.held.lock() {
            if let Some(h) = h.take() {
                h.keeper.abort();
            }
        }
    }
}

/// Keep `lease` alive until aborted (by [`EtcdSemaphore::release`]), or until etcd says it
/// expired.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, described: String) {
    let every = (ttl / 3).max(Duration::from_millis(500));
    let mut warned = false;
    loop {
        let outcome: Result<(), String> = async {
            let (mut keeper, mut stream) = bounded("keeping the lease alive", client.lease_keep_alive(lease))
                .await
                .map_err(|e| match e {
                    LockError::Refused(e) | LockError::Unreachable(e) => e,
                })?;
            loop {
                keeper.keep_alive().await.map_err(|e| e.to_string())?;
                match tokio::time::timeout(CALL_TIMEOUT, stream.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() <= 0 => return Ok(()),
                    Ok(Ok(Some(_))) => {}
                    Ok(Ok(None)) => return Err("the keep-alive stream ended".to_string()),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("no keep-alive answer".to_string()),
                }
                tokio::time::sleep(every).await;
            }
        }
        .await;
        match outcome {
            Ok(()) => {
                tracing::warn!(fleet_lock = %described, "Fleet lock: the slot's lease expired; the slot may be taken by another host");
                return;
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(fleet_lock = %described, error = %e, "Fleet lock: keeping the slot's lease alive failed; retrying");
            }
            Err(e) => {
                tracing::debug!(fleet_lock = %described, error = %e, "Fleet lock: keeping the slot's lease alive failed again");
            }
        }
        tokio::time::sleep(KEEP_ALIVE_RETRY).await;
    }
}
