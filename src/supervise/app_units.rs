//! Under systemd, each generation of the app runs in its own transient scope,
//! `dewy-app-<app>-<generation>.scope`, outside the deployer's cgroup: a stop, crash, SIGKILL or
//! upgrade of the deployer leaves it serving, and the next deployer adopts it by its unit.
//! The scope's description carries the version (`dewy web v1.2.3, generation 4`).

use anyhow::Context;
use nix::unistd::{getpgid, Pid};
use zbus::zvariant::Value;

use crate::config::app_unit::UnitProperty;
use crate::systemd::manager::Systemd;

/// The app's units under systemd.
pub struct AppUnits {
    systemd: Systemd,
    app: String,
}

/// A running generation found in its unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub unit: String,
    pub number: u64,
    pub version: String,
    /// The generation's main process (the leader of its process group).
    pub pid: i32,
}

/// True when this process runs as a systemd service (the manager's `INVOCATION_ID` is set and
/// systemd is the init system): then the app gets transient units.
pub fn under_systemd() -> bool {
    std::env::var_os("INVOCATION_ID").is_some() && std::path::Path::new("/run/systemd/system").exists()
}

/// The unit name of generation `number` of `app` (app names are letters, digits, `-`, `_`, `.`:
/// valid in unit names as they are).
pub fn unit_name(app: &str, number: u64) -> String {
    format!("dewy-app-{app}-{number}.scope")
}

fn description(app: &str, version: &str, number: u64) -> String {
    format!("dewy {app} {version}, generation {number}")
}

/// The generation number of a unit of `app`, from its name.
fn number_of(app: &str, unit: &str) -> Option<u64> {
    unit.strip_prefix(&format!("dewy-app-{app}-"))?
        .strip_suffix(".scope")?
        .parse()
        .ok()
}

/// The version a unit's description names.
fn version_of(app: &str, number: u64, description: &str) -> Option<String> {
    description
        .strip_prefix(&format!("dewy {app} "))?
        .strip_suffix(&format!(", generation {number}"))
        .map(str::to_string)
}

impl AppUnits {
    /// Connect to systemd's manager.
    pub async fn connect(app: &str) -> anyhow::Result<AppUnits> {
        Ok(AppUnits {
            systemd: Systemd::connect().await?,
            app: app.to_string(),
        })
    }

    /// Move the just-started generation `number` (process group leader `pid`) into its own scope:
    /// SIGTERM on stop with `drain` before SIGKILL, the configured resource limits.
    pub async fn enclose(
        &self,
        number: u64,
        version: &str,
        pid: i32,
        drain: std::time::Duration,
        limits: &[UnitProperty],
    ) -> anyhow::Result<String> {
        let name = unit_name(&self.app, number);
        let pid = u32::try_from(pid).context("negative pid")?;
        let timeout = u64::try_from(drain.as_micros()).unwrap_or(u64::MAX);
        let mut props: Vec<(&str, Value<'_>)> = vec![
            (
                "Description",
                Value::from(description(&self.app, version, number)),
            ),
            (
                "KillSignal",
                Value::from(nix::sys::signal::Signal::SIGTERM as i32),
            ),
            ("TimeoutStopUSec", Value::from(timeout)),
            ("SendSIGKILL", Value::from(true)),
            ("CollectMode", Value::from("inactive-or-failed")),
        ];
        props.extend(limits.iter().map(|p| (p.name, Value::from(p.value))));
        self.systemd.start_scope(&name, pid, props).await?;
        Ok(name)
    }

    /// The generations of this app running in their units, newest first.
    pub async fn running(&self) -> anyhow::Result<Vec<Found>> {
        let pattern = format!("dewy-app-{}-*.scope", self.app);
        let mut found = Vec::new();
        for u in self.systemd.list(&[&pattern]).await? {
            if u.active_state != "active" {
                continue;
            }
            let Some(number) = number_of(&self.app, &u.name) else {
                continue;
            };
            let Some(version) = version_of(&self.app, number, &u.description) else {
                tracing::warn!(unit = %u.name, "An app unit without dewy's description; left alone");
                continue;
            };
            let processes = self.systemd.processes(&u.name).await?;
            let leader = processes
                .iter()
                .map(|(p, _)| *p as i32)
                .find(|p| getpgid(Some(Pid::from_raw(*p))).is_ok_and(|g| g.as_raw() == *p));
            match leader {
                Some(pid) => found.push(Found {
                    unit: u.name,
                    number,
                    version,
                    pid,
                }),
                None => tracing::warn!(unit = %u.name, "An app unit whose main process is gone"),
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.number));
        Ok(found)
    }

    /// Stop a unit (its kill settings apply: SIGTERM, the drain time, SIGKILL).
    pub async fn stop(&self, unit: &str) -> anyhow::Result<()> {
        self.systemd.stop(unit).await
    }

    /// True when systemd is restarting the deployer's own unit (`systemctl restart`, a package
    /// upgrade's try-restart): the app then stays for the next deployer. A stop, or a signal
    /// with no job behind it, stops the app.
    pub async fn deployer_restarting(&self) -> bool {
        match self.systemd.own_job().await {
            Ok(Some(job)) => job.contains("restart"),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Could not ask systemd whether this is a restart; stopping the app");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descriptions_round_trip() {
        let name = unit_name("web.api", 12);
        assert_eq!(name, "dewy-app-web.api-12.scope");
        assert_eq!(number_of("web.api", &name), Some(12));
        assert_eq!(number_of("web", &name), None, "another app's unit");
        assert_eq!(number_of("web.api", "dewy-app-web.api-x.scope"), None);
        let d = description("web.api", "v1.2.3+blue", 12);
        assert_eq!(version_of("web.api", 12, &d).as_deref(), Some("v1.2.3+blue"));
        assert_eq!(version_of("web.api", 13, &d), None, "the generation must agree");
    }
}
