//! Settings of one app: config files, drop-ins and command-line flags resolved into [`Settings`].
//!
//! Precedence: built-in defaults < config files (see [`file`]) < command-line flags.

pub mod app_ports;
pub mod app_unit;
pub mod container;
pub mod etcd_lock;
pub mod file;
pub mod fleet_lock;
pub mod fleet_store;
pub mod notifier;
pub mod port_spec;
pub mod proxy_daemon;
pub mod ranges;
mod resolve;
pub mod run_options;
mod server;
pub mod shared_cache;
pub mod telemetry;
pub mod window;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::units::format_duration;
pub use file::{ConfigError, HookFailure, Layer, Mode, Readiness};
pub(crate) use server::{no_empty_port, proxy_ports_given_once};
pub use server::{DEFAULT_ALIVE_DELAY, DEFAULT_DRAIN_TIME, DEFAULT_HEALTH_TIMEOUT};

use crate::logging::LogFormat;

/// Default poll interval (the Go Dewy's 10 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default grace period for a release whose artifact is not uploaded yet.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30 * 60);
/// Default number of releases kept in `releases/`.
pub const DEFAULT_KEEP_RELEASES: usize = 7;
/// Default hook timeout.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the settings come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// An explicit `--config FILE` (then the search directories are not used).
    pub config: Option<PathBuf>,
    /// Directories searched for `<app>.toml`, lowest priority first; defaults to [`file::SEARCH_DIRS`].
    pub search_dirs: Option<Vec<PathBuf>>,
    /// Settings given on the command line.
    pub flags: Layer,
    /// The foreground `dewy assets|server|container` run: releases default to the working directory.
    pub foreground: bool,
    /// Leave the `verify` keys unread and [`Settings::verify`] empty: for the watcher, which
    /// never verifies, so that a key passed as a systemd credential to the deployer's unit only
    /// does not stop it.
    pub skip_keys: bool,
}

/// Fully resolved settings of one app.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    pub app: String,
    pub mode: Mode,
    pub registry: String,
    /// `registry` parsed: the kind of source and its parameters (shown as `registry`).
    #[serde(skip)]
    pub registry_location: crate::registry::RegistryLocation,
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub grace_period: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Where `releases/` and `current` live.
    pub root: PathBuf,
    pub cache_dir: PathBuf,
    /// Where the deploy state (`state.json`) lives.
    pub state_dir: PathBuf,
    pub keep_releases: usize,
    pub keep_artifacts: usize,
    pub before_deploy_hook: Option<String>,
    pub after_deploy_hook: Option<String>,
    #[serde(serialize_with = "ser_duration")]
    pub hook_timeout: Duration,
    pub before_hook_failure: HookFailure,
    pub max_artifact_size: u64,
    pub max_extracted_size: u64,
    pub slot: Option<String>,
    /// CalVer format of the version tags (also folded into `registry` as `calver=`).
    pub calver: Option<String>,
    /// The fleet's shared cache (`s3://…?registry-ttl=30s`), shown as its URL.
    pub cache: Option<shared_cache::SharedCache>,
    /// Notifier targets (see docs/operations.md). Shown as their URLs with secrets hidden.
    #[serde(serialize_with = "ser_redacted")]
    pub notifiers: Vec<notifier::NotifierTarget>,
    /// Also serve the metrics on this local TCP address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// OpenTelemetry (`telemetry`, `otlp-endpoint`, `otlp-insecure`).
    #[serde(flatten)]
    pub telemetry: telemetry::Telemetry,
    /// Server mode: the app's command and arguments (run with the root as working directory).
    pub command: Vec<String>,
    /// Server mode: the addresses the app listens on, sorted and deduplicated (the fd order; see
    /// [`app_ports`]). Empty in the other modes (container mode's proxy ports are in `container`).
    pub ports: Vec<std::net::SocketAddr>,
    #[serde(serialize_with = "ser_duration")]
    pub drain_time: Duration,
    pub readiness: Readiness,
    pub health_path: Option<String>,
    #[serde(serialize_with = "ser_duration")]
    pub health_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub alive_delay: Duration,
    /// Server mode: a crash loop within this time after the release went live is the release's
    /// fault (rolled back, marked bad); later, the environment's (restarted, nothing marked).
    #[serde(serialize_with = "ser_duration")]
    pub blame_window: Duration,
    /// Keys trusted to sign releases (`verify`): with any set, a release (or image) without a
    /// valid signature by one of them is refused. Shown as written.
    pub verify: Vec<crate::signature::TrustedKey>,
    /// A release younger than this waits (`min-age`); `None` when not set or zero.
    #[serde(serialize_with = "ser_opt_duration", skip_serializing_if = "Option::is_none")]
    pub min_age: Option<Duration>,
    /// Server mode under systemd: resource limits of the app's transient units.
    pub app_properties: Vec<app_unit::UnitProperty>,
    /// Admin API port as configured (`admin-port`; 0 means the default); see the admin module.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_port: Option<u16>,
    /// Write the shipping report (`shipped_to_…txt`) to the release source after each deploy.
    pub report: bool,
    /// FleetLock (`fleet-lock`, `fleet-group`, `fleet-id`): a deploy holds one of the group's
    /// slots from before its download until the release is healthy.
    #[serde(flatten)]
    pub fleet_lock: Option<fleet_lock::FleetLock>,
    /// The fleet's records in etcd (`fleet-store`) and this host's canary wave (`fleet-wave`,
    /// `canary-hosts`, `soak`).
    #[serde(flatten)]
    pub fleet_store: Option<fleet_store::FleetStore>,
    /// Deploy windows (`[[window]]`): a release the watcher finds is deployed only while one is
    /// open; none means at any time.
    pub window: Vec<window::DeployWindow>,
    /// Container mode: ports, replicas, run options… (`None` in the other modes).
    #[serde(flatten)]
    pub container: Option<container::ContainerSettings>,
    /// The files that were read, in the order they applied.
    pub files: Vec<PathBuf>,
}

fn ser_redacted<S: serde::Serializer>(targets: &[notifier::NotifierTarget], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(targets.iter().map(|t| notifier::redact(&t.url)))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// Load and validate the settings of `app`.
pub fn load(app: &str, sources: &Sources) -> Result<Settings, ConfigError> {
    validate_app_name(app)?;
    let files = match &sources.config {
        Some(path) => file::explicit(path)?,
        None => {
            let dirs: Vec<PathBuf> = sources
                .search_dirs
                .clone()
                .unwrap_or_else(|| file::SEARCH_DIRS.iter().map(PathBuf::from).collect());
            file::locate(app, &dirs)
        }
    };
    let mut layer = file::load_files(&files)?;
    layer.merge(sources.flags.clone());
    if sources.skip_keys {
        layer.verify = None;
    }
    resolve::resolve(app, layer, files, sources.foreground)
}

/// Validate the settings `app` would get from one config file holding `text`, with no drop-ins
/// and no flags ([`load`] without the file system; the `config` fuzz target runs it).
pub fn from_text(app: &str, path: &Path, text: &str) -> Result<Settings, ConfigError> {
    validate_app_name(app)?;
    let layer = file::parse_layer(path, text)?;
    resolve::resolve(app, layer, vec![path.to_path_buf()], false)
}

/// App names become bus names and directory names: keep them simple.
pub fn validate_app_name(app: &str) -> Result<(), ConfigError> {
    let ok = !app.is_empty()
        && app.len() <= 64
        && app
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !app.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "invalid app name {app:?}: use letters, digits, '-', '_' and '.' (at most 64)"
        )))
    }
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Derive an app name from a registry URL the Go Dewy way (the repository or last path segment).
pub fn app_name_from_registry(registry: &str) -> String {
    let no_query = registry.split('?').next().unwrap_or(registry);
    let rest = no_query.split_once("://").map_or(no_query, |(_, r)| r);
    let last = rest
        .trim_end_matches('/')
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("app");
    let last = last.split(':').next().unwrap_or(last);
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_start_matches('.').to_string();
    if name.is_empty() {
        "app".into()
    } else {
        name.chars().take(64).collect()
    }
}

#[cfg(test)]
mod tests;
