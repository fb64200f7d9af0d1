//! Client side: proxies for the deployer and watcher, used by `dewy-watcher` and the `dewy` CLI.

use anyhow::Context;
use zbus::{proxy, Connection};

use super::names;
use super::wire::{decode_result, WireRelease, WireResult};
use crate::deploy::DeployResult;
use crate::registry::Release;

#[proxy(interface = "io.dewy.Deployer1", gen_blocking = false)]
trait Deployer1 {
    fn offer(&self, release: WireRelease) -> zbus::Result<WireResult>;
    fn deploy(&self, version: &str) -> zbus::Result<WireResult>;
    fn rollback(&self) -> zbus::Result<WireResult>;
    fn restart(&self) -> zbus::Result<()>;
    fn forget_bad(&self, version: &str) -> zbus::Result<bool>;
    fn status(&self) -> zbus::Result<String>;
    fn history(&self, limit: u32) -> zbus::Result<String>;
    fn containers(&self) -> zbus::Result<Vec<(String, String, String, String)>>;
}

#[proxy(interface = "io.dewy.Watcher1", gen_blocking = false)]
trait Watcher1 {
    fn check_now(&self) -> zbus::Result<(String, String, String)>;
    fn status(&self) -> zbus::Result<String>;
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
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .context("creating the deployer proxy")?;
        Ok(Self { proxy })
    }

    pub async fn deploy(&self, version: &str) -> anyhow::Result<DeployResult> {
        decode_result(self.proxy.deploy(version).await.map_err(explain)?)
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
    async fn offer(&self, release: Release) -> anyhow::Result<DeployResult> {
        let wire = WireRelease::from(&release);
        decode_result(self.proxy.offer(wire).await.map_err(explain)?)
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
            .cache_properties(zbus::proxy::CacheProperties::No)
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
