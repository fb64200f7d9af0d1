//! The container engine, through its HTTP API (bollard): Docker, or Podman's Docker-compatible
//! socket. `DOCKER_HOST` picks the socket; the API version is negotiated (Debian's dockerd
//! speaks 1.41).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;

use super::labels;
use crate::config::container::EngineRuntime;

mod image;
mod run;

pub use image::{registry_host, split_reference, Pulled};
pub use run::{own_user, RunSpec};

/// A connection to the engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

/// A managed container of the app, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    pub id: String,
    pub name: String,
    pub version: String,
    pub deployed_at: String,
    pub running: bool,
    /// The image as the engine names it (the reference the container was created from).
    pub image: String,
    /// The engine's state word (`running`, `exited`…).
    pub state: String,
    /// Creation time (Unix seconds).
    pub created: i64,
    /// Every label of the container.
    pub labels: BTreeMap<String, String>,
    /// Container port → the 127.0.0.1 address it is published on.
    pub ports: BTreeMap<u16, SocketAddr>,
}

impl Engine {
    /// Connect through `DOCKER_HOST` when it is set, else to the socket of `runtime`
    /// ([`engine_socket`]), and agree on an API version.
    pub async fn connect(runtime: EngineRuntime) -> anyhow::Result<Engine> {
        let docker_host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.trim().is_empty());
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from);
        let socket = engine_socket(
            runtime,
            docker_host.as_deref(),
            nix::unistd::geteuid().as_raw(),
            xdg.as_deref(),
        );
        let docker = match &socket {
            None => Docker::connect_with_defaults(),
            Some(path) => Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION),
        };
        let host = docker_host
            .or_else(|| socket.map(|s| format!("unix://{s}")))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let hint = match runtime {
            EngineRuntime::Docker => "is dockerd running?",
            EngineRuntime::Podman => "is podman.socket running? (systemctl enable --now podman.socket, or systemctl --user for rootless)",
        };
        let docker = docker
            .with_context(|| format!("connecting to the {runtime:?} engine at {host} ({hint})"))?
            .negotiate_version()
            .await
            .with_context(|| format!("talking to the container engine at {host} ({hint})"))?;
        tracing::debug!(api = %docker.client_version(), host = %host, "Container engine connected");
        Ok(Engine { docker })
    }

    /// The 127.0.0.1 address each of `ports` of a container is published on.
    pub async fn published(&self, id: &str, ports: &[u16]) -> anyhow::Result<BTreeMap<u16, SocketAddr>> {
        let info = self
            .docker
            .inspect_container(id, None)
            .await
            .with_context(|| format!("inspecting container {}", short(id)))?;
        if !info.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            bail!("container {} exited right after it started", short(id));
        }
        let map = info.network_settings.and_then(|n| n.ports).unwrap_or_default();
        let mut out = BTreeMap::new();
        for port in ports {
            let addr = map
                .get(&format!("{port}/tcp"))
                .cloned()
                .flatten()
                .unwrap_or_default()
                .into_iter()
                .find_map(|b| b.host_port.and_then(|p| p.parse::<u16>().ok()))
                .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
                .ok_or_else(|| anyhow!("container port {port} of {} is not published", short(id)))?;
            out.insert(*port, addr);
        }
        Ok(out)
    }

    /// When the container's process last started (RFC 3339), from an inspect.
    pub async fn started_at(&self, id: &str) -> Option<String> {
        self.docker
            .inspect_container(id, None)
            .await
            .ok()?
            .state?
            .started_at
            .filter(|s| !s.starts_with("0001-"))
    }

    /// True while the container runs.
    pub async fn is_running(&self, id: &str) -> bool {
        self.docker
            .inspect_container(id, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.running)
            .unwrap_or(false)
    }

    /// The managed containers of `app` (running ones, or all with `all`).
    pub async fn managed(&self, app: &str, all: bool) -> anyhow::Result<Vec<Managed>> {
        let filters = labels::filters(app);
        let opts = ListContainersOptionsBuilder::default()
            .all(all)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .context("listing the app's containers")?;
        let mut out: Vec<Managed> = list
            .into_iter()
            .map(|c| {
                let l = c.labels.unwrap_or_default();
                let ports = c
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| p.ip.as_deref().is_none_or(|ip| ip == "127.0.0.1"))
                    .filter_map(|p| {
                        p.public_port
                            .map(|h| (p.private_port, SocketAddr::from((Ipv4Addr::LOCALHOST, h))))
                    })
                    .collect();
                Managed {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .unwrap_or_default()
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    version: l.get(labels::VERSION).cloned().unwrap_or_default(),
                    deployed_at: l.get(labels::DEPLOYED_AT).cloned().unwrap_or_default(),
                    running: c
                        .state
                        .is_some_and(|s| s == bollard::models::ContainerSummaryStateEnum::RUNNING),
                    image: c.image.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    created: c.created.unwrap_or_default(),
                    labels: l.into_iter().collect(),
                    ports,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Stop (SIGTERM, then SIGKILL after `grace`) and remove a container; failures are logged.
    pub async fn remove(&self, id: &str, grace: Duration) -> bool {
        let opts = StopContainerOptionsBuilder::default()
            .t(grace.as_secs() as i32)
            .build();
        if let Err(e) = self.docker.stop_container(id, Some(opts)).await {
            tracing::debug!(container = short(id), error = %e, "Stopping container failed");
        }
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(container = short(id), error = %e, "Removing container failed");
                false
            }
        }
    }
}

/// The unix socket of `runtime`, or `None` to follow `DOCKER_HOST` (when set, it always wins) or
/// use Docker's default socket. Podman: `/run/podman/podman.sock` for root (uid 0), else
/// `$XDG_RUNTIME_DIR/podman/podman.sock` (`/run/user/<uid>` when the variable is unset).
pub fn engine_socket(
    runtime: EngineRuntime,
    docker_host: Option<&str>,
    euid: u32,
    xdg_runtime_dir: Option<&std::path::Path>,
) -> Option<String> {
    if docker_host.is_some_and(|h| !h.trim().is_empty()) {
        return None;
    }
    match runtime {
        EngineRuntime::Docker => None,
        EngineRuntime::Podman if euid == 0 => Some("/run/podman/podman.sock".into()),
        EngineRuntime::Podman => {
            let dir = xdg_runtime_dir
                .filter(|d| d.is_absolute())
                .map(|d| d.to_path_buf())
                .unwrap_or_else(|| std::path::PathBuf::from(format!("/run/user/{euid}")));
            Some(dir.join("podman/podman.sock").display().to_string())
        }
    }
}

/// The first 12 characters of an ID.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Make the engine's errors read well (the status code and message, not the Debug dump).
fn explain(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            format!("{message} (HTTP {status_code})")
        }
        bollard::errors::Error::DockerStreamError { error } => error,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
