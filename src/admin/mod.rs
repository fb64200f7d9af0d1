//! The read-only admin API of Go Dewy (`--admin-port`): `/api/status`, `/api/containers` and
//! `/metrics` over HTTP on 127.0.0.1, at the first free port of ten consecutive ones.

pub mod client;
mod server;
pub mod view;

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::bail;

use crate::config::{Mode, Settings};
pub use server::{serve, Limits, Served};
pub use view::{ContainerView, ContainersView, Source, StatusView};

/// Go Dewy's default admin port.
pub const DEFAULT_PORT: u16 = 17539;
/// Ports tried from the configured one (Go Dewy's 10).
pub const PORT_TRIES: u16 = 10;

/// The port the admin API starts from in this process, or `None` when it is not served.
/// Foreground runs serve it in container mode (as Go Dewy does) and whenever `admin-port` is
/// set; the daemons only when `admin-port` is set. 0 means [`DEFAULT_PORT`].
pub fn port_for(settings: &Settings, foreground: bool) -> Option<u16> {
    let configured = settings.admin_port.map(|p| if p == 0 { DEFAULT_PORT } else { p });
    match configured {
        Some(p) => Some(p),
        None if foreground && settings.mode == Mode::Container => Some(DEFAULT_PORT),
        None => None,
    }
}

/// The ports tried from `first`: `first` to `first + 9`, within 1–65535.
pub fn candidate_ports(first: u16) -> impl Iterator<Item = u16> {
    let first = first.max(1);
    (0..PORT_TRIES).filter_map(move |i| first.checked_add(i))
}

/// Bind 127.0.0.1 at the first free port of [`candidate_ports`].
pub async fn bind(first: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let mut last = None;
    for port in candidate_ports(first) {
        match tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
            Ok(l) => {
                tracing::info!(port, "Admin API port bound successfully");
                return Ok(l);
            }
            Err(e) => {
                tracing::debug!(port, error = %e, "Admin API port busy; trying the next one");
                last = Some(e);
            }
        }
    }
    let last = last
        .map(|e| e.to_string())
        .unwrap_or_else(|| "no port to try".into());
    let end = candidate_ports(first).last().unwrap_or(first);
    bail!("failed to bind the admin API on 127.0.0.1, ports {first}-{end} ({last})")
}

/// Start the admin API of this process when [`port_for`] says so. A failure to bind is logged
/// and the run goes on without it.
pub async fn start(
    settings: &Settings,
    foreground: bool,
    source: std::sync::Arc<dyn Source>,
    metrics: std::sync::Arc<dyn crate::metrics::Render>,
) -> Option<Served> {
    let first = port_for(settings, foreground)?;
    let served = match bind(first).await {
        Ok(listener) => serve(listener, source, metrics, Limits::default()),
        Err(e) => Err(e),
    };
    match served {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "Admin API startup failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_tried_stay_in_range() {
        assert_eq!(
            candidate_ports(17539).collect::<Vec<_>>(),
            (17539..17549).collect::<Vec<_>>()
        );
        assert_eq!(
            candidate_ports(65530).collect::<Vec<_>>(),
            (65530..=65535).collect::<Vec<_>>()
        );
        assert_eq!(candidate_ports(0).next(), Some(1));
    }
}

#[cfg(test)]
mod server_tests;
