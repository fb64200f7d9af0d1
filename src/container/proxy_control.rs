//! How the deployer changes the proxy's backends: in-process (foreground `dewy container`) or
//! over D-Bus to `dewy-proxy@APP` (`io.dewy.Proxy1`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use zbus::Connection;

/// The two operations a rolling update needs from the proxy.
#[async_trait::async_trait]
pub trait ProxyControl: Send + Sync {
    /// Replace the backends of the proxy port `port`; returns once new connections use them.
    async fn set_backends(&self, port: u16, backends: Vec<SocketAddr>) -> anyhow::Result<()>;
    /// Wait (at most `max`) until nothing is in flight to `backend`; returns what was still open.
    async fn drain(&self, backend: SocketAddr, max: Duration) -> anyhow::Result<usize>;
}

/// `dewy-proxy@APP` over D-Bus (`io.dewy.Proxy1`).
pub struct BusProxy {
    conn: Connection,
    app: String,
}

impl BusProxy {
    pub fn new(conn: &Connection, app: &str) -> Self {
        Self {
            conn: conn.clone(),
            app: app.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl ProxyControl for BusProxy {
    async fn set_backends(&self, port: u16, backends: Vec<SocketAddr>) -> anyhow::Result<()> {
        crate::bus::client::proxy_set_backends(&self.conn, &self.app, port, &backends)
            .await
            .with_context(|| {
                format!(
                    "setting the backends of proxy port {port} (is dewy-proxy@{} running?)",
                    self.app
                )
            })
    }

    async fn drain(&self, backend: SocketAddr, max: Duration) -> anyhow::Result<usize> {
        crate::bus::client::proxy_drain(&self.conn, &self.app, backend, max)
            .await
            .with_context(|| format!("draining {backend}"))
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
