//! TCP mode: each client connection goes to the next healthy backend (round robin) and bytes are
//! copied both ways until either side closes.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::connections::Life;
use super::http::CONNECT_TIMEOUT;
use super::Port;

/// Serve raw TCP on `listener` until `life` says stop; open connections go on until they end or
/// the grace period is over.
pub async fn serve(listener: TcpListener, port: Arc<Port>, life: Life, idle: std::time::Duration) {
    while let Some((stream, peer)) =
        super::connections::next_client(&listener, port.spec.listen.port(), super::Protocol::Tcp, &life).await
    {
        let port = port.clone();
        let life = life.clone();
        tokio::spawn(async move {
            let _open = life.open();
            let started = std::time::Instant::now();
            let ok = forward(stream, &port, &life, idle).await;
            if !ok {
                tracing::debug!(%peer, proxy_port = port.spec.listen.port(), "Connection closed: no backend");
            }
            port.observe(started.elapsed(), !ok);
        });
    }
}

/// Connect to a backend (trying each once, healthy ones first) and copy; false when none answered.
async fn forward(mut client: TcpStream, port: &Port, life: &Life, idle: std::time::Duration) -> bool {
    let _ = client.set_nodelay(true);
    let table = port.table.load();
    let mut tried = Vec::new();
    while let Some(backend) = table.pick(&tried) {
        tried.push(backend.addr);
        let guard = backend.begin();
        let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr)).await;
        let mut upstream = match upstream {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if super::http::own_shortage(&e) => {
                // The proxy's own shortage (descriptors, ports): the backend is not to blame.
                tracing::warn!(proxy_port = port.spec.listen.port(), backend = %backend.addr, error = %e, "The proxy is short of resources: connection closed");
                return false;
            }
            Ok(Err(e)) => {
                backend.error();
                backend.eject();
                tracing::warn!(proxy_port = port.spec.listen.port(), backend = %backend.addr, error = %e, "Backend refused the connection");
                continue;
            }
            Err(_) => {
                backend.error();
                backend.eject();
                tracing::warn!(proxy_port = port.spec.listen.port(), backend = %backend.addr, "Backend connect timed out");
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        tokio::select! {
            r = super::copy::both_ways(&mut client, &mut upstream, idle) => {
                if let Err(e) = r {
                    tracing::debug!(backend = %backend.addr, error = %e, "TCP connection ended with an error");
                }
            }
            _ = life.killed() => {}
        }
        drop(guard);
        return true;
    }
    false
}
