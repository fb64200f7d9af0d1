//! Per-app TOML files and their drop-ins: locating, parsing with file:line errors, merging.
//!
//! Search order (later wins): `/usr/lib/dewy` < `/run/dewy` < `/etc/dewy`. The main file is
//! `<app>.toml` from the highest directory that has one; drop-ins are `<app>.toml.d/*.toml` from
//! every directory, a drop-in of the same name in a higher directory replacing a lower one, applied
//! in file-name order after the main file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::logging::LogFormat;
use crate::units::{ByteSize, DurationValue};

/// The directories searched for `<app>.toml`, lowest priority first.
pub const SEARCH_DIRS: [&str; 3] = ["/usr/lib/dewy", "/run/dewy", "/etc/dewy"];

/// What the deployer does with a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Place files only (`dewy assets`).
    Assets,
    /// Place files and run the app (`dewy server`).
    Server,
    /// Run OCI images behind dewy-proxy (`dewy container`).
    Container,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Assets => "assets",
            Mode::Server => "server",
            Mode::Container => "container",
        })
    }
}

/// How server mode decides that a new generation of the app is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// `notify` for an app that has sent `READY=1` before, else `health` with a health path,
    /// else `alive`.
    Auto,
    /// The app sends `READY=1` to `NOTIFY_SOCKET`.
    Notify,
    /// The health path answers 2xx/3xx on the generation's private probe socket.
    Health,
    /// Still running after `alive-delay`.
    Alive,
}

impl std::str::FromStr for Readiness {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Readiness::Auto),
            "notify" => Ok(Readiness::Notify),
            "health" => Ok(Readiness::Health),
            "alive" => Ok(Readiness::Alive),
            _ => Err(format!("unknown readiness {s:?} (auto, notify, health or alive)")),
        }
    }
}

/// What a failed before-deploy hook does to the deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookFailure {
    /// Record and notify, then go on (the Go Dewy's behaviour).
    Continue,
    /// Stop the deploy; the previous release keeps serving and the next poll tries again.
    Abort,
}

/// One config layer: a file, a drop-in or the command line. Every key is optional; unknown
/// keys are rejected.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Layer {
    pub mode: Option<Mode>,
    pub registry: Option<String>,
    pub interval: Option<DurationValue>,
    pub grace_period: Option<DurationValue>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub root: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub keep_releases: Option<usize>,
    pub keep_artifacts: Option<usize>,
    pub before_deploy_hook: Option<String>,
    pub after_deploy_hook: Option<String>,
    pub hook_timeout: Option<DurationValue>,
    pub before_hook_failure: Option<HookFailure>,
    pub max_artifact_size: Option<ByteSize>,
    pub max_extracted_size: Option<ByteSize>,
    pub slot: Option<String>,
    pub calver: Option<String>,
    pub cache: Option<String>,
    pub notifier: Option<Vec<String>>,
    pub metrics_listen: Option<String>,
    pub port: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub drain_time: Option<DurationValue>,
    pub readiness: Option<Readiness>,
    pub health_path: Option<String>,
    pub health_timeout: Option<DurationValue>,
    pub alive_delay: Option<DurationValue>,
    pub blame_window: Option<DurationValue>,
    pub replicas: Option<usize>,
    pub cmd: Option<Vec<String>>,
    pub run_options: Option<Vec<String>>,
    pub keep_images: Option<usize>,
    pub on_stop: Option<super::container::OnStop>,
    pub proxy_idle_timeout: Option<DurationValue>,
    pub proxy_max_connections: Option<usize>,
    pub verify: Option<Vec<String>>,
    pub min_age: Option<DurationValue>,
    /// Server mode under systemd: resource limits of the app's units (`MemoryMax = "512M"`…).
    pub app_properties: Option<BTreeMap<String, toml::Value>>,
    pub telemetry: Option<bool>,
    pub otlp_endpoint: Option<String>,
    pub otlp_insecure: Option<bool>,
    /// Admin API port (the first free of ten from it); see docs/operations.md.
    pub admin_port: Option<u16>,
    /// Write the shipping report to the release source after each deploy.
    pub report: Option<bool>,
    /// Container mode: `docker` or `podman` (which engine socket).
    pub runtime: Option<String>,
    /// FleetLock server URL, group and this deployer's id in it.
    pub fleet_lock: Option<String>,
    pub fleet_group: Option<String>,
    pub fleet_id: Option<String>,
    /// The etcd keyspace of the fleet's records, this host's canary wave, how many hosts of the
    /// wave before and how long they must have run a release.
    pub fleet_store: Option<String>,
    pub fleet_wave: Option<u32>,
    pub canary_hosts: Option<u32>,
    pub soak: Option<DurationValue>,
    /// Deploy windows (`[[window]]`): a file that has any replaces the list of the files before.
    pub window: Option<Vec<super::window::DeployWindow>>,
}

macro_rules! overlay {
    ($base:ident, $over:ident; $($f:ident),* $(,)?) => {
        $( if $over.$f.is_some() { $base.$f = $over.$f; } )*
    };
}

impl Layer {
    /// Apply `over` on top of `self`: every key set in `over` wins.
    pub fn merge(&mut self, over: Layer) {
        overlay!(self, over; mode, registry, interval, grace_period, log_level, log_format, root,
            cache_dir, keep_releases, keep_artifacts, before_deploy_hook, after_deploy_hook,
            hook_timeout, before_hook_failure, max_artifact_size, max_extracted_size, slot, calver,
            cache, notifier, metrics_listen, port, command, drain_time, readiness, health_path, health_timeout,
            alive_delay, blame_window, replicas, cmd, run_options, keep_images, on_stop, proxy_idle_timeout,
            proxy_max_connections, verify, min_age, app_properties, telemetry, otlp_endpoint,
            otlp_insecure);
        overlay!(self, over; admin_port, report, runtime, fleet_lock, fleet_group, fleet_id, window,
            fleet_store, fleet_wave, canary_hosts, soak);
    }
}

/// A config error that points at a file and a line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// Parse one TOML file into a layer, reporting unknown keys and bad values with file:line.
pub fn parse_layer(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    toml::from_str::<Layer>(text).map_err(|e| {
        let (line, column) = e.span().map(|span| line_col(text, span.start)).unwrap_or((1, 1));
        let message = e.message().trim();
        let message = match key_on_line(text, line) {
            Some(key) if !message.contains(key) => format!("{key}: {message}"),
            _ => message.to_string(),
        };
        ConfigError::At {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    })
}

/// The key assigned on line `line` (1-based) of `text`, when that line is a `key = value`.
fn key_on_line(text: &str, line: usize) -> Option<&str> {
    let (key, _) = text.lines().nth(line.checked_sub(1)?)?.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    .then_some(key)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
    (line, column)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The files that make up an app's config, in the order they apply.
pub fn locate(app: &str, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let main = dirs
        .iter()
        .rev()
        .map(|d| d.join(format!("{app}.toml")))
        .find(|p| p.is_file());
    let mut files: Vec<PathBuf> = main.into_iter().collect();
    files.extend(drop_ins(dirs.iter().map(|d| d.join(format!("{app}.toml.d")))));
    files
}

/// Drop-ins from several `.d` directories (lowest priority first), by file name.
pub fn drop_ins(dirs: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".toml") && path.is_file() {
                by_name.insert(name, path);
            }
        }
    }
    by_name.into_values().collect()
}

/// Read and merge the given files in order.
pub fn load_files(files: &[PathBuf]) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for path in files {
        let text = read(path)?;
        layer.merge(parse_layer(path, &text)?);
    }
    Ok(layer)
}

/// The files for an explicit `--config FILE`: the file itself and `FILE.d/*.toml`.
pub fn explicit(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    if path.is_dir() {
        return Err(ConfigError::Invalid(format!(
            "--config {} is a directory; give the app's file, e.g. /etc/dewy/APP.toml",
            path.display()
        )));
    }
    if !path.is_file() {
        return Err(ConfigError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such config file"),
        });
    }
    let mut files = vec![path.to_path_buf()];
    let mut d = path.as_os_str().to_owned();
    d.push(".d");
    files.extend(drop_ins(std::iter::once(PathBuf::from(d))));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_has_file_and_line() {
        let text = "registry = \"file:///x\"\n\ninterval = \"10s\"\nbefor-deploy-hook = \"x\"\n";
        let err = parse_layer(Path::new("/etc/dewy/app.toml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/dewy/app.toml:4:1:"), "{msg}");
        assert!(msg.contains("befor-deploy-hook"), "{msg}");
    }

    #[test]
    fn bad_value_is_reported() {
        let err = parse_layer(Path::new("a.toml"), "interval = \"ten\"\n").unwrap_err();
        assert!(err.to_string().contains("a.toml:1:"), "{err}");
        let err = parse_layer(Path::new("a.toml"), "\ndrain-time = 99999999999999999999\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("a.toml:2:") && err.contains("drain-time"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_is_not_a_config_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = explicit(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains(&tmp.path().display().to_string()) && err.contains("is a directory"),
            "{err}"
        );
    }

    #[test]
    fn drop_ins_override_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let low = tmp.path().join("usr");
        let high = tmp.path().join("etc");
        for d in [&low, &high] {
            std::fs::create_dir_all(d.join("app.toml.d")).unwrap();
        }
        std::fs::write(
            low.join("app.toml"),
            "registry = \"file:///low\"\nkeep-releases = 3\n",
        )
        .unwrap();
        std::fs::write(high.join("app.toml"), "registry = \"file:///high\"\n").unwrap();
        std::fs::write(low.join("app.toml.d/10-a.toml"), "keep-releases = 4\n").unwrap();
        std::fs::write(high.join("app.toml.d/10-a.toml"), "keep-releases = 5\n").unwrap();
        std::fs::write(low.join("app.toml.d/20-b.toml"), "slot = \"blue\"\n").unwrap();
        let files = locate("app", &[low.clone(), high.clone()]);
        assert_eq!(files.len(), 3);
        let layer = load_files(&files).unwrap();
        assert_eq!(layer.registry.as_deref(), Some("file:///high"));
        assert_eq!(layer.keep_releases, Some(5));
        assert_eq!(layer.slot.as_deref(), Some("blue"));
    }
}
