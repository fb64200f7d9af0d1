//! How the deployer changes the proxy's backends: in-process (foreground `dewy container`) or
//! over D-Bus to `dewy-proxy@APP` (`io.dewy.Proxy1`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use zbus::{proxy, Connection};

use crate::bus::names;

/// The two operations a rolling update needs from the proxy.
#[async_trait::async_trait]
pub trait ProxyControl: Send + Sync {
    /// Replace the backends of the proxy port `port`; returns once new connections use them.
    async fn set_backends(&self, port: u16, backends: Vec<SocketAddr>) -> anyhow::Result<()>;
    /// Wait (at most `max`) until nothing is in flight to `backend`; returns what was still open.
    async fn drain(&self, backend: SocketAddr, max: Duration) -> anyhow::Result<usize>;
}

#[proxy(interface = "io.dewy.Proxy1", gen_blocking = false)]
trait Proxy1 {
    fn set_backends(&self, port: u16, backends: Vec<String>) -> zbus::Result<()>;
    fn drain(&self, backend: &str, max_ms: u64) -> zbus::Result<u32>;
}

/// `dewy-proxy@APP` over D-Bus.
pub struct BusProxy {
    proxy: Proxy1Proxy<'static>,
}

impl BusProxy {
    pub async fn new(conn: &Connection, app: &str) -> anyhow::Result<Self> {
        let proxy = Proxy1Proxy::builder(conn)
            .destination(names::proxy_name(app))?
            .path(names::PROXY_PATH)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .context("creating the proxy client")?;
        Ok(Self { proxy })
    }
}

#[async_trait::async_trait]
impl ProxyControl for BusProxy {
    async fn set_backends(&self, port: u16, backends: Vec<SocketAddr>) -> anyhow::Result<()> {
        let list = backends.iter().map(|b| b.to_string()).collect();
        self.proxy
            .set_backends(port, list)
            .await
            .with_context(|| format!("setting the backends of proxy port {port} (is dewy-proxy@ running?)"))
    }

    async fn drain(&self, backend: SocketAddr, max: Duration) -> anyhow::Result<usize> {
        let left = self
            .proxy
            .drain(&backend.to_string(), max.as_millis() as u64)
            .await
            .with_context(|| format!("draining {backend}"))?;
        Ok(left as usize)
    }
}

/// The proxy running in this process (foreground `dewy container`).
#[async_trait::async_trait]
impl ProxyControl for crate::proxy::ProxyHandle {
    async fn set_backends(&self, port: u16, backends: Vec<SocketAddr>) -> anyhow::Result<()> {
        crate::proxy::ProxyHandle::set_backends(self, port, backends).await
    }

    async fn drain(&self, backend: SocketAddr, max: Duration) -> anyhow::Result<usize> {
        Ok(crate::proxy::ProxyHandle::drain(self, backend, max).await)
    }
}
