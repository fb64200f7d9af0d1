//! Server-mode keys: the app's command, ports, readiness, health path and the time limits.

use std::time::Duration;

use super::file::{Layer, Mode, Readiness};
use super::{invalid, ConfigError};

/// Default time an old generation of the app gets to finish its requests.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(30);
/// Default time a new generation of the app gets to become ready.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `alive` readiness delay.
pub const DEFAULT_ALIVE_DELAY: Duration = Duration::from_secs(2);

/// The resolved server-mode keys (empty command and ports in the other modes).
pub(super) struct Server {
    pub command: Vec<String>,
    pub ports: Vec<String>,
    pub drain_time: Duration,
    pub readiness: Readiness,
    pub health_path: Option<String>,
    pub health_timeout: Duration,
    pub alive_delay: Duration,
}

/// Check the server-mode keys of `l` for `mode`.
pub(super) fn resolve(l: &Layer, mode: Mode) -> Result<Server, ConfigError> {
    let has_ports = l.port.as_ref().is_some_and(|p| !p.is_empty());
    let has_command = l.command.as_ref().is_some_and(|c| !c.is_empty());
    match mode {
        Mode::Assets if has_ports => return Err(invalid("port applies to server and container modes only")),
        Mode::Assets | Mode::Container if has_command => {
            return Err(invalid("command applies to server mode only"))
        }
        Mode::Server if !has_command => {
            return Err(invalid(
                "server mode needs the app's command: command = [\"./current/app\"] or `dewy server … -- ./current/app`",
            ))
        }
        Mode::Server => {
            crate::supervise::ports::parse(l.port.as_deref().unwrap_or_default())
                .map_err(|e| invalid(format!("{e:#}")))?;
        }
        Mode::Container => {
            crate::proxy::spec::parse_all(l.port.as_deref().unwrap_or_default())
                .map_err(|e| invalid(format!("{e:#}")))?;
        }
        _ => {}
    }
    let health_timeout = l.health_timeout.map_or(DEFAULT_HEALTH_TIMEOUT, |d| d.0);
    if health_timeout.is_zero() {
        return Err(invalid("health-timeout must be more than 0"));
    }
    let health_path = l.health_path.clone().filter(|p| !p.trim().is_empty()).map(|p| {
        if p.starts_with('/') {
            p
        } else {
            format!("/{p}")
        }
    });
    let readiness = l.readiness.unwrap_or(Readiness::Auto);
    if readiness == Readiness::Health && health_path.is_none() {
        return Err(invalid("readiness = \"health\" needs health-path"));
    }
    Ok(Server {
        command: l.command.clone().unwrap_or_default(),
        ports: l.port.clone().unwrap_or_default(),
        drain_time: l.drain_time.map_or(DEFAULT_DRAIN_TIME, |d| d.0),
        readiness,
        health_path,
        health_timeout,
        alive_delay: l.alive_delay.map_or(DEFAULT_ALIVE_DELAY, |d| d.0),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{load, Sources};
    use super::*;

    #[test]
    fn server_mode_settings() {
        let mut sources = Sources::default();
        sources.flags.registry = Some("file:///srv/rel".into());
        sources.flags.mode = Some(Mode::Server);
        let err = load("app", &sources).unwrap_err().to_string();
        assert!(err.contains("needs the app's command"), "{err}");
        sources.flags.command = Some(vec!["./current/app".into()]);
        sources.flags.port = Some(vec!["8000-8200".into()]);
        let err = load("app", &sources).unwrap_err().to_string();
        assert!(err.contains("8000-8200"), "{err}");
        sources.flags.port = Some(vec!["8080,8081".into()]);
        sources.flags.readiness = Some(Readiness::Health);
        let err = load("app", &sources).unwrap_err().to_string();
        assert!(err.contains("needs health-path"), "{err}");
        sources.flags.health_path = Some("healthz".into());
        let s = load("app", &sources).unwrap();
        assert_eq!(s.health_path.as_deref(), Some("/healthz"));
        assert_eq!(s.drain_time, DEFAULT_DRAIN_TIME);
        assert_eq!(s.health_timeout, DEFAULT_HEALTH_TIMEOUT);
        assert_eq!(s.command, ["./current/app"]);
        sources.flags.mode = Some(Mode::Assets);
        let err = load("app", &sources).unwrap_err().to_string();
        assert!(err.contains("port applies to server"), "{err}");
    }
}
