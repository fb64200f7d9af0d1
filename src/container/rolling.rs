//! The rolling update: pull, then one new replica at a time (start, health check, into the
//! proxy), then the old replicas out of the proxy, drained and removed one by one. Any failure
//! takes the new replicas out again and leaves the old ones serving.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use chrono::Utc;

use super::docker::{short, Pulled, RunSpec};
use super::{ContainerMode, Replica, STOP_GRACE};
use crate::failure::DeployFailure;
use crate::registry::Release;

impl ContainerMode {
    /// Pull the release's image (by digest when the registry gave one, tagged with its tag).
    pub async fn pull(&self, release: &Release) -> Result<Pulled, DeployFailure> {
        self.fetch(release, false).await
    }

    /// The release's image from the engine when it still has it, else pulled (rollbacks).
    pub async fn pull_if_missing(&self, release: &Release) -> Result<Pulled, DeployFailure> {
        self.fetch(release, true).await
    }

    async fn fetch(&self, release: &Release, if_missing: bool) -> Result<Pulled, DeployFailure> {
        let engine = self.engine().await.map_err(DeployFailure::transient)?;
        let image = &release.artifact;
        tracing::info!(image = %image, "Pulling new image");
        let pulled = if if_missing {
            engine.pull_if_missing(&release.artifact_url, Some(image)).await
        } else {
            engine.pull(&release.artifact_url, Some(image)).await
        };
        let pulled = pulled
            .inspect_err(|e| tracing::error!(error = %format!("{e:#}"), image = %image, "Image pull failed"))
            .map_err(DeployFailure::transient)?;
        tracing::info!(
            digest = %pulled.digest.clone().unwrap_or_else(|| pulled.id.clone()),
            image = %image,
            "Image pull complete"
        );
        Ok(pulled)
    }

    /// Replace the running replicas with `replicas` new ones of `release`.
    pub async fn roll(&self, release: &Release, image: &Pulled) -> Result<Vec<Replica>, DeployFailure> {
        let engine = self.engine().await.map_err(DeployFailure::transient)?;
        let proxy = self.proxy().map_err(DeployFailure::transient)?;
        // Container port behind each proxy port.
        let mut map: Vec<(u16, u16)> = Vec::new();
        for spec in &self.cfg.ports {
            let cport = match spec.container_port {
                Some(p) => p,
                None => match image.exposed.as_slice() {
                    [one] => {
                        tracing::info!(
                            proxy_port = spec.listen.port(),
                            container_port = one,
                            "Auto-detected container port for proxy"
                        );
                        *one
                    }
                    [] => {
                        return Err(DeployFailure::release(
                            anyhow!(
                                "the image does not expose any port; give the container port: --port {}:PORT",
                                spec.listen.port()
                            ),
                            None,
                        ))
                    }
                    many => {
                        return Err(DeployFailure::release(
                            anyhow!(
                                "the image exposes several ports {many:?}; give the container port: --port {}:PORT",
                                spec.listen.port()
                            ),
                            None,
                        ))
                    }
                },
            };
            map.push((spec.listen.port(), cport));
        }
        let mut cports: Vec<u16> = map.iter().map(|(_, c)| *c).collect();
        cports.sort_unstable();
        cports.dedup();

        let old = self.replicas();
        let total = self.cfg.replicas;
        tracing::info!(replicas = total, "Starting container deployment");
        tracing::info!(count = old.len(), "Found existing containers");
        let deployed_at = Utc::now();
        let stamp = self.next_stamp(deployed_at.timestamp());
        let mut new: Vec<Replica> = Vec::new();
        for i in 1..=total {
            let name = super::labels::container_name(self.base_name(), stamp, i);
            tracing::info!(replica = i, total, name = %name, image = %image.reference, "Starting new container");
            for c in &cports {
                tracing::info!(mapping = %format!("127.0.0.1::{c}"), "Adding localhost-only port mapping");
            }
            let step = async {
                let id = engine
                    .run(&RunSpec {
                        app: &self.app,
                        name: name.clone(),
                        image: &image.reference,
                        version: &release.version,
                        replica: i,
                        deployed_at,
                        ports: &cports,
                        cmd: &self.cfg.cmd,
                        options: &self.cfg.run_options,
                    })
                    .await
                    .inspect_err(|e| tracing::error!(error = %format!("{e:#}"), "Container start failed"))?;
                let replica = Replica {
                    id: id.clone(),
                    name: name.clone(),
                    version: release.version.clone(),
                    deployed_at: deployed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    backends: BTreeMap::new(),
                };
                new.push(replica);
                let published = engine.published(&id, &cports).await?;
                for (cport, addr) in &published {
                    tracing::info!(
                        container = short(&id),
                        container_port = cport,
                        host_port = addr.port(),
                        mapped_port = addr.port(),
                        "Container started"
                    );
                }
                let backends: BTreeMap<u16, _> = map
                    .iter()
                    .filter_map(|(p, c)| published.get(c).map(|a| (*p, *a)))
                    .collect();
                let first = map.first().and_then(|(p, _)| backends.get(p)).copied();
                let Some(first) = first else {
                    bail!("no published port to health-check")
                };
                super::health::wait_healthy(
                    engine,
                    &id,
                    first,
                    self.health_path.as_deref(),
                    self.health_timeout,
                )
                .await?;
                if let Some(r) = new.last_mut() {
                    r.backends = backends;
                }
                let serving: Vec<Replica> = old.iter().chain(new.iter()).cloned().collect();
                self.push(&serving).await?;
                tracing::info!(backend_count = serving.len(), backend = %first, "Container added to load balancer");
                Ok::<_, anyhow::Error>(())
            };
            if let Err(e) = step.await {
                // Engine and proxy trouble is retried at the next check; a replica that was
                // created but never got healthy (no backends yet) exited or failed its health
                // check: the image's fault, which marks the version bad.
                let image_fault = new.last().is_some_and(|r| r.backends.is_empty());
                self.undo(&old, &new).await;
                let e = e.context(format!("replica {i} of {total} ({name})"));
                return Err(if image_fault {
                    DeployFailure::release(e, None)
                } else {
                    DeployFailure::transient(e)
                });
            }
        }
        *self.lock() = new.clone();
        for (k, o) in old.iter().enumerate() {
            let serving: Vec<Replica> = old[k + 1..].iter().chain(new.iter()).cloned().collect();
            if let Err(e) = self.push(&serving).await {
                tracing::warn!(error = %format!("{e:#}"), "Removing an old backend from the proxy failed");
            }
            for addr in o.backends.values() {
                match proxy.drain(*addr, self.drain_time).await {
                    Ok(0) => {}
                    Ok(left) => {
                        tracing::warn!(backend = %addr, left, "Drain time over; connections still open are cut")
                    }
                    Err(e) => tracing::warn!(backend = %addr, error = %format!("{e:#}"), "Draining failed"),
                }
            }
            tracing::info!(container = %o.name, "Stopping old container");
            if engine.remove(&o.id, STOP_GRACE).await {
                tracing::info!(container = %o.name, "Managed container stopped");
                tracing::info!(container = %o.name, "Managed container removed");
            }
        }
        tracing::info!(new_containers = new.len(), "Container deployment completed");
        Ok(new)
    }

    /// Rollback of a failed rolling update: the old replicas alone in the proxy, the new ones gone.
    async fn undo(&self, old: &[Replica], new: &[Replica]) {
        tracing::info!("Rolling back deployment");
        if let Err(e) = self.push(old).await {
            tracing::error!(error = %format!("{e:#}"), "Restoring the old backends failed");
        }
        let Ok(engine) = self.engine().await else { return };
        for r in new {
            tracing::info!(container = %r.name, "Removing failed container");
            engine.remove(&r.id, STOP_GRACE).await;
        }
    }
}
