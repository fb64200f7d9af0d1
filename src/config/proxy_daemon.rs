//! What `dewy-proxy APP` reads from the app's config: the `port` list (container mode), where the
//! table is saved, the shutdown grace and logging. Other keys belong to the deployer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::port_spec::PortSpec;
use crate::config::file::{self, Layer, Mode};
use crate::config::{ranges, ConfigError, DEFAULT_DRAIN_TIME};
use crate::logging::LogFormat;

/// The proxy daemon's settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub specs: Vec<PortSpec>,
    /// `proxy.json`: `$STATE_DIRECTORY` (the unit's `StateDirectory=dewy/APP/proxy`), else
    /// `<root>/proxy` with `root` from the config or `/var/lib/dewy/APP`.
    pub state_file: PathBuf,
    /// Where the metrics are served: `$RUNTIME_DIRECTORY/metrics.sock` (the unit's
    /// `RuntimeDirectory=dewy-proxy/APP`), else beside `proxy.json`.
    pub metrics_socket: PathBuf,
    /// Time open requests get at shutdown (`drain-time`).
    pub grace: Duration,
    /// `proxy-idle-timeout` (zero: never).
    pub idle_timeout: Duration,
    /// `proxy-max-connections` (`None`: derived from the descriptor limit).
    pub max_connections: Option<usize>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
}

/// Read `app`'s config (an explicit file, or the search directories) for the proxy.
pub fn load(app: &str, config: Option<&Path>) -> Result<ProxySettings, ConfigError> {
    crate::config::validate_app_name(app)?;
    let files = match config {
        Some(path) => file::explicit(path)?,
        None => {
            let dirs: Vec<PathBuf> = file::SEARCH_DIRS.iter().map(PathBuf::from).collect();
            file::locate(app, &dirs)
        }
    };
    let layer = file::load_files(&files)?;
    from_layer(app, &layer)
}

fn from_layer(app: &str, l: &Layer) -> Result<ProxySettings, ConfigError> {
    let invalid = |m: String| ConfigError::Invalid(m);
    match l.mode {
        Some(Mode::Container) => {}
        other => {
            return Err(invalid(format!(
                "dewy-proxy serves container mode, but {app} is in {} mode (set mode = \"container\")",
                other.unwrap_or(Mode::Assets)
            )))
        }
    }
    let ports = l.port.as_deref().unwrap_or_default();
    crate::config::no_empty_port(ports)?;
    crate::config::proxy_ports_given_once(ports)?;
    let specs = crate::config::port_spec::parse_all(ports).map_err(|e| invalid(format!("{e:#}")))?;
    let dir = crate::systemd::state_directory().unwrap_or_else(|| {
        l.root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/dewy").join(app))
            .join("proxy")
    });
    Ok(ProxySettings {
        specs,
        state_file: dir.join("proxy.json"),
        metrics_socket: crate::systemd::runtime_file(&dir, "metrics.sock"),
        grace: ranges::DRAIN_TIME.resolve(l.drain_time, DEFAULT_DRAIN_TIME)?,
        idle_timeout: ranges::PROXY_IDLE_TIMEOUT.resolve(
            l.proxy_idle_timeout,
            crate::config::container::DEFAULT_PROXY_IDLE_TIMEOUT,
        )?,
        max_connections: crate::config::container::check_max_connections(l.proxy_max_connections)?,
        log_level: l.log_level.clone(),
        log_format: l.log_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_mode_ports() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("web.toml");
        std::fs::write(&f, "mode = \"server\"\nregistry = \"file:///x\"\n").unwrap();
        let err = load("web", Some(&f)).unwrap_err().to_string();
        assert!(err.contains("container mode"), "{err}");
        std::fs::write(&f, "mode = \"container\"\nport = [\"8080:80\", \"bad\"]\n").unwrap();
        assert!(load("web", Some(&f)).is_err());
        std::fs::write(
            &f,
            "mode = \"container\"\nport = [\"8080:80\", \"127.0.0.1:9000/tcp\"]\nroot = \"/srv/web\"\ndrain-time = \"5s\"\n",
        )
        .unwrap();
        let s = load("web", Some(&f)).unwrap();
        assert_eq!(s.specs.len(), 2);
        assert_eq!(s.grace, Duration::from_secs(5));
        assert_eq!(s.idle_timeout, Duration::from_secs(300));
        if crate::systemd::state_directory().is_none() {
            assert_eq!(s.state_file, PathBuf::from("/srv/web/proxy/proxy.json"));
        }
    }
}
