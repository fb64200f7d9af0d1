//! Server-mode keys: the app's command, ports, readiness, health path and the time limits.

use std::time::Duration;

use super::file::{Layer, Mode, Readiness};
use super::{invalid, ranges, ConfigError};

/// Default time an old generation of the app gets to finish its requests.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(30);
/// Default time a new generation of the app gets to become ready.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `alive` readiness delay.
pub const DEFAULT_ALIVE_DELAY: Duration = Duration::from_secs(2);
/// Default time after a release goes live during which its crash loop is blamed on it.
pub const DEFAULT_BLAME_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The resolved server-mode keys (empty command and ports in the other modes).
pub(super) struct Server {
    pub command: Vec<String>,
    pub ports: Vec<std::net::SocketAddr>,
    pub drain_time: Duration,
    pub readiness: Readiness,
    pub health_path: Option<String>,
    pub health_timeout: Duration,
    pub alive_delay: Duration,
    pub blame_window: Duration,
}

/// Check the server-mode keys of `l` for `mode`.
pub(super) fn resolve(l: &Layer, mode: Mode) -> Result<Server, ConfigError> {
    if let Some(values) = &l.port {
        no_empty_port(values)?;
    }
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
        Mode::Server => app_ports_given_once(l.port.as_deref().unwrap_or_default())?,
        Mode::Container => {
            let values = l.port.as_deref().unwrap_or_default();
            proxy_ports_given_once(values)?;
            crate::config::port_spec::parse_all(values).map_err(|e| invalid(format!("{e:#}")))?;
        }
        _ => {}
    }
    // Server mode's listening addresses, parsed once here; the proxy ports of container mode are
    // in its own settings.
    let ports = match mode {
        Mode::Server => super::app_ports::parse(l.port.as_deref().unwrap_or_default())
            .map_err(|e| invalid(format!("{e:#}")))?,
        _ => Vec::new(),
    };
    let health_timeout = ranges::HEALTH_TIMEOUT.resolve(l.health_timeout, DEFAULT_HEALTH_TIMEOUT)?;
    let drain_time = ranges::DRAIN_TIME.resolve(l.drain_time, DEFAULT_DRAIN_TIME)?;
    let alive_delay = ranges::ALIVE_DELAY.resolve(l.alive_delay, DEFAULT_ALIVE_DELAY)?;
    let blame_window = ranges::BLAME_WINDOW.resolve(l.blame_window, DEFAULT_BLAME_WINDOW)?;
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
        ports,
        drain_time,
        readiness,
        health_path,
        health_timeout,
        alive_delay,
        blame_window,
    })
}

/// `-p ''`, `-p ','` or `port = ["8080,"]`: a port value with nothing in it (or in one of its
/// comma-separated items) is a mistake, not "no port".
pub(crate) fn no_empty_port(values: &[String]) -> Result<(), ConfigError> {
    for v in values {
        if v.split(',').any(|item| item.trim().is_empty()) {
            return Err(invalid(format!(
                "port {v:?} is empty or has an empty item (e.g. port = [\"8080\"] or -p 8080,8081)"
            )));
        }
    }
    Ok(())
}

/// Server mode: the same port may not be listed twice, in any form (`8000`, `:8000`,
/// `0.0.0.0:8000`), nor by a wildcard address and a specific one (they would both be bound).
fn app_ports_given_once(values: &[String]) -> Result<(), ConfigError> {
    let mut seen: Vec<(std::net::SocketAddr, &str)> = Vec::new();
    for item in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        let addrs = super::app_ports::parse(&[item.to_string()]).unwrap_or_default();
        for addr in addrs {
            let clash = seen.iter().find(|(other, _)| {
                other.port() == addr.port()
                    && (other.ip() == addr.ip() || other.ip().is_unspecified() || addr.ip().is_unspecified())
            });
            if let Some((_, first)) = clash {
                return Err(invalid(format!(
                    "port {} is given twice: {first:?} and {item:?}",
                    addr.port()
                )));
            }
            seen.push((addr, item));
        }
    }
    Ok(())
}

/// Container mode: one proxy port per listen port, whatever the form it is written in.
pub(crate) fn proxy_ports_given_once(values: &[String]) -> Result<(), ConfigError> {
    let mut seen: Vec<(u16, &str)> = Vec::new();
    for v in values {
        let Ok(spec) = v.parse::<super::port_spec::PortSpec>() else {
            continue;
        };
        let port = spec.listen.port();
        if let Some((_, first)) = seen.iter().find(|(p, _)| *p == port) {
            return Err(invalid(format!(
                "proxy port {port} is given twice: {first:?} and {v:?}"
            )));
        }
        seen.push((port, v));
    }
    Ok(())
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

    #[test]
    fn empty_and_repeated_ports_are_refused_naming_them() {
        let mut sources = Sources::default();
        sources.flags.registry = Some("file:///srv/rel".into());
        sources.flags.mode = Some(Mode::Server);
        sources.flags.command = Some(vec!["./current/app".into()]);
        let refused = |sources: &Sources, ports: &[&str]| {
            let mut s = sources.clone();
            s.flags.port = Some(ports.iter().map(|p| p.to_string()).collect());
            load("app", &s).unwrap_err().to_string()
        };
        for bad in [&[""][..], &[","], &["8080,"], &["8080", " "]] {
            let err = refused(&sources, bad);
            assert!(err.contains("is empty or has an empty item"), "{bad:?}: {err}");
        }
        for (a, b) in [
            ("8000", "0.0.0.0:8000"),
            ("8000", ":8000"),
            ("127.0.0.1:8000", "8000"),
            ("7990-8010", "*:8000"),
        ] {
            let err = refused(&sources, &[a, b]);
            assert_eq!(
                err,
                format!("port 8000 is given twice: {a:?} and {b:?}"),
                "{a} {b}"
            );
        }
        let err = refused(&sources, &["8000,8001,8000"]);
        assert!(err.contains("port 8000 is given twice"), "{err}");
        // Two loopback families, or two ports, are fine.
        sources.flags.port = Some(vec!["127.0.0.1:8000".into(), "[::1]:8000".into(), "8001".into()]);
        assert!(load("app", &sources).is_ok());
        sources.flags.mode = Some(Mode::Container);
        sources.flags.command = None;
        let err = refused(&sources, &["8000:80", "0.0.0.0:8000:81"]);
        assert!(
            err.contains("proxy port 8000 is given twice: \"8000:80\" and \"0.0.0.0:8000:81\""),
            "{err}"
        );
        let err = refused(&sources, &[""]);
        assert!(err.contains("port \"\" is empty"), "{err}");
    }
}
