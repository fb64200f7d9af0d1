//! How the merged layers of one app become its [`Settings`]: defaults applied, every value
//! parsed once into its typed form and checked, paths made absolute.

use super::*;

pub(super) fn resolve(
    app: &str,
    l: Layer,
    files: Vec<PathBuf>,
    foreground: bool,
) -> Result<Settings, ConfigError> {
    let (registry, calver, registry_location) = registry_of(&l, &files)?;
    let mode = l.mode.unwrap_or(Mode::Assets);
    let server = server::resolve(&l, mode)?;
    let container = container::resolve(&l, mode)?;
    let cache = shared_cache_of(l.cache.as_deref())?;
    let notifiers = notifier::parse_all(&l.notifier.clone().unwrap_or_default())
        .map_err(|e| invalid(format!("{e:#}")))?;
    let metrics_listen = metrics_listen(l.metrics_listen.as_deref())?;
    let telemetry = telemetry::resolve(l.telemetry, l.otlp_endpoint.as_deref(), l.otlp_insecure)?;
    let interval = ranges::INTERVAL.resolve(l.interval, DEFAULT_INTERVAL)?;
    let grace_period = ranges::GRACE_PERIOD.resolve(l.grace_period, DEFAULT_GRACE_PERIOD)?;
    let hook_timeout = ranges::HOOK_TIMEOUT.resolve(l.hook_timeout, DEFAULT_HOOK_TIMEOUT)?;
    let log_level = l.log_level.clone().unwrap_or_else(|| "info".into());
    crate::logging::parse_level(&log_level).map_err(|e| invalid(e.to_string()))?;
    let (root, cache_dir) = directories(&l, app, foreground);
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

/// The `registry` with its `calver` carried in, checked and parsed once; `files` are named when
/// it is missing.
fn registry_of(
    l: &Layer,
    files: &[PathBuf],
) -> Result<(String, Option<String>, crate::registry::RegistryLocation), ConfigError> {
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
    Ok((registry, calver, registry_location))
}

/// The fleet's shared cache (`cache`), its URL parsed and its `registry-ttl` in range.
fn shared_cache_of(url: Option<&str>) -> Result<Option<shared_cache::SharedCache>, ConfigError> {
    let Some(url) = url.filter(|c| !c.trim().is_empty()) else {
        return Ok(None);
    };
    let spec = shared_cache::parse_url(url).map_err(|e| invalid(format!("cache: {e:#}")))?;
    if let Some(ttl) = spec.registry_ttl {
        ranges::REGISTRY_TTL.check(ttl).map_err(invalid)?;
    }
    Ok(Some(shared_cache::SharedCache {
        url: url.to_string(),
        spec,
    }))
}

/// The root (releases, `current`, state) and the artifact cache: as configured, else the
/// unit's state and cache directories, else (in the foreground) the working directory.
fn directories(l: &Layer, app: &str, foreground: bool) -> (PathBuf, PathBuf) {
    let root = match &l.root {
        Some(r) => absolute(r),
        None if foreground => cwd(),
        None => crate::systemd::state_directory().unwrap_or_else(|| PathBuf::from("/var/lib/dewy").join(app)),
    };
    let cache_dir = match &l.cache_dir {
        Some(c) => absolute(c),
        None => crate::systemd::cache_directory()
            .filter(|_| !foreground)
            .or_else(|| std::env::var_os("DEWY_CACHEDIR").map(PathBuf::from))
            .unwrap_or_else(|| root.join(".dewy/cache")),
    };
    (root, cache_dir)
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
