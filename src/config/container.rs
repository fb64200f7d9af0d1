//! Container-mode keys: ports, replicas, health check, drain time, the image command, extra
//! `docker run` options (checked here, so a dangerous one is refused before anything runs),
//! images kept and what happens to the containers when dewy stops.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::file::{Layer, Mode};
use super::port_spec::PortSpec;
use super::run_options::RunOptions;
use super::{invalid, ranges, ConfigError};

/// Default number of images of the app's repository kept after a deploy.
pub const DEFAULT_KEEP_IMAGES: usize = 7;

/// What happens to the app's containers when dewy stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStop {
    /// Leave them running; the next start adopts them (the default under systemd).
    Keep,
    /// Stop and remove them (the default of a foreground `dewy container`).
    Remove,
}

impl std::str::FromStr for OnStop {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "keep" => Ok(OnStop::Keep),
            "remove" => Ok(OnStop::Remove),
            _ => Err(format!("unknown on-stop {s:?} (keep or remove)")),
        }
    }
}

/// The resolved container-mode settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ContainerSettings {
    /// Proxy ports and the container ports behind them (shown as `ports`).
    #[serde(skip)]
    pub ports: Vec<PortSpec>,
    pub replicas: usize,
    /// Replaces the image's CMD.
    pub cmd: Vec<String>,
    /// Extra `docker run` options, already checked.
    #[serde(skip)]
    pub run_options: RunOptions,
    /// The same options as written.
    #[serde(rename = "run-options")]
    pub run_option_words: Vec<String>,
    pub keep_images: usize,
    pub on_stop: OnStop,
    /// Proxied TCP connections and upgraded HTTP connections close after this long without
    /// traffic either way (zero: never).
    #[serde(serialize_with = "super::ser_duration")]
    pub proxy_idle_timeout: Duration,
    /// Most open client connections of the proxy (`None`: derived from its descriptor limit).
    pub proxy_max_connections: Option<usize>,
    /// Which engine's socket is used when `DOCKER_HOST` is not set.
    pub runtime: EngineRuntime,
}

/// The container engine (`runtime`): its socket is used unless `DOCKER_HOST` is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineRuntime {
    /// `/var/run/docker.sock`.
    #[default]
    Docker,
    /// Podman's Docker-compatible API: `/run/podman/podman.sock` as root,
    /// `$XDG_RUNTIME_DIR/podman/podman.sock` otherwise.
    Podman,
}

impl std::str::FromStr for EngineRuntime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "docker" => Ok(EngineRuntime::Docker),
            "podman" => Ok(EngineRuntime::Podman),
            _ => Err(format!("unsupported runtime {s:?}: use docker or podman")),
        }
    }
}

/// The Go Dewy's default `proxy-idle-timeout`.
pub const DEFAULT_PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Check the container-mode keys of `l`; `None` in the other modes (where they are refused).
pub(super) fn resolve(l: &Layer, mode: Mode) -> Result<Option<ContainerSettings>, ConfigError> {
    let given: Vec<&str> = [
        (l.replicas.is_some(), "replicas"),
        (l.cmd.as_ref().is_some_and(|c| !c.is_empty()), "cmd"),
        (
            l.run_options.as_ref().is_some_and(|c| !c.is_empty()),
            "run-options",
        ),
        (l.keep_images.is_some(), "keep-images"),
        (l.on_stop.is_some(), "on-stop"),
        (l.proxy_idle_timeout.is_some(), "proxy-idle-timeout"),
        (l.proxy_max_connections.is_some(), "proxy-max-connections"),
        (l.runtime.is_some(), "runtime"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if mode != Mode::Container {
        return match given.first() {
            Some(key) => Err(invalid(format!("{key} applies to container mode only"))),
            None => Ok(None),
        };
    }
    let ports = crate::config::port_spec::parse_all(l.port.as_deref().unwrap_or_default())
        .map_err(|e| invalid(format!("{e:#}")))?;
    let proxy_idle_timeout =
        ranges::PROXY_IDLE_TIMEOUT.resolve(l.proxy_idle_timeout, DEFAULT_PROXY_IDLE_TIMEOUT)?;
    let replicas = l.replicas.unwrap_or(1);
    if !(1..=64).contains(&replicas) {
        return Err(invalid(format!("replicas = {replicas}: use 1 to 64")));
    }
    let proxy_max_connections = check_max_connections(l.proxy_max_connections)?;
    let runtime = match l.runtime.as_deref() {
        Some(r) => r.parse::<EngineRuntime>().map_err(invalid)?,
        None => EngineRuntime::default(),
    };
    let keep_images = l.keep_images.unwrap_or(DEFAULT_KEEP_IMAGES);
    if keep_images < 1 {
        return Err(invalid("keep-images must be at least 1 (the live image)"));
    }
    let run_options = RunOptions::parse(l.run_options.as_deref().unwrap_or_default())
        .map_err(|e| invalid(format!("run-options: {e:#}")))?;
    let on_stop = l.on_stop.unwrap_or(if crate::systemd::under_systemd() {
        OnStop::Keep
    } else {
        OnStop::Remove
    });
    Ok(Some(ContainerSettings {
        ports,
        replicas,
        cmd: l.cmd.clone().unwrap_or_default(),
        run_options,
        run_option_words: l.run_options.clone().unwrap_or_default(),
        keep_images,
        on_stop,
        proxy_idle_timeout,
        proxy_max_connections,
        runtime,
    }))
}

/// `proxy-max-connections`: 1 to 10,000,000 when given.
pub(crate) fn check_max_connections(n: Option<usize>) -> Result<Option<usize>, ConfigError> {
    match n {
        Some(n) if !(1..=10_000_000).contains(&n) => Err(invalid(format!(
            "proxy-max-connections = {n}: use 1 to 10000000 (or leave it out to derive it from the file descriptor limit)"
        ))),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load, Sources};
    use super::*;

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.flags.registry = Some("file:///srv/rel".into());
        s.flags.mode = Some(Mode::Container);
        s
    }

    #[test]
    fn container_keys() {
        let mut s = sources();
        let err = load("app", &s).unwrap_err().to_string();
        assert!(err.contains("needs at least one port"), "{err}");
        s.flags.port = Some(vec!["8000:8080".into(), "8000:9090".into()]);
        let err = load("app", &s).unwrap_err().to_string();
        assert!(err.contains("proxy port 8000 is given twice"), "{err}");
        s.flags.port = Some(vec!["8000:8080".into(), "9000".into()]);
        s.flags.replicas = Some(0);
        let err = load("app", &s).unwrap_err().to_string();
        assert!(err.contains("replicas = 0"), "{err}");
        s.flags.replicas = Some(3);
        s.flags.run_options = Some(vec!["--privileged".into()]);
        let err = load("app", &s).unwrap_err().to_string();
        assert!(err.contains("--privileged") && err.contains("host"), "{err}");
        s.flags.run_options = Some(vec!["-e".into(), "A=1".into(), "--memory=64m".into()]);
        s.flags.on_stop = Some(OnStop::Keep);
        let st = load("app", &s).unwrap();
        let c = st.container.as_ref().unwrap();
        assert_eq!(
            (c.replicas, c.keep_images, c.on_stop),
            (3, DEFAULT_KEEP_IMAGES, OnStop::Keep)
        );
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.run_options.env, ["A=1"]);
        assert_eq!(c.proxy_idle_timeout, DEFAULT_PROXY_IDLE_TIMEOUT);
        // Go Dewy's `--proxy-idle-timeout 0` (never) and plain seconds.
        s.flags.proxy_idle_timeout = Some("0".parse().unwrap());
        let st = load("app", &s).unwrap();
        assert_eq!(st.container.unwrap().proxy_idle_timeout, Duration::ZERO);
        s.flags.proxy_idle_timeout = Some("90".parse().unwrap());
        let st = load("app", &s).unwrap();
        assert_eq!(st.container.unwrap().proxy_idle_timeout, Duration::from_secs(90));
        s.flags.mode = Some(Mode::Assets);
        s.flags.port = None;
        let err = load("app", &s).unwrap_err().to_string();
        assert!(err.contains("container mode only"), "{err}");
    }

    #[test]
    fn keys_in_a_file_are_kebab_case_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("web.toml");
        std::fs::write(
            &cfg,
            "registry = \"file:///srv/rel\"\nmode = \"container\"\nport = [\"8000:8080\"]\nreplicas = 2\n\
             keep-images = 3\ncmd = [\"/app\", \"--serve\"]\nrun-options = [\"--cap-add\", \"NET_ADMIN\"]\n",
        )
        .unwrap();
        let s = Sources {
            config: Some(cfg.clone()),
            ..Default::default()
        };
        let err = load("web", &s).unwrap_err().to_string();
        assert!(err.contains("--cap-add"), "{err}");
        std::fs::write(
            &cfg,
            "registry = \"file:///srv/rel\"\nmode = \"container\"\nport = [\"8000:8080\"]\nreplicas = 2\n\
             keep-images = 3\ncmd = [\"/app\", \"--serve\"]\non-stop = \"remove\"\n",
        )
        .unwrap();
        let st = load("web", &s).unwrap();
        let c = st.container.unwrap();
        assert_eq!((c.replicas, c.keep_images), (2, 3));
        assert_eq!(c.cmd, ["/app", "--serve"]);
    }
}
