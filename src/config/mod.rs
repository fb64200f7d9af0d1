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
    resolve(app, layer, files, sources.foreground)
}

/// Validate the settings `app` would get from one config file holding `text`, with no drop-ins
/// and no flags ([`load`] without the file system; the `config` fuzz target runs it).
pub fn from_text(app: &str, path: &Path, text: &str) -> Result<Settings, ConfigError> {
    validate_app_name(app)?;
    let layer = file::parse_layer(path, text)?;
    resolve(app, layer, vec![path.to_path_buf()], false)
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

fn resolve(app: &str, l: Layer, files: Vec<PathBuf>, foreground: bool) -> Result<Settings, ConfigError> {
    let where_ = if files.is_empty() {
        "the command line".to_string()
    } else {
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let registry = l.registry.clone().ok_or_else(|| {
        invalid(format!(
            "registry is not set (in {where_}); e.g. registry = \"ghr://owner/repo\""
        ))
    })?;
    let calver = l.calver.clone().filter(|c| !c.trim().is_empty());
    if let Some(format) = &calver {
        crate::registry::calver::Format::parse(format).map_err(|e| invalid(format!("calver: {e}")))?;
    }
    let registry = with_calver(&registry, calver.as_deref())?;
    file_registry_has_a_path(&registry)?;
    let registry_location = crate::registry::RegistryLocation::parse(&registry)
        .map_err(|e| invalid(format!("registry: {e:#}")))?;
    let mode = l.mode.unwrap_or(Mode::Assets);
    let server = server::resolve(&l, mode)?;
    let container = container::resolve(&l, mode)?;
    let cache = match l.cache.clone().filter(|c| !c.trim().is_empty()) {
        None => None,
        Some(url) => {
            let spec = shared_cache::parse_url(&url).map_err(|e| invalid(format!("cache: {e:#}")))?;
            if let Some(ttl) = spec.registry_ttl {
                ranges::REGISTRY_TTL.check(ttl).map_err(invalid)?;
            }
            Some(shared_cache::SharedCache { url, spec })
        }
    };
    let notifiers = notifier::parse_all(&l.notifier.clone().unwrap_or_default())
        .map_err(|e| invalid(format!("{e:#}")))?;
    let metrics_listen = metrics_listen(l.metrics_listen.as_deref())?;
    let telemetry = telemetry::resolve(l.telemetry, l.otlp_endpoint.as_deref(), l.otlp_insecure)?;
    let interval = ranges::INTERVAL.resolve(l.interval, DEFAULT_INTERVAL)?;
    let grace_period = ranges::GRACE_PERIOD.resolve(l.grace_period, DEFAULT_GRACE_PERIOD)?;
    let hook_timeout = ranges::HOOK_TIMEOUT.resolve(l.hook_timeout, DEFAULT_HOOK_TIMEOUT)?;
    let log_level = l.log_level.clone().unwrap_or_else(|| "info".into());
    crate::logging::parse_level(&log_level).map_err(|e| invalid(e.to_string()))?;
    let root = match l.root {
        Some(r) => absolute(&r),
        None if foreground => cwd(),
        None => crate::systemd::state_directory().unwrap_or_else(|| PathBuf::from("/var/lib/dewy").join(app)),
    };
    let cache_dir = match l.cache_dir {
        Some(c) => absolute(&c),
        None => crate::systemd::cache_directory()
            .filter(|_| !foreground)
            .or_else(|| std::env::var_os("DEWY_CACHEDIR").map(PathBuf::from))
            .unwrap_or_else(|| root.join(".dewy/cache")),
    };
    let keep_releases = l.keep_releases.unwrap_or(DEFAULT_KEEP_RELEASES);
    if keep_releases < 2 {
        return Err(invalid("keep-releases must be at least 2 (current and previous)"));
    }
    let app_properties = match &l.app_properties {
        Some(t) if mode != Mode::Server && !t.is_empty() => {
            return Err(invalid("app-properties applies to server mode only"))
        }
        Some(t) => app_unit::parse(t)?,
        None => Vec::new(),
    };
    let verify = trusted_keys(l.verify.as_deref().unwrap_or_default())?;
    let min_age = match l.min_age {
        Some(d) => Some(ranges::MIN_AGE.check(d.0).map_err(invalid)?).filter(|d| !d.is_zero()),
        None => None,
    };
    let fleet_store = fleet_store::parse(
        fleet_store::Keys {
            store: l.fleet_store.as_deref(),
            id: l.fleet_id.as_deref(),
            wave: l.fleet_wave,
            canary_hosts: l.canary_hosts,
            soak: l.soak,
        },
        app,
    )?;
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    Ok(Settings {
        app: app.to_string(),
        mode,
        registry,
        registry_location,
        interval,
        grace_period,
        log_level,
        log_format: l.log_format.unwrap_or(LogFormat::Auto),
        state_dir: root.join(".dewy"),
        root,
        cache_dir,
        keep_releases,
        keep_artifacts: l.keep_artifacts.unwrap_or(3).max(1),
        before_deploy_hook: nonempty(l.before_deploy_hook),
        after_deploy_hook: nonempty(l.after_deploy_hook),
        hook_timeout,
        before_hook_failure: l.before_hook_failure.unwrap_or(HookFailure::Continue),
        max_artifact_size: l.max_artifact_size.map_or(16 << 30, |b| b.0),
        max_extracted_size: l.max_extracted_size.map_or(32 << 30, |b| b.0),
        slot: nonempty(l.slot),
        calver,
        cache,
        notifiers,
        metrics_listen,
        telemetry,
        command: server.command,
        ports: server.ports,
        drain_time: server.drain_time,
        readiness: server.readiness,
        health_path: server.health_path,
        health_timeout: server.health_timeout,
        alive_delay: server.alive_delay,
        blame_window: server.blame_window,
        verify,
        min_age,
        app_properties,
        admin_port: l.admin_port,
        report: l.report.unwrap_or(true),
        fleet_lock: fleet_lock::parse(
            l.fleet_lock.as_deref(),
            l.fleet_group.as_deref(),
            // fleet-id names the host in the store too, without a lock.
            l.fleet_id
                .as_deref()
                .filter(|_| l.fleet_lock.is_some() || fleet_store.is_none()),
            app,
        )?,
        fleet_store,
        window: l.window.unwrap_or_default(),
        container,
        files,
    })
}

/// The `verify` keys, read now (files and credentials); a key that cannot be used is an error
/// naming it. Empty entries are ignored; the same key twice is refused.
fn trusted_keys(specs: &[String]) -> Result<Vec<crate::signature::TrustedKey>, ConfigError> {
    let mut keys: Vec<crate::signature::TrustedKey> = Vec::new();
    for spec in specs.iter().filter(|s| !s.trim().is_empty()) {
        let key = crate::signature::TrustedKey::parse(spec).map_err(|e| invalid(e.to_string()))?;
        if keys.iter().any(|k| k.spec() == key.spec()) {
            return Err(invalid(format!("verify lists {:?} twice", key.spec())));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Carry `calver` into the registry URL's `calver=` parameter, where every source reads it.
fn with_calver(registry: &str, calver: Option<&str>) -> Result<String, ConfigError> {
    let Some(format) = calver else {
        return Ok(registry.to_string());
    };
    let Ok(mut url) = url::Url::parse(registry.trim()) else {
        return Ok(registry.to_string());
    };
    if let Some((_, given)) = url.query_pairs().find(|(k, _)| k == "calver") {
        if given != format {
            return Err(invalid(format!(
                "calver = \"{format}\" conflicts with calver={given} in registry URL {registry}"
            )));
        }
        return Ok(registry.to_string());
    }
    url.query_pairs_mut().append_pair("calver", format);
    Ok(url.to_string())
}

/// `registry = "file:"`, `"file://"` or `"file:///"` would make the whole file system the release
/// source: the URL must name a directory.
fn file_registry_has_a_path(registry: &str) -> Result<(), ConfigError> {
    let Some(rest) = registry.trim().strip_prefix("file:") else {
        return Ok(());
    };
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    if path.trim_matches('/').is_empty() {
        return Err(invalid(format!(
            "registry {registry:?} names no directory (e.g. registry = \"file:///srv/releases\")"
        )));
    }
    Ok(())
}

/// `metrics-listen = "127.0.0.1:9101"`: a loopback address only (the metrics have no auth).
fn metrics_listen(v: Option<&str>) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let addr: std::net::SocketAddr = v
        .parse()
        .map_err(|e| invalid(format!("metrics-listen {v:?}: {e} (e.g. \"127.0.0.1:9101\")")))?;
    if !addr.ip().is_loopback() {
        return Err(invalid(format!(
            "metrics-listen {v:?}: only a loopback address (127.0.0.1 or ::1) is accepted"
        )));
    }
    Ok(Some(addr))
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd().join(p)
    }
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
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        assert_eq!(
            app_name_from_registry("ghr://linyows/myapp?pre-release=true"),
            "myapp"
        );
        assert_eq!(app_name_from_registry("file:///srv/releases/web/"), "web");
        assert!(validate_app_name("my-app_1.0").is_ok());
        assert!(validate_app_name("../x").is_err());
        assert!(validate_app_name("").is_err());
    }

    #[test]
    fn flags_override_files_and_unimplemented_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("app.toml");
        std::fs::write(&cfg, "registry = \"file:///srv/rel\"\ninterval = 30\n").unwrap();
        let mut sources = Sources {
            config: Some(cfg.clone()),
            ..Default::default()
        };
        sources.flags.interval = Some(crate::units::DurationValue(Duration::from_secs(5)));
        sources.flags.root = Some(tmp.path().to_path_buf());
        let s = load("app", &sources).unwrap();
        assert_eq!(s.interval, Duration::from_secs(5));
        assert_eq!(s.root, tmp.path());
        assert_eq!(s.cache_dir, tmp.path().join(".dewy/cache"));
        sources.flags.calver = Some("YYYY.0M.MICRO".into());
        let s = load("app", &sources).unwrap();
        assert_eq!(s.registry, "file:///srv/rel?calver=YYYY.0M.MICRO");
        sources.flags.calver = Some("v.x".into());
        let err = load("app", &sources).unwrap_err().to_string();
        assert!(err.contains("invalid calver format \"v.x\""), "{err}");
        sources.flags.calver = None;
        sources.flags.notifier = Some(vec!["teams://x".into()]);
        let err = load("app", &sources).unwrap_err().to_string();
        assert!(
            err.contains("teams://x") && err.contains("unknown scheme"),
            "{err}"
        );
        sources.flags.notifier = Some(vec!["webhook+http://127.0.0.1:9/x".into()]);
        sources.flags.metrics_listen = Some("0.0.0.0:9101".into());
        let err = load("app", &sources).unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
        sources.flags.metrics_listen = Some("127.0.0.1:9101".into());
        let s = load("app", &sources).unwrap();
        assert_eq!(s.notifiers.len(), 1);
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9101".parse().unwrap()));
    }

    #[test]
    fn verify_keys_and_min_age() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("app.toml");
        let key = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
        let text =
            format!("registry = \"file:///srv/rel\"\nverify = [\"minisign:{key}\"]\nmin-age = \"1h\"\n");
        let s = from_text("app", &path, &text).unwrap();
        assert_eq!(s.verify.len(), 1);
        assert_eq!(s.verify[0].kind(), crate::signature::KeyKind::Minisign);
        assert_eq!(s.min_age, Some(Duration::from_secs(3600)));
        let shown = toml::to_string(&s).unwrap();
        assert!(
            shown.contains(&format!("verify = [\"minisign:{key}\"]")),
            "{shown}"
        );
        assert!(shown.contains("min-age = \"1h\""), "{shown}");

        let s = from_text("app", &path, "registry = \"file:///srv/rel\"\nmin-age = 0\n").unwrap();
        assert_eq!(s.min_age, None);
        assert!(s.verify.is_empty());
        assert!(!toml::to_string(&s).unwrap().contains("min-age"));
        let err = from_text(
            "app",
            &path,
            "registry = \"file:///srv/rel\"\nmin-age = \"31d\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("min-age = 31d is out of range"), "{err}");

        let missing = tmp.path().join("absent.pub");
        let text = format!(
            "registry = \"file:///srv/rel\"\nverify = [\"minisign:{key}\", \"cosign:{}\"]\n",
            missing.display()
        );
        let err = from_text("app", &path, &text).unwrap_err().to_string();
        assert!(
            err.contains(&format!("verify key \"cosign:{}\"", missing.display())),
            "{err}"
        );
        let text =
            format!("registry = \"file:///srv/rel\"\nverify = [\"minisign:{key}\", \"minisign:{key}\"]\n");
        let err = from_text("app", &path, &text).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");

        // The watcher leaves the keys unread.
        std::fs::write(
            &path,
            "registry = \"file:///srv/rel\"\nverify = [\"credential:absent\"]\n",
        )
        .unwrap();
        let sources = Sources {
            config: Some(path.clone()),
            ..Default::default()
        };
        let err = load("app", &sources).unwrap_err().to_string();
        assert!(err.contains("credential:absent"), "{err}");
        let sources = Sources {
            skip_keys: true,
            ..sources
        };
        assert!(load("app", &sources).unwrap().verify.is_empty());
    }
}
