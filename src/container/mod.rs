//! Container mode: OCI images run as labelled containers on 127.0.0.1-only ports, replaced by a
//! rolling update behind dewy's proxy, re-adopted after a restart of the deployer.

pub mod docker;
mod health;
pub mod labels;
pub mod proxy_control;
mod rolling;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::config::container::{ContainerSettings, OnStop};
use crate::config::Settings;
pub use docker::Engine;
pub use proxy_control::ProxyControl;

/// Time an old or failed container gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A replica in the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Replica {
    pub id: String,
    pub name: String,
    pub version: String,
    pub deployed_at: String,
    /// Proxy port → the replica's 127.0.0.1 address behind it.
    pub backends: BTreeMap<u16, SocketAddr>,
}

/// A running container of the app as the admin API shows it (Go Dewy's `/api/containers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerDetail {
    pub id: String,
    pub name: String,
    pub image: String,
    pub status: String,
    /// The 127.0.0.1 address behind the first proxy port (or the only published port).
    pub ip_port: String,
    /// When the container's process started (RFC 3339).
    pub started_at: String,
    /// The `dewy.deployed_at` label, else `started_at`.
    pub deployed_at: String,
    pub labels: BTreeMap<String, String>,
    /// The release (image tag) the container runs.
    pub version: String,
}

/// One app's containers and the proxy in front of them.
pub struct ContainerMode {
    app: String,
    cfg: ContainerSettings,
    health_path: Option<String>,
    health_timeout: Duration,
    drain_time: Duration,
    engine: tokio::sync::OnceCell<Engine>,
    proxy: OnceLock<Arc<dyn ProxyControl>>,
    replicas: Mutex<Vec<Replica>>,
    /// The stamp of the newest container names, so that names never repeat.
    last_stamp: AtomicI64,
    /// False while the proxy may lack the backends of the replicas (adoption could not reach it).
    synced: AtomicBool,
    /// True once the running containers were listed (adoption done, whatever the proxy said).
    adopted: AtomicBool,
}

impl ContainerMode {
    pub fn new(settings: &Settings) -> anyhow::Result<Arc<Self>> {
        let cfg = settings.container.clone().context("container settings missing")?;
        Ok(Arc::new(Self {
            app: settings.app.clone(),
            cfg,
            health_path: settings.health_path.clone(),
            health_timeout: settings.health_timeout,
            drain_time: settings.drain_time,
            engine: tokio::sync::OnceCell::new(),
            proxy: OnceLock::new(),
            replicas: Mutex::new(Vec::new()),
            last_stamp: AtomicI64::new(0),
            synced: AtomicBool::new(true),
            adopted: AtomicBool::new(false),
        }))
    }

    /// Use `proxy` for the backends; only the first call counts.
    pub fn set_proxy(&self, proxy: Arc<dyn ProxyControl>) {
        let _ = self.proxy.set(proxy);
    }

    /// The engine, connected on first use.
    pub async fn engine(&self) -> anyhow::Result<&Engine> {
        self.engine
            .get_or_try_init(|| Engine::connect(self.cfg.runtime))
            .await
    }

    fn proxy(&self) -> anyhow::Result<&Arc<dyn ProxyControl>> {
        self.proxy
            .get()
            .context("no proxy to send backends to (dewy-proxy is not connected)")
    }

    /// How many replicas are in the proxy now.
    pub fn replica_count(&self) -> usize {
        self.lock().len()
    }

    /// The replicas in the proxy now.
    pub fn replicas(&self) -> Vec<Replica> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Replica>> {
        self.replicas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Name base of the containers (`--name` in the run options, else the app).
    fn base_name(&self) -> &str {
        self.cfg.run_options.name.as_deref().unwrap_or(&self.app)
    }

    /// The name stamp of a new deploy at `now` (unix seconds), after any stamp used before.
    fn next_stamp(&self, now: i64) -> i64 {
        let prev = self.last_stamp.fetch_max(now, Ordering::SeqCst);
        if prev >= now {
            self.last_stamp.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            now
        }
    }

    /// How many replicas a deploy starts.
    pub fn desired_replicas(&self) -> usize {
        self.cfg.replicas
    }

    /// The proxy ports, in configuration order.
    pub fn proxy_ports(&self) -> Vec<u16> {
        self.cfg.ports.iter().map(|p| p.listen.port()).collect()
    }

    /// Send the backends of `replicas` for every proxy port.
    async fn push(&self, replicas: &[Replica]) -> anyhow::Result<()> {
        let proxy = self.proxy()?;
        for port in self.proxy_ports() {
            let list: Vec<SocketAddr> = replicas
                .iter()
                .filter_map(|r| r.backends.get(&port).copied())
                .collect();
            proxy.set_backends(port, list).await?;
        }
        Ok(())
    }

    /// After a restart: take the running containers of `live` back into the proxy; remove
    /// managed containers of other versions (left by an interrupted deploy).
    pub async fn adopt(&self, live: Option<&str>) -> anyhow::Result<usize> {
        let engine = self.engine().await?;
        let running = engine.managed(&self.app, false).await?;
        self.adopted.store(true, Ordering::SeqCst);
        let mut adopted = Vec::new();
        for m in running {
            if let Some(stamp) = labels::stamp_of(&m.name) {
                self.last_stamp.fetch_max(stamp, Ordering::SeqCst);
            }
            if Some(m.version.as_str()) != live {
                tracing::warn!(container = %m.name, dewy_version = %m.version, "Removing a container that is not of the live version");
                engine.remove(&m.id, STOP_GRACE).await;
                continue;
            }
            let backends = self.backends_of(&m.ports);
            if backends.len() != self.cfg.ports.len() {
                tracing::warn!(container = %m.name, "Not adopting a container whose ports do not match the configuration");
                engine.remove(&m.id, STOP_GRACE).await;
                continue;
            }
            tracing::info!(container = %m.name, dewy_version = %m.version, "Adopted running container");
            adopted.push(Replica {
                id: m.id,
                name: m.name,
                version: m.version,
                deployed_at: m.deployed_at,
                backends,
            });
        }
        let n = adopted.len();
        if n > 0 && n < self.cfg.replicas {
            tracing::warn!(
                running = n,
                desired = self.cfg.replicas,
                "Fewer replicas than configured are running"
            );
        }
        // Known before the proxy is told, so that a later deploy replaces them (never orphans).
        *self.lock() = adopted.clone();
        self.synced.store(false, Ordering::SeqCst);
        self.push(&adopted).await?;
        self.synced.store(true, Ordering::SeqCst);
        Ok(n)
    }

    /// Before a deploy: adopt the running containers if the engine could not be reached at
    /// start (so they are replaced, never duplicated), and send the replicas' backends again if
    /// the proxy could not be reached.
    pub async fn catch_up(&self, live: Option<&str>) {
        if !self.adopted.load(Ordering::SeqCst) {
            match self.adopt(live).await {
                Ok(n) => tracing::info!(count = n, "Found existing containers"),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "Adopting the running containers failed"),
            }
            return;
        }
        if self.synced.load(Ordering::SeqCst) {
            return;
        }
        match self.push(&self.replicas()).await {
            Ok(()) => {
                self.synced.store(true, Ordering::SeqCst);
                tracing::info!(backend_count = self.replica_count(), "Proxy backends restored");
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "The proxy still lacks the replicas' backends")
            }
        }
    }

    /// When dewy stops: remove the containers from the proxy and stop them, or leave them
    /// running for the next start to adopt.
    pub async fn shutdown(&self) {
        let replicas = self.replicas();
        if self.cfg.on_stop == OnStop::Keep {
            tracing::info!(count = replicas.len(), "Managed containers kept running");
            return;
        }
        tracing::info!("Cleaning up managed containers");
        let _ = self.push(&[]).await;
        let Ok(engine) = self.engine().await else { return };
        let mut cleaned = 0;
        let all = engine.managed(&self.app, false).await.unwrap_or_default();
        for m in all {
            tracing::info!(container = %m.name, "Stopping managed container");
            if engine.remove(&m.id, STOP_GRACE).await {
                tracing::info!(container = %m.name, "Removing managed container");
                cleaned += 1;
            }
        }
        self.lock().clear();
        tracing::info!(containers_cleaned = cleaned, "Cleanup completed");
    }

    /// Proxy port → address of a container whose container ports are published at `published`
    /// (a port given without container port takes the only one published).
    fn backends_of(&self, published: &BTreeMap<u16, SocketAddr>) -> BTreeMap<u16, SocketAddr> {
        self.cfg
            .ports
            .iter()
            .filter_map(|spec| {
                let addr = match spec.container_port {
                    Some(cp) => published.get(&cp),
                    None if published.len() == 1 => published.values().next(),
                    None => None,
                };
                addr.map(|a| (spec.listen.port(), *a))
            })
            .collect()
    }

    /// `dewy container list`: (name, upstream, deploy time, version) of the running containers.
    pub async fn list(&self) -> anyhow::Result<Vec<(String, String, String, String)>> {
        let engine = self.engine().await?;
        let first = self.cfg.ports.first().map(|p| p.listen.port());
        Ok(engine
            .managed(&self.app, false)
            .await?
            .into_iter()
            .map(|m| {
                let backends = self.backends_of(&m.ports);
                let upstream = first
                    .and_then(|p| backends.get(&p))
                    .or_else(|| m.ports.values().next())
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                (m.name, upstream, m.deployed_at, m.version)
            })
            .collect())
    }

    /// The admin API's view of the running containers (one inspect each, for the start time).
    pub async fn details(&self) -> anyhow::Result<Vec<ContainerDetail>> {
        let engine = self.engine().await?;
        let first = self.cfg.ports.first().map(|p| p.listen.port());
        let mut out = Vec::new();
        for m in engine.managed(&self.app, false).await? {
            let backends = self.backends_of(&m.ports);
            let ip_port = first
                .and_then(|p| backends.get(&p))
                .or_else(|| m.ports.values().next())
                .map(|a| a.to_string())
                .unwrap_or_default();
            let started_at = match engine.started_at(&m.id).await {
                Some(t) => t,
                None => chrono::DateTime::from_timestamp(m.created, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            };
            let deployed_at = if m.deployed_at.is_empty() {
                started_at.clone()
            } else {
                m.deployed_at
            };
            out.push(ContainerDetail {
                id: m.id,
                name: m.name,
                image: m.image,
                status: m.state,
                ip_port,
                started_at,
                deployed_at,
                labels: m.labels,
                version: m.version,
            });
        }
        Ok(out)
    }

    /// After a deploy: remove exited managed containers and keep the newest `keep-images`
    /// images of the repository.
    pub async fn cleanup(&self, repository: &str) {
        let Ok(engine) = self.engine().await else { return };
        match engine.managed(&self.app, true).await {
            Ok(all) => {
                let mut reaped = 0;
                for m in all.iter().filter(|m| !m.running) {
                    if engine.remove(&m.id, Duration::ZERO).await {
                        reaped += 1;
                    }
                }
                if reaped > 0 {
                    tracing::info!(count = reaped, "Reaped exited containers");
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "Listing exited containers failed"),
        }
        tracing::info!(count = self.cfg.keep_images, "Keep images");
        let images = match engine.images(repository).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Listing images failed");
                return;
            }
        };
        for (id, tags, _) in images.into_iter().skip(self.cfg.keep_images) {
            let tag = tags
                .iter()
                .filter_map(|t| t.rsplit_once(':').map(|(_, t)| t.to_string()))
                .collect::<Vec<_>>()
                .join(",");
            tracing::info!(id = %id, tag = %tag, "Removing old image");
            if let Err(e) = engine.remove_image(&id).await {
                tracing::warn!(id = %id, error = %format!("{e:#}"), "Removing old image failed");
            }
        }
    }
}
