//! Client side: proxies for the deployer, watcher and dewy-proxy, used by `dewy-watcher`, the
//! container deployer and the `dewy` CLI.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use zbus::{proxy, Connection};

use super::names;
use super::wire::{decode_result, WireResult};
use crate::deploy::DeployResult;
use crate::registry::Release;

#[proxy(interface = "io.dewy.Deployer1", gen_blocking = false)]
trait Deployer1 {
    fn offer(&self, version: &str) -> zbus::Result<WireResult>;
    fn deploy(&self, version: &str) -> zbus::Result<WireResult>;
    fn deploy_with(&self, version: &str, overrides: &[String]) -> zbus::Result<WireResult>;
    fn pause(&self, reason: &str) -> zbus::Result<(bool, String, String)>;
    fn resume(&self) -> zbus::Result<String>;
    fn rollback(&self) -> zbus::Result<WireResult>;
    fn restart(&self) -> zbus::Result<()>;
    fn forget_bad(&self, version: &str) -> zbus::Result<bool>;
    fn status(&self) -> zbus::Result<String>;
    fn history(&self, limit: u32) -> zbus::Result<String>;
    fn containers(&self) -> zbus::Result<Vec<(String, String, String, String)>>;
    #[zbus(signal)]
    fn deployed(&self, version: String, previous: String, duration_ms: u64) -> zbus::Result<()>;
    #[zbus(signal)]
    fn deploy_failed(
        &self,
        version: String,
        stage: String,
        error: String,
        next_step: String,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn rolled_back(&self, from: String, to: String, reason: String) -> zbus::Result<()>;
    #[zbus(property)]
    fn activity(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn live_version(&self) -> zbus::Result<String>;
}

/// A change `dewy status --follow` shows, as the deployer announces it on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// What the deployer is doing now (the current value comes first).
    Activity(String),
    /// The version live now ("" when none; the current value comes first).
    Live(String),
    Deployed {
        version: String,
        previous: String,
        duration_ms: u64,
    },
    Failed {
        version: String,
        stage: String,
        error: String,
        next_step: String,
    },
    RolledBack {
        from: String,
        to: String,
        reason: String,
    },
}

/// The deployer's changes, live: its signals and property changes merged in arrival order.
/// Subscribed before the current values are read, so nothing between the two is missed.
pub async fn follow(
    conn: &Connection,
    app: &str,
) -> anyhow::Result<futures_util::stream::BoxStream<'static, Change>> {
    use futures_util::StreamExt;
    let proxy = Deployer1Proxy::builder(conn)
        .destination(names::deployer_name(app))?
        .path(names::DEPLOYER_PATH)?
        .build()
        .await
        .context("creating the deployer proxy")?;
    let deployed = proxy
        .receive_deployed()
        .await
        .context("subscribing to Deployed")?;
    let failed = proxy
        .receive_deploy_failed()
        .await
        .context("subscribing to DeployFailed")?;
    let rolled = proxy
        .receive_rolled_back()
        .await
        .context("subscribing to RolledBack")?;
    let activity = proxy.receive_activity_changed().await;
    let live = proxy.receive_live_version_changed().await;
    let streams: Vec<futures_util::stream::BoxStream<'static, Option<Change>>> = vec![
        activity
            .then(|c| async move { c.get().await.ok().map(Change::Activity) })
            .boxed(),
        live.then(|c| async move { c.get().await.ok().map(Change::Live) })
            .boxed(),
        deployed
            .map(|s| {
                s.args().ok().map(|a| Change::Deployed {
                    version: a.version,
                    previous: a.previous,
                    duration_ms: a.duration_ms,
                })
            })
            .boxed(),
        failed
            .map(|s| {
                s.args().ok().map(|a| Change::Failed {
                    version: a.version,
                    stage: a.stage,
                    error: a.error,
                    next_step: a.next_step,
                })
            })
            .boxed(),
        rolled
            .map(|s| {
                s.args().ok().map(|a| Change::RolledBack {
                    from: a.from,
                    to: a.to,
                    reason: a.reason,
                })
            })
            .boxed(),
    ];
    Ok(futures_util::stream::select_all(streams)
        .filter_map(|c| async move { c })
        .boxed())
}

#[proxy(interface = "io.dewy.Watcher1", gen_blocking = false)]
trait Watcher1 {
    fn check_now(&self) -> zbus::Result<(String, String, String)>;
    fn status(&self) -> zbus::Result<String>;
}

#[proxy(interface = "io.dewy.Proxy1", gen_blocking = false)]
trait Proxy1 {
    fn set_backends(&self, port: u16, backends: &[String]) -> zbus::Result<()>;
    fn backends(&self) -> zbus::Result<HashMap<u16, Vec<String>>>;
    fn drain(&self, backend: &str, max_ms: u64) -> zbus::Result<u32>;
    fn status(&self) -> zbus::Result<String>;
}

async fn proxy_of(conn: &Connection, app: &str) -> anyhow::Result<Proxy1Proxy<'static>> {
    Proxy1Proxy::builder(conn)
        .destination(names::proxy_name(app))?
        .path(names::PROXY_PATH)?
        .cache_properties(proxy::CacheProperties::No)
        .build()
        .await
        .context("creating the proxy client")
}

/// Replace the backends of `app`'s proxy port `port` (over `dewy-proxy`'s bus name).
pub async fn proxy_set_backends(
    conn: &Connection,
    app: &str,
    port: u16,
    backends: &[SocketAddr],
) -> anyhow::Result<()> {
    let list: Vec<String> = backends.iter().map(|b| b.to_string()).collect();
    proxy_of(conn, app)
        .await?
        .set_backends(port, &list)
        .await
        .map_err(explain)
        .with_context(|| format!("setting the backends of {app}'s proxy port {port}"))
}

/// The backend table of `app`'s proxy: port → backends.
pub async fn proxy_backends(conn: &Connection, app: &str) -> anyhow::Result<BTreeMap<u16, Vec<SocketAddr>>> {
    let table = proxy_of(conn, app).await?.backends().await.map_err(explain)?;
    table
        .into_iter()
        .map(|(p, list)| {
            let addrs = list
                .iter()
                .map(|a| {
                    a.parse()
                        .with_context(|| format!("the proxy reported a bad backend {a:?}"))
                })
                .collect::<anyhow::Result<Vec<SocketAddr>>>()?;
            Ok((p, addrs))
        })
        .collect()
}

/// Wait until nothing is in flight to `backend` in `app`'s proxy, at most `max`; returns what
/// was still in flight.
pub async fn proxy_drain(
    conn: &Connection,
    app: &str,
    backend: SocketAddr,
    max: Duration,
) -> anyhow::Result<usize> {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    let left = proxy_of(conn, app)
        .await?
        .drain(&backend.to_string(), ms)
        .await
        .map_err(explain)?;
    Ok(left as usize)
}

/// The proxy's status JSON (ports, protocols, backends and counters).
pub async fn proxy_status(conn: &Connection, app: &str) -> anyhow::Result<serde_json::Value> {
    let s = proxy_of(conn, app).await?.status().await.map_err(explain)?;
    serde_json::from_str(&s).context("parsing the proxy's status")
}

/// A handle on an app's deployer over D-Bus.
#[derive(Clone)]
pub struct DeployerClient {
    proxy: Deployer1Proxy<'static>,
}

impl DeployerClient {
    pub async fn new(conn: &Connection, app: &str) -> anyhow::Result<Self> {
        let proxy = Deployer1Proxy::builder(conn)
            .destination(names::deployer_name(app))?
            .path(names::DEPLOYER_PATH)?
            .cache_properties(proxy::CacheProperties::No)
            .build()
            .await
            .context("creating the deployer proxy")?;
        Ok(Self { proxy })
    }

    pub async fn deploy(&self, version: &str) -> anyhow::Result<DeployResult> {
        decode_result(self.proxy.deploy(version).await.map_err(explain)?)
    }

    /// Deploy `version`, setting aside the rules `overrides` names (plain `Deploy` when none,
    /// so that a deployer without `DeployWith` still answers).
    pub async fn deploy_with(
        &self,
        version: &str,
        overrides: crate::deploy::Overrides,
    ) -> anyhow::Result<DeployResult> {
        let names = overrides.names();
        if names.is_empty() {
            return self.deploy(version).await;
        }
        decode_result(self.proxy.deploy_with(version, &names).await.map_err(explain)?)
    }

    /// Pause the app's deploys: (newly paused, the pause in force).
    pub async fn pause(&self, reason: &str) -> anyhow::Result<(bool, crate::deploy::state::Pause)> {
        let (new, reason, since) = self.proxy.pause(reason).await.map_err(explain)?;
        let since = chrono::DateTime::parse_from_rfc3339(&since)
            .with_context(|| format!("the deployer sent a bad pause time {since:?}"))?
            .with_timezone(&chrono::Utc);
        Ok((new, crate::deploy::state::Pause { reason, since }))
    }

    /// End the pause: when it had begun, or `None` when the app was not paused.
    pub async fn resume(&self) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
        let since = self.proxy.resume().await.map_err(explain)?;
        if since.is_empty() {
            return Ok(None);
        }
        chrono::DateTime::parse_from_rfc3339(&since)
            .map(|t| Some(t.with_timezone(&chrono::Utc)))
            .with_context(|| format!("the deployer sent a bad pause time {since:?}"))
    }

    pub async fn rollback(&self) -> anyhow::Result<DeployResult> {
        decode_result(self.proxy.rollback().await.map_err(explain)?)
    }

    pub async fn restart(&self) -> anyhow::Result<()> {
        self.proxy.restart().await.map_err(explain)
    }

    pub async fn forget_bad(&self, version: &str) -> anyhow::Result<bool> {
        self.proxy.forget_bad(version).await.map_err(explain)
    }

    pub async fn status_json(&self) -> anyhow::Result<serde_json::Value> {
        let s = self.proxy.status().await.map_err(explain)?;
        serde_json::from_str(&s).context("parsing the deployer's status")
    }

    /// Container mode: (name, upstream, deploy time, version) of the running containers.
    pub async fn containers(&self) -> anyhow::Result<Vec<(String, String, String, String)>> {
        self.proxy.containers().await.map_err(explain)
    }

    pub async fn history_json(&self, limit: u32) -> anyhow::Result<serde_json::Value> {
        let s = self.proxy.history(limit).await.map_err(explain)?;
        serde_json::from_str(&s).context("parsing the deployer's history")
    }
}

#[async_trait::async_trait]
impl crate::watch::DeployTarget for DeployerClient {
    /// Only the version travels: the deployer resolves it from its own source.
    async fn offer(&self, release: Release) -> anyhow::Result<DeployResult> {
        decode_result(self.proxy.offer(&release.version).await.map_err(explain)?)
    }
}

/// A handle on an app's watcher over D-Bus.
pub struct WatcherClient {
    proxy: Watcher1Proxy<'static>,
}

impl WatcherClient {
    pub async fn new(conn: &Connection, app: &str) -> anyhow::Result<Self> {
        let proxy = Watcher1Proxy::builder(conn)
            .destination(names::watcher_name(app))?
            .path(names::WATCHER_PATH)?
            .cache_properties(proxy::CacheProperties::No)
            .build()
            .await
            .context("creating the watcher proxy")?;
        Ok(Self { proxy })
    }

    pub async fn check_now(&self) -> anyhow::Result<(String, String, String)> {
        self.proxy.check_now().await.map_err(explain)
    }

    pub async fn status_json(&self) -> anyhow::Result<serde_json::Value> {
        let s = self.proxy.status().await.map_err(explain)?;
        serde_json::from_str(&s).context("parsing the watcher's status")
    }
}

/// Turn "name has no owner" into something an operator can act on.
fn explain(e: zbus::Error) -> anyhow::Error {
    let text = e.to_string();
    if text.contains("ServiceUnknown") || text.contains("NameHasNoOwner") || text.contains("was not provided")
    {
        anyhow::anyhow!("{text}\n(is the daemon running? `systemctl status dewy@APP`, or start `dewy assets …` in the foreground)")
    } else {
        anyhow::Error::new(e)
    }
}
