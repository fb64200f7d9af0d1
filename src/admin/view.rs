//! The JSON answers of the admin API, in Go Dewy's shapes with clearer fields beside them.

use serde::{Deserialize, Serialize};

use crate::config::Mode;
use crate::container::ContainerDetail;

/// `GET /api/status`. The first five fields are Go Dewy's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// The app name.
    pub name: String,
    /// Go Dewy's command code: 0 server, 1 assets, 2 container (see `mode`).
    pub command: u8,
    /// The live version, `""` before the first deploy.
    pub current_version: String,
    /// Backends in the proxy, over all proxy ports (container mode; 0 otherwise).
    pub proxy_backends: usize,
    /// Server mode: the app runs. False in the other modes, as in Go Dewy.
    pub is_running: bool,
    /// `server`, `assets` or `container`: the same as `command`, in words.
    pub mode: String,
    /// The version live before the current one, if any.
    pub previous_version: Option<String>,
    /// What the deployer does now (`idle`, `deploying v1.2.3`…).
    pub activity: String,
    /// Container mode: the replicas wanted and those in the proxy (0 otherwise).
    pub desired_replicas: usize,
    pub running_replicas: usize,
    /// The release source.
    pub registry: String,
    /// This dewy's version.
    pub dewy_version: String,
}

/// Go Dewy's integer code of a mode.
pub fn command_code(mode: Mode) -> u8 {
    match mode {
        Mode::Server => 0,
        Mode::Assets => 1,
        Mode::Container => 2,
    }
}

/// `GET /api/containers`: `containers` is `null` outside container mode, as in Go Dewy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainersView {
    pub containers: Option<Vec<ContainerView>>,
}

/// One running container. The first eight fields are Go Dewy's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerView {
    pub id: String,
    pub name: String,
    pub image: String,
    pub status: String,
    pub ip_port: String,
    pub started_at: String,
    pub deployed_at: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// The release (image tag) the container runs.
    #[serde(default)]
    pub version: String,
}

impl From<ContainerDetail> for ContainerView {
    fn from(d: ContainerDetail) -> Self {
        ContainerView {
            id: d.id,
            name: d.name,
            image: d.image,
            status: d.status,
            ip_port: d.ip_port,
            started_at: d.started_at,
            deployed_at: d.deployed_at,
            labels: d.labels,
            version: d.version,
        }
    }
}

/// What the admin API reports on: the deployer of this process (or a stand-in in tests).
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    fn status(&self) -> StatusView;
    /// `None` outside container mode.
    async fn containers(&self) -> anyhow::Result<Option<Vec<ContainerView>>>;
}

#[async_trait::async_trait]
impl Source for crate::deploy::Deployer {
    fn status(&self) -> StatusView {
        let st = crate::deploy::Deployer::status(self);
        let mode = self.settings().mode;
        let (desired, running) = self.replica_counts().unwrap_or((0, 0));
        StatusView {
            name: st.app.clone(),
            command: command_code(mode),
            current_version: st.live.as_ref().map(|l| l.version.clone()).unwrap_or_default(),
            proxy_backends: st.replicas.iter().map(|r| r.backends.len()).sum(),
            is_running: mode == Mode::Server && self.app_running(),
            mode: mode.to_string(),
            previous_version: st.previous.as_ref().map(|l| l.version.clone()),
            activity: st.activity.clone(),
            desired_replicas: desired,
            running_replicas: running,
            registry: st.registry.clone(),
            dewy_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    async fn containers(&self) -> anyhow::Result<Option<Vec<ContainerView>>> {
        let details = self.container_details().await.map_err(anyhow::Error::from)?;
        Ok(details.map(|list| list.into_iter().map(ContainerView::from).collect()))
    }
}
