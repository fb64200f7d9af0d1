//! Starting a replica: the container's create body (labels, published ports, the run
//! options) and its start, and the restart policy and default user it gets.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use chrono::{DateTime, Utc};

use super::{explain, Engine};
use crate::config::run_options::RunOptions;
use crate::container::labels;

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

impl Engine {
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
}

/// dewy's own uid:gid, the default `--user` of the containers.
pub fn own_user() -> String {
    format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid())
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
