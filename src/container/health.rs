//! Readiness of a new replica: `GET <health-path>` answering 2xx/3xx on its 127.0.0.1 port, or,
//! without a path, a TCP connection the port keeps open; retried until `health-timeout`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::io::AsyncReadExt;

use super::docker::Engine;

/// Poll `addr` until it is healthy, the container exits or `timeout` passes.
pub async fn wait_healthy(
    engine: &Engine,
    id: &str,
    addr: SocketAddr,
    path: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + timeout;
    // A redirect answers the check (as in server mode); following it could leave the replica.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| anyhow::anyhow!("building the health-check client: {e}"))?;
    let mut attempts = 0u32;
    let what = match path {
        Some(p) => format!("http://{addr}{p}"),
        None => format!("tcp://{addr}"),
    };
    tracing::info!(url = %what, "Health checking new container");
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let per_try = left.min(Duration::from_secs(5)).max(Duration::from_millis(100));
        let result = match path {
            Some(p) => http_probe(&client, addr, p, per_try).await,
            None => tcp_probe(addr, per_try).await,
        };
        let last = match result {
            Ok(status) => {
                tracing::info!(
                    url = %what,
                    status = status.map(|s| s.to_string()).unwrap_or_else(|| "open".into()),
                    duration = %format!("{}ms", started.elapsed().as_millis()),
                    "Health check passed"
                );
                return Ok(());
            }
            Err(e) => e,
        };
        if !engine.is_running(id).await {
            bail!("the container exited during its health check (last probe: {last})");
        }
        if Instant::now() >= deadline {
            tracing::error!(error = %last, attempts, url = %what, "Health check failed");
            bail!(
                "health check of {what} failed after {attempts} attempts in {}s: {last}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(
            Duration::from_millis(250).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

async fn http_probe(
    client: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<Option<u16>, String> {
    let url = format!("http://{addr}{path}");
    match client.get(&url).timeout(timeout).send().await {
        Ok(r) if r.status().is_success() || r.status().is_redirection() => Ok(Some(r.status().as_u16())),
        Ok(r) => Err(format!("status {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Err("timed out".into()),
        Err(e) if e.is_connect() => Err("connection refused".into()),
        Err(e) => Err(format!("{e}")),
    }
}

/// The engine's port forwarder accepts a connection even when nothing listens in the container,
/// then closes it: a port is up when a connection stays open for a moment (or the app speaks).
async fn tcp_probe(addr: SocketAddr, timeout: Duration) -> Result<Option<u16>, String> {
    let mut stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("connect timed out".into()),
    };
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
        Ok(Ok(0)) => Err("connection closed at once".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(_)) | Err(_) => Ok(None),
    }
}
