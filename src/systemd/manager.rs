//! The few calls of systemd's manager (`org.freedesktop.systemd1`) dewy makes on the system bus:
//! start a transient scope around a process, list and inspect units by name, stop one, and ask
//! which job is running on dewy's own unit (a stop or a restart).

use std::time::Duration;

use anyhow::{bail, Context};
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::{proxy, Connection};

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, Vec<(&str, Value<'_>)>)],
    ) -> zbus::Result<OwnedObjectPath>;
    #[allow(clippy::type_complexity)]
    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<
        Vec<(
            String,
            String,
            String,
            String,
            String,
            String,
            OwnedObjectPath,
            u32,
            String,
            OwnedObjectPath,
        )>,
    >;
    fn get_unit_processes(&self, name: &str) -> zbus::Result<Vec<(String, u32, String)>>;
    #[zbus(name = "GetUnitByPID")]
    fn get_unit_by_pid(&self, pid: u32) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
}

#[proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Unit {
    #[zbus(property)]
    fn id(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn description(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn job(&self) -> zbus::Result<(u32, OwnedObjectPath)>;
}

#[proxy(
    interface = "org.freedesktop.systemd1.Job",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Job {
    #[zbus(property)]
    fn job_type(&self) -> zbus::Result<String>;
}

/// A unit as listed: its name and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUnit {
    pub name: String,
    pub description: String,
    pub active_state: String,
}

/// systemd's manager on the system bus.
#[derive(Clone)]
pub struct Systemd {
    conn: Connection,
}

impl Systemd {
    /// Connect to the system bus (the manager answers there).
    pub async fn connect() -> anyhow::Result<Systemd> {
        let conn = Connection::system()
            .await
            .context("connecting to the system bus for systemd's manager")?;
        let s = Systemd { conn };
        // Fail now, not at the first deploy, when the manager does not answer.
        s.manager()
            .await?
            .get_unit_by_pid(std::process::id())
            .await
            .context("asking systemd for dewy's own unit")?;
        Ok(s)
    }

    async fn manager(&self) -> anyhow::Result<ManagerProxy<'static>> {
        ManagerProxy::new(&self.conn)
            .await
            .context("creating the systemd manager proxy")
    }

    async fn unit(&self, path: OwnedObjectPath) -> anyhow::Result<UnitProxy<'static>> {
        UnitProxy::builder(&self.conn)
            .path(path)?
            .cache_properties(proxy::CacheProperties::No)
            .build()
            .await
            .context("creating a systemd unit proxy")
    }

    /// Move `pid` into a new transient scope `name` with `properties` (beyond the PID), and wait
    /// until the scope is active.
    pub async fn start_scope(
        &self,
        name: &str,
        pid: u32,
        properties: Vec<(&str, Value<'_>)>,
    ) -> anyhow::Result<()> {
        let mut props = vec![("PIDs", Value::from(vec![pid]))];
        props.extend(properties);
        self.manager()
            .await?
            .start_transient_unit(name, "fail", &props, &[])
            .await
            .with_context(|| format!("starting the transient unit {name}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.state(name).await?.as_deref() {
                Some("active") => return Ok(()),
                Some("failed") => bail!("systemd could not start {name}"),
                _ if tokio::time::Instant::now() >= deadline => {
                    bail!("{name} did not become active within 10 s")
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The active state of unit `name`, `None` when systemd does not know it.
    pub async fn state(&self, name: &str) -> anyhow::Result<Option<String>> {
        let units = self.list(&[name]).await?;
        Ok(units.into_iter().find(|u| u.name == name).map(|u| u.active_state))
    }

    /// The loaded units whose names match `patterns` (shell globs).
    pub async fn list(&self, patterns: &[&str]) -> anyhow::Result<Vec<ListedUnit>> {
        let units = self
            .manager()
            .await?
            .list_units_by_patterns(&[], patterns)
            .await
            .context("listing units")?;
        Ok(units
            .into_iter()
            .map(|u| ListedUnit {
                name: u.0,
                description: u.1,
                active_state: u.3,
            })
            .collect())
    }

    /// The processes of unit `name` as (pid, command line).
    pub async fn processes(&self, name: &str) -> anyhow::Result<Vec<(u32, String)>> {
        Ok(self
            .manager()
            .await?
            .get_unit_processes(name)
            .await
            .with_context(|| format!("listing the processes of {name}"))?
            .into_iter()
            .map(|(_, pid, cmd)| (pid, cmd))
            .collect())
    }

    /// Ask systemd to stop unit `name` (its kill settings apply).
    pub async fn stop(&self, name: &str) -> anyhow::Result<()> {
        self.manager()
            .await?
            .stop_unit(name, "replace")
            .await
            .with_context(|| format!("stopping {name}"))?;
        Ok(())
    }

    /// The type of the job running on the unit of this process (`stop`, `restart`…), if any.
    pub async fn own_job(&self) -> anyhow::Result<Option<String>> {
        let path = self
            .manager()
            .await?
            .get_unit_by_pid(std::process::id())
            .await
            .context("asking systemd for dewy's own unit")?;
        let (id, job) = self
            .unit(path)
            .await?
            .job()
            .await
            .context("reading the unit's job")?;
        if id == 0 {
            return Ok(None);
        }
        let job = JobProxy::builder(&self.conn)
            .path(job)?
            .cache_properties(proxy::CacheProperties::No)
            .build()
            .await
            .context("creating a systemd job proxy")?;
        Ok(Some(job.job_type().await.context("reading the job type")?))
    }
}
