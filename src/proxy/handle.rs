//! The running proxy's backend tables: [`ProxyHandle`] switches, reads and drains them and saves
//! each change to `proxy.json`; [`restore`] loads the saved table at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use super::{list, persist, BackendStats, Protocol, Shared};

/// Changes and reads the backend tables of a running proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    pub(super) shared: Arc<Shared>,
}

/// One port in [`ProxyHandle::status`].
#[derive(Debug, Clone, Serialize)]
pub struct PortStatus {
    pub listen: SocketAddr,
    pub protocol: Protocol,
    pub container_port: Option<u16>,
    /// Requests (HTTP) or connections (TCP) handled, and how many failed.
    pub requests: u64,
    pub errors: u64,
    pub backends: Vec<BackendStats>,
}

impl ProxyHandle {
    /// Replace the backends of the proxy port `port` (the PortSpec's listen port). Returns after the swap.
    pub async fn set_backends(&self, port: u16, backends: Vec<SocketAddr>) -> anyhow::Result<()> {
        let Some(p) = self.shared.ports.get(&port) else {
            let known: Vec<String> = self.shared.ports.keys().map(u16::to_string).collect();
            bail!("no proxy port {port} (ports: {})", known.join(", "));
        };
        let _change = self.shared.change.lock().await;
        let before = p.table.load().addrs();
        self.shared.backends.swap(&p.table, &backends);
        let after = p.table.load().addrs();
        tracing::info!(
            proxy_port = port,
            backends = %list(&after),
            previous = %list(&before),
            "Backends switched"
        );
        self.save().await;
        Ok(())
    }

    /// Current table: listen port -> backends.
    pub fn backends(&self) -> BTreeMap<u16, Vec<SocketAddr>> {
        self.shared.snapshot()
    }

    /// Wait until no request/connection is in flight to `backend` (no longer in any table) or `max` passes; returns how many were still in flight.
    pub async fn drain(&self, backend: SocketAddr, max: Duration) -> usize {
        let deadline = Instant::now() + max;
        loop {
            let n = self.shared.backends.get(backend).map_or(0, |b| b.in_flight());
            if n == 0 || Instant::now() >= deadline {
                if n > 0 {
                    tracing::warn!(%backend, in_flight = n, "Drain time over with requests in flight");
                }
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every port with its backends and counters.
    pub fn status(&self) -> Vec<PortStatus> {
        self.shared
            .ports
            .values()
            .map(|p| PortStatus {
                listen: p.spec.listen,
                protocol: p.spec.protocol,
                container_port: p.spec.container_port,
                requests: p.requests.load(Ordering::Relaxed),
                errors: p.errors.load(Ordering::Relaxed),
                backends: p.table.load().backends.iter().map(|b| b.stats()).collect(),
            })
            .collect()
    }

    /// Backends over all ports.
    pub fn backend_count(&self) -> usize {
        self.shared
            .ports
            .values()
            .map(|p| p.table.load().backends.len())
            .sum()
    }

    /// Proxy ports served.
    pub fn port_count(&self) -> usize {
        self.shared.ports.len()
    }

    async fn save(&self) {
        let Some(path) = self.shared.state_file.clone() else {
            return;
        };
        let table = self.shared.snapshot();
        let result = tokio::task::spawn_blocking(move || persist::save(&path, &table)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "Saving the backend table failed (the new table is live)")
            }
            Err(e) => tracing::warn!(error = %e, "Saving the backend table failed (the new table is live)"),
        }
    }
}

/// Load the saved table into the ports it names; a bad file is set aside with a warning.
pub(super) fn restore(shared: &Shared) {
    let Some(path) = &shared.state_file else { return };
    let saved = match persist::load(path) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            let aside = persist::set_aside(path);
            tracing::warn!(error = %format!("{e:#}"), moved_to = ?aside, "Ignoring an unreadable backend table");
            return;
        }
    };
    for (port, addrs) in saved {
        match shared.ports.get(&port) {
            Some(p) => {
                shared.backends.swap(&p.table, &addrs);
                tracing::info!(proxy_port = port, backends = %list(&addrs), "Backends restored");
            }
            None => {
                tracing::warn!(proxy_port = port, backends = %list(&addrs), "Saved backends for a port no longer configured; dropped")
            }
        }
    }
}
