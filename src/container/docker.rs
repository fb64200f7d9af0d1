//! The container engine, through its HTTP API (bollard): Docker, or Podman's Docker-compatible
//! socket. `DOCKER_HOST` picks the socket; the API version is negotiated (Debian's dockerd
//! speaks 1.41).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    StopContainerOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::labels;
use crate::config::container::EngineRuntime;
use crate::config::run_options::RunOptions;
use crate::registry::oci::credentials;
use crate::registry::oci::location::normalise_host;

/// A connection to the engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

/// An image after a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// `sha256:…` image ID.
    pub id: String,
    /// The repository digest (`sha256:…`), when the engine knows one.
    pub digest: Option<String>,
    /// What containers are created from (the tag reference).
    pub reference: String,
    /// `EXPOSE`d TCP ports of the image.
    pub exposed: Vec<u16>,
}

/// One replica to start.
pub struct RunSpec<'a> {
    pub app: &'a str,
    pub name: String,
    pub image: &'a str,
    pub version: &'a str,
    pub replica: usize,
    pub deployed_at: DateTime<Utc>,
    /// Container ports to publish on 127.0.0.1.
    pub ports: &'a [u16],
    pub cmd: &'a [String],
    pub options: &'a RunOptions,
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

    /// The engine's pull of `repo:tag` from its registry, with the registry's credentials.
    async fn download(&self, reference: &str, repo: &str, tag: &str) -> anyhow::Result<()> {
        let host = normalise_host(&registry_host(reference));
        let creds = credentials::lookup(&host)?.map(|c| DockerCredentials {
            username: Some(c.username),
            password: Some(c.password),
            serveraddress: Some(host.clone()),
            ..Default::default()
        });
        let opts = CreateImageOptionsBuilder::default()
            .from_image(repo)
            .tag(tag)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, creds);
        while let Some(item) = stream.next().await {
            item.map_err(|e| anyhow!(explain(e)))
                .with_context(|| format!("pulling {reference}"))?;
        }
        Ok(())
    }

    /// Pull `reference` (`host/repo:tag` or `host/repo@sha256:…`) with the registry's
    /// credentials, and tag it `tag_as` (`host/repo:tag`) when pulled by digest.
    pub async fn pull(&self, reference: &str, tag_as: Option<&str>) -> anyhow::Result<Pulled> {
        self.fetch(reference, tag_as, false).await
    }

    /// As [`Engine::pull`], but an image the engine already has is used without asking the
    /// registry (a rollback works while the registry is down).
    pub async fn pull_if_missing(&self, reference: &str, tag_as: Option<&str>) -> anyhow::Result<Pulled> {
        self.fetch(reference, tag_as, true).await
    }

    async fn fetch(&self, reference: &str, tag_as: Option<&str>, if_missing: bool) -> anyhow::Result<Pulled> {
        let (repo, tag) = split_reference(reference);
        if !(if_missing && self.docker.inspect_image(reference).await.is_ok()) {
            self.download(reference, &repo, &tag).await?;
        }
        let mut name = reference.to_string();
        if let Some(target) = tag_as.filter(|t| *t != reference) {
            let (trepo, ttag) = split_reference(target);
            let opts = TagImageOptionsBuilder::default().repo(&trepo).tag(&ttag).build();
            self.docker
                .tag_image(reference, Some(opts))
                .await
                .with_context(|| format!("tagging {reference} as {target}"))?;
            name = target.to_string();
        }
        let info = self
            .docker
            .inspect_image(reference)
            .await
            .with_context(|| format!("inspecting {reference}"))?;
        let digest = info.repo_digests.unwrap_or_default().into_iter().find_map(|d| {
            d.split_once('@')
                .filter(|(r, _)| *r == repo)
                .map(|(_, d)| d.to_string())
        });
        let exposed = info
            .config
            .and_then(|c| c.exposed_ports)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.strip_suffix("/tcp").and_then(|n| n.parse().ok()))
            .collect();
        Ok(Pulled {
            id: info.id.unwrap_or_default(),
            digest,
            reference: name,
            exposed,
        })
    }

    /// Create and start one replica; returns its ID.
    pub async fn run(&self, spec: &RunSpec<'_>) -> anyhow::Result<String> {
        let o = spec.options;
        let mut labels: HashMap<String, String> = o.labels.clone().into_iter().collect();
        labels.extend(labels::for_replica(
            spec.app,
            spec.version,
            spec.replica,
            spec.deployed_at,
        ));
        let mut bindings = HashMap::new();
        for port in spec.ports {
            bindings.insert(
                format!("{port}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some(Ipv4Addr::LOCALHOST.to_string()),
                    host_port: Some(String::new()),
                }]),
            );
        }
        let restart = o.restart.as_deref().map(restart_policy).transpose()?;
        let tmpfs: HashMap<String, String> = o
            .tmpfs
            .iter()
            .map(|t| match t.split_once(':') {
                Some((p, opts)) => (p.to_string(), opts.to_string()),
                None => (t.clone(), String::new()),
            })
            .collect();
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.to_vec()),
            entrypoint: o.entrypoint.clone().map(|e| vec![e]),
            env: Some(o.environment()?),
            user: Some(o.user.clone().unwrap_or_else(own_user)),
            working_dir: o.workdir.clone(),
            hostname: o.hostname.clone(),
            labels: Some(labels),
            exposed_ports: Some(spec.ports.iter().map(|p| format!("{p}/tcp")).collect()),
            stop_timeout: o.stop_timeout,
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                binds: (!o.volumes.is_empty()).then(|| o.volumes.clone()),
                tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
                memory: o.memory,
                nano_cpus: o.nano_cpus,
                network_mode: o.network.clone(),
                restart_policy: restart,
                extra_hosts: (!o.add_hosts.is_empty()).then(|| o.add_hosts.clone()),
                readonly_rootfs: o.read_only.then_some(true),
                init: o.init.then_some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        let created = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| anyhow!(explain(e)))
            .with_context(|| format!("creating container {}", spec.name))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            self.remove(&created.id, Duration::ZERO).await;
            return Err(anyhow!(explain(e))).with_context(|| format!("starting container {}", spec.name));
        }
        Ok(created.id)
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

    /// Images of `repository` as (id, tags, created), newest first.
    pub async fn images(&self, repository: &str) -> anyhow::Result<Vec<(String, Vec<String>, i64)>> {
        let filters = HashMap::from([("reference".to_string(), vec![repository.to_string()])]);
        let opts = ListImagesOptionsBuilder::default().filters(&filters).build();
        let mut list: Vec<_> = self
            .docker
            .list_images(Some(opts))
            .await
            .with_context(|| format!("listing images of {repository}"))?
            .into_iter()
            .map(|i| (i.id, i.repo_tags, i.created))
            .collect();
        list.sort_by_key(|i| std::cmp::Reverse(i.2));
        Ok(list)
    }

    /// Remove an image (not forced: an image a container still uses stays).
    pub async fn remove_image(&self, id: &str) -> anyhow::Result<()> {
        let opts = RemoveImageOptionsBuilder::default().force(false).build();
        self.docker
            .remove_image(id, Some(opts), None)
            .await
            .map(|_| ())
            .with_context(|| format!("removing image {id}"))
    }
}

/// `host/repo:tag` → (`host/repo`, `tag`); `host/repo@sha256:x` → (`host/repo`, `sha256:x`);
/// no tag → `latest`.
pub fn split_reference(reference: &str) -> (String, String) {
    if let Some((repo, digest)) = reference.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            reference[..last_slash + i].to_string(),
            reference[last_slash + i + 1..].to_string(),
        ),
        None => (reference.to_string(), "latest".to_string()),
    }
}

/// The registry host of an image reference: the first path component when it looks like a
/// host (has `.` or `:`, or is `localhost`), else Docker Hub.
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
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

/// dewy's own uid:gid, the default `--user` of the containers.
pub fn own_user() -> String {
    format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid())
}

/// The first 12 characters of an ID.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

pub(super) fn restart_policy(v: &str) -> anyhow::Result<RestartPolicy> {
    let (name, count) = crate::config::run_options::restart_parts(v)?;
    let name: RestartPolicyNameEnum = name
        .parse()
        .map_err(|_| anyhow!("restart {v:?}: use no, on-failure[:N], always or unless-stopped"))?;
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
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
mod tests {
    use super::*;

    #[test]
    fn runtime_picks_the_engine_socket_unless_docker_host_is_set() {
        use std::path::Path;
        let xdg = Some(Path::new("/run/user/1000"));
        assert_eq!(engine_socket(EngineRuntime::Docker, None, 0, xdg), None);
        assert_eq!(
            engine_socket(EngineRuntime::Podman, None, 0, xdg).as_deref(),
            Some("/run/podman/podman.sock")
        );
        assert_eq!(
            engine_socket(EngineRuntime::Podman, None, 1000, xdg).as_deref(),
            Some("/run/user/1000/podman/podman.sock")
        );
        assert_eq!(
            engine_socket(EngineRuntime::Podman, None, 1001, None).as_deref(),
            Some("/run/user/1001/podman/podman.sock")
        );
        assert_eq!(
            engine_socket(EngineRuntime::Podman, None, 1001, Some(Path::new("relative"))).as_deref(),
            Some("/run/user/1001/podman/podman.sock")
        );
        for rt in [EngineRuntime::Docker, EngineRuntime::Podman] {
            assert_eq!(engine_socket(rt, Some("unix:///tmp/x.sock"), 1000, xdg), None);
        }
        assert_eq!(
            engine_socket(EngineRuntime::Podman, Some(" "), 0, xdg).as_deref(),
            Some("/run/podman/podman.sock"),
            "an empty DOCKER_HOST is unset"
        );
        assert!("docker".parse::<EngineRuntime>().is_ok());
        let err = "containerd".parse::<EngineRuntime>().expect_err("refused");
        assert!(err.contains("use docker or podman"), "{err}");
    }

    #[test]
    fn references() {
        let s = |r: &str| split_reference(r);
        assert_eq!(
            s("127.0.0.1:5000/test/app:v1"),
            ("127.0.0.1:5000/test/app".into(), "v1".into())
        );
        assert_eq!(
            s("127.0.0.1:5000/test/app"),
            ("127.0.0.1:5000/test/app".into(), "latest".into())
        );
        assert_eq!(
            s("ghcr.io/a/b@sha256:00"),
            ("ghcr.io/a/b".into(), "sha256:00".into())
        );
        assert_eq!(s("nginx:1.25"), ("nginx".into(), "1.25".into()));
        assert!(restart_policy("on-failure:3").is_ok());
        assert_eq!(registry_host("ghcr.io/linyows/myapp:v1"), "ghcr.io");
        assert_eq!(
            registry_host("127.0.0.1:5000/test/app@sha256:ab"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_host("localhost/app"), "localhost");
        assert_eq!(registry_host("library/nginx"), "docker.io");
        assert_eq!(registry_host("nginx"), "docker.io");
        assert!(restart_policy("sometimes").is_err());
    }
}
