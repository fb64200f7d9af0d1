//! `dewy container list --admin-port N`: Go Dewy's client of the admin API. It asks
//! `http://127.0.0.1:<p>/api/containers` for p = N … N+9 (2 s each) and the first answer wins.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;

use super::view::{ContainerView, ContainersView};

/// Time given to each port.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read.
const MAX_BODY: usize = 4 << 20;

/// What the first instance that answered said.
#[derive(Debug)]
pub struct Listing {
    /// The port that answered.
    pub port: u16,
    pub containers: Vec<ContainerView>,
}

/// Ask the admin API of the instance at the first answering port from `first`.
pub async fn list_containers(first: u16) -> anyhow::Result<Listing> {
    let http = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    let ports: Vec<u16> = super::candidate_ports(first).collect();
    for &port in &ports {
        let url = format!("http://127.0.0.1:{port}/api/containers");
        let resp = match http.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(port, error = %e, "No admin API on this port");
                continue;
            }
        };
        if !resp.status().is_success() {
            bail!("admin API returned status {}", resp.status().as_u16());
        }
        let body = read_limited(resp)
            .await
            .with_context(|| format!("reading {url}"))?;
        let view: ContainersView = serde_json::from_slice(&body)
            .with_context(|| format!("{url} did not answer with a container list"))?;
        let mut containers = view.containers.unwrap_or_default();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(Listing { port, containers });
    }
    let last = ports.last().copied().unwrap_or(first);
    bail!("no running dewy instances found (tried ports {first}-{last})")
}

async fn read_limited(resp: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_BODY {
            bail!("the answer is larger than {MAX_BODY} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
