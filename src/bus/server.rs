//! The D-Bus interfaces the daemons export, as thin adapters over the library types.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use zbus::message::Header;
use zbus::{interface, Connection};

use super::caller::{self, Caller};
use super::error::BusError;
use super::names::{self, BusChoice};
use super::wire::{encode_result, WireResult};
use crate::deploy::{Deployer, Overrides};
use crate::proxy::ProxyHandle;
use crate::watch::Watcher;

/// `io.dewy.Deployer1` over a [`Deployer`].
pub struct DeployerIface {
    pub deployer: Arc<Deployer>,
}

#[interface(name = "io.dewy.Deployer1")]
impl DeployerIface {
    /// Nominate a version found by the watcher; the deployer resolves it from its own source.
    /// Returns (result, version, detail) once handled. Root, the deployer's user and the
    /// watcher's user may call it.
    async fn offer(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        version: String,
    ) -> Result<WireResult, BusError> {
        caller::require(conn, &header, Caller::Watcher, "Offer").await?;
        Ok(encode_result(&self.deployer.nominate(&version).await))
    }

    /// Deploy a given version now, even one marked bad.
    async fn deploy(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        version: String,
    ) -> Result<WireResult, BusError> {
        caller::require(conn, &header, Caller::Operator, "Deploy").await?;
        Ok(encode_result(
            &self.deployer.deploy_version(&version, Overrides::default()).await,
        ))
    }

    /// `Deploy` that sets aside the rules named in `overrides` (`pause`: deploy although the
    /// app is paused; `window`: although every deploy window is closed); an unknown name is
    /// refused.
    async fn deploy_with(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        version: String,
        overrides: Vec<String>,
    ) -> Result<WireResult, BusError> {
        caller::require(conn, &header, Caller::Operator, "DeployWith").await?;
        let overrides = Overrides::parse(&overrides).map_err(BusError::InvalidArgs)?;
        Ok(encode_result(
            &self.deployer.deploy_version(&version, overrides).await,
        ))
    }

    /// Hold back the releases the watcher finds until `Resume` (kept across restarts). Returns
    /// (newly paused, reason in force, since as RFC 3339): an existing pause is kept as it is.
    async fn pause(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        reason: String,
    ) -> Result<(bool, String, String), BusError> {
        caller::require(conn, &header, Caller::Operator, "Pause").await?;
        let (pause, new) = self
            .deployer
            .pause(&reason)
            .map_err(|e| BusError::InvalidArgs(format!("{e:#}")))?;
        Ok((new, pause.reason, pause.since.to_rfc3339()))
    }

    /// End a pause; returns when it had begun (RFC 3339), or "" when the app was not paused.
    async fn resume(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, BusError> {
        caller::require(conn, &header, Caller::Operator, "Resume").await?;
        let ended = self
            .deployer
            .resume()
            .map_err(|e| BusError::Failed(format!("{e:#}")))?;
        Ok(ended.map(|p| p.since.to_rfc3339()).unwrap_or_default())
    }

    /// Make the previous release live again; the version rolled back from is marked bad.
    async fn rollback(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<WireResult, BusError> {
        caller::require(conn, &header, Caller::Operator, "Rollback").await?;
        Ok(encode_result(&self.deployer.rollback().await))
    }

    /// Server mode: restart the app without a deploy (a new generation, then the old one drains).
    async fn restart(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), BusError> {
        caller::require(conn, &header, Caller::Operator, "Restart").await?;
        Ok(self.deployer.restart_app().await?)
    }

    /// Clear a version from the bad-version ledger; true when it was there.
    async fn forget_bad(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        version: String,
    ) -> Result<bool, BusError> {
        caller::require(conn, &header, Caller::Operator, "ForgetBad").await?;
        self.deployer
            .forget_bad(&version)
            .await
            .map_err(|e| BusError::InvalidArgs(format!("{e:#}")))
    }

    /// Status as a JSON object (app, live, previous, activity, last result, bad versions).
    async fn status(&self) -> Result<String, BusError> {
        serde_json::to_string(&self.deployer.status()).map_err(|e| BusError::Failed(e.to_string()))
    }

    /// The newest `limit` history entries as a JSON array, oldest first.
    async fn history(&self, limit: u32) -> Result<String, BusError> {
        serde_json::to_string(&self.deployer.history(limit as usize))
            .map_err(|e| BusError::Failed(e.to_string()))
    }

    /// Container mode: the running containers as (name, upstream, deploy time, version).
    async fn containers(&self) -> Result<Vec<(String, String, String, String)>, BusError> {
        Ok(self.deployer.containers().await?)
    }

    /// A release went live: its version, the version it replaced ("" when none) and how long the
    /// deploy took.
    #[zbus(signal)]
    pub async fn deployed(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        version: &str,
        previous: &str,
        duration_ms: u64,
    ) -> zbus::Result<()>;

    /// A deploy or rollback failed: the version ("" when unknown), the stage (`deploy` or
    /// `rollback`), the error and what happens next. The previous release keeps serving.
    #[zbus(signal)]
    pub async fn deploy_failed(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        version: &str,
        stage: &str,
        error: &str,
        next_step: &str,
    ) -> zbus::Result<()>;

    /// The previous release serves again: from, to and why.
    #[zbus(signal)]
    pub async fn rolled_back(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        from: &str,
        to: &str,
        reason: &str,
    ) -> zbus::Result<()>;

    /// The version live now ("" when none).
    #[zbus(property)]
    async fn live_version(&self) -> String {
        self.deployer.live_version().unwrap_or_default()
    }

    /// What the deployer is doing (`idle`, `deploying v1.2.3`).
    #[zbus(property)]
    async fn activity(&self) -> String {
        self.deployer.activity()
    }
}

/// `io.dewy.Watcher1` over a [`Watcher`].
pub struct WatcherIface {
    pub watcher: Arc<Watcher>,
}

#[interface(name = "io.dewy.Watcher1")]
impl WatcherIface {
    /// Check the registry now; returns (outcome, version, detail).
    async fn check_now(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(String, String, String), BusError> {
        caller::require(conn, &header, Caller::Operator, "CheckNow").await?;
        let r = self.watcher.check_now().await;
        Ok((r.outcome, r.version, r.detail))
    }

    /// Status as a JSON object (registry, last/next check, latest version, last result).
    async fn status(&self) -> Result<String, BusError> {
        serde_json::to_string(&self.watcher.status()).map_err(|e| BusError::Failed(e.to_string()))
    }
}

/// `io.dewy.Proxy1` over a running proxy's [`ProxyHandle`] (container mode).
pub struct ProxyIface {
    pub app: String,
    pub proxy: ProxyHandle,
}

fn parse_backend(s: &str) -> Result<SocketAddr, BusError> {
    s.trim()
        .parse()
        .map_err(|_| BusError::InvalidArgs(format!("backend {s:?} is not an address like 127.0.0.1:32768")))
}

#[interface(name = "io.dewy.Proxy1")]
impl ProxyIface {
    /// Replace the backends of proxy port `port`; returns once new requests use them.
    async fn set_backends(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        port: u16,
        backends: Vec<String>,
    ) -> Result<(), BusError> {
        caller::require(conn, &header, Caller::Operator, "SetBackends").await?;
        let addrs = backends
            .iter()
            .map(|b| parse_backend(b))
            .collect::<Result<Vec<_>, BusError>>()?;
        self.proxy
            .set_backends(port, addrs)
            .await
            .map_err(|e| BusError::InvalidArgs(format!("{e:#}")))
    }

    /// Proxy port → backends.
    async fn backends(&self) -> HashMap<u16, Vec<String>> {
        self.proxy
            .backends()
            .into_iter()
            .map(|(p, b)| (p, b.iter().map(|a| a.to_string()).collect()))
            .collect()
    }

    /// Wait until nothing is in flight to `backend` or `max_ms` passes; returns what was left.
    async fn drain(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        backend: String,
        max_ms: u64,
    ) -> Result<u32, BusError> {
        caller::require(conn, &header, Caller::Operator, "Drain").await?;
        let addr = parse_backend(&backend)?;
        let left = self.proxy.drain(addr, Duration::from_millis(max_ms)).await;
        Ok(u32::try_from(left).unwrap_or(u32::MAX))
    }

    /// Status as a JSON object: app and, per port, listen address, protocol, counters and
    /// backends with their counters.
    async fn status(&self) -> Result<String, BusError> {
        serde_json::to_string(&serde_json::json!({
            "app": self.app,
            "ports": self.proxy.status(),
        }))
        .map_err(|e| BusError::Failed(e.to_string()))
    }
}

/// Own the deployer's name on `bus` and serve its interface.
pub async fn serve_deployer(bus: &BusChoice, app: &str, deployer: Arc<Deployer>) -> zbus::Result<Connection> {
    bus.builder()?
        .serve_at(names::DEPLOYER_PATH, DeployerIface { deployer })?
        .name(names::deployer_name(app))?
        .build()
        .await
}

/// Own the watcher's name on `bus` and serve its interface.
pub async fn serve_watcher(bus: &BusChoice, app: &str, watcher: Arc<Watcher>) -> zbus::Result<Connection> {
    bus.builder()?
        .serve_at(names::WATCHER_PATH, WatcherIface { watcher })?
        .name(names::watcher_name(app))?
        .build()
        .await
}

/// Own the proxy's name on `bus` and serve its interface.
pub async fn serve_proxy(bus: &BusChoice, app: &str, proxy: ProxyHandle) -> zbus::Result<Connection> {
    bus.builder()?
        .serve_at(
            names::PROXY_PATH,
            ProxyIface {
                app: app.to_string(),
                proxy,
            },
        )?
        .name(names::proxy_name(app))?
        .build()
        .await
}

#[cfg(test)]
mod tests {
    use zbus::object_server::Interface;

    use super::*;

    #[test]
    fn interface_names_match_the_names_module() {
        assert_eq!(DeployerIface::name().as_str(), names::DEPLOYER_IFACE);
        assert_eq!(WatcherIface::name().as_str(), names::WATCHER_IFACE);
        assert_eq!(ProxyIface::name().as_str(), names::PROXY_IFACE);
    }
}
