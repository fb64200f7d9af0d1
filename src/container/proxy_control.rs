//! How the deployer changes the proxy's backends: the trait a rolling update uses, and its
//! in-process implementation (foreground `dewy container`); the D-Bus one, to `dewy-proxy@APP`,
//! is `BusProxy` in the bus module.

use std::net::SocketAddr;
use std::time::Duration;

/// The two operations a rolling update needs from the proxy.
#[async_trait::async_trait]
pub trait ProxyControl: Send + Sync {
    /// Replace the backends of the proxy port `port`; returns once new connections use them.
    async fn set_backends(&self, port: u16, backends: Vec<SocketAddr>) -> anyhow::Result<()>;
    /// Wait (at most `max`) until nothing is in flight to `backend`; returns what was still open.
    async fn drain(&self, backend: SocketAddr, max: Duration) -> anyhow::Result<usize>;
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
