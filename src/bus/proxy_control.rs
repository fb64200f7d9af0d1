//! Container mode's [`ProxyControl`] over D-Bus: the deployer drives `dewy-proxy@APP`
//! (`io.dewy.Proxy1`) through it, so the container module never touches the bus.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use zbus::Connection;

use crate::container::ProxyControl;

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
        super::client::proxy_set_backends(&self.conn, &self.app, port, &backends)
            .await
            .with_context(|| {
                format!(
                    "setting the backends of proxy port {port} (is dewy-proxy@{} running?)",
                    self.app
                )
            })
    }

    async fn drain(&self, backend: SocketAddr, max: Duration) -> anyhow::Result<usize> {
        super::client::proxy_drain(&self.conn, &self.app, backend, max)
            .await
            .with_context(|| format!("draining {backend}"))
    }
}
