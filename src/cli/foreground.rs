//! `dewy assets|server|container`: watcher and deployer together in one foreground process.
//!
//! The watcher offers releases to the deployer in-process; the same D-Bus interfaces are also
//! published on a bus when one is reachable, so `dewy status` works against a foreground run.

use std::sync::Arc;
use std::time::Duration;

use super::args::RunArgs;
use super::observe::Observers;
use super::{config_failure, init_logging, shutdown_signal};
use crate::bus::{self, BusChoice};
use crate::config::{self, Mode, Sources};
use crate::deploy::Deployer;
use crate::notify::Event;
use crate::systemd::sd_notify;
use crate::watch::Watcher;
use crate::EXIT_CONFIG;

/// Run the whole pipeline in the foreground until a signal.
pub async fn run(mode: Mode, args: RunArgs) -> i32 {
    if args.registry.is_none() && args.config.is_none() {
        eprintln!("Error: --registry is not set (e.g. --registry ghr://owner/repo or file:///srv/releases)");
        return EXIT_CONFIG;
    }
    let app = args
        .name
        .clone()
        .or_else(|| {
            args.config
                .as_ref()
                .and_then(|c| c.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| config::app_name_from_registry(args.registry.as_deref().unwrap_or("app")));
    let sources = Sources {
        config: args.config.clone(),
        flags: args.layer(mode),
        foreground: true,
        ..Default::default()
    };
    let settings = match config::load(&app, &sources) {
        Ok(s) => s,
        Err(e) => return config_failure(&e),
    };
    if let Err(code) = init_logging(&settings, "dewy") {
        return code;
    }
    let registry = match super::open_registry(&settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: opening the registry: {e:#}");
            return 1;
        }
    };
    let deployer = match Deployer::open(settings.clone(), registry.clone()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return 1;
        }
    };
    let shipping = crate::notify::shipping::ShippingReport::sink(&registry, settings.report);
    let watcher = Watcher::new(
        &settings.registry,
        registry,
        deployer.clone(),
        settings.interval,
        settings.grace_period,
    );
    let observers = match Observers::start(&settings, "metrics.sock", true).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let (signals, signal_queue) = bus::signals::queue();
    let sinks = [observers.sink(), signals].into_iter().chain(shipping).collect();
    deployer.set_events(Arc::new(crate::notify::Sinks(sinks)));
    observers.watch_replicas(&deployer);
    observers.watch_pause(&deployer);
    watcher.set_events(&app, observers.sink());
    let bus_conns = publish(&args.bus, &app, deployer.clone(), watcher.clone()).await;
    if let Some(conn) = bus_conns.first() {
        bus::signals::start(conn, &deployer, signal_queue);
    }
    let proxy = match &settings.container {
        Some(c) => match start_proxy(c).await {
            Ok((handle, server)) => {
                deployer.set_proxy(Arc::new(handle));
                Some(server)
            }
            Err(e) => {
                eprintln!("Error: starting the proxy: {e:#}");
                return 1;
            }
        },
        None => None,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        app = %app,
        registry = %settings.registry,
        root = %settings.root.display(),
        interval = %crate::units::format_duration(settings.interval),
        "Dewy started"
    );
    let _admin = crate::admin::start(&settings, true, deployer.clone(), observers.metrics()).await;
    observers.emit(Event::Started {
        command: mode.to_string(),
    });
    deployer.report_recovery();
    sd_notify::ready(&format!("watching {}", settings.registry));
    sd_notify::spawn_watchdog();
    let stop = shutdown_signal();
    deployer.start_app().await;
    super::restart_on_sigusr1(deployer.clone());
    let mut poll = tokio::spawn(watcher.run());
    let signal = tokio::select! {
        signal = stop => signal,
        ended = &mut poll => return super::task_ended("registry polling", ended),
    };
    tracing::info!(signal, "Shutting down gracefully");
    sd_notify::stopping();
    let _ = tokio::time::timeout(Duration::from_secs(60), deployer.wait_idle()).await;
    poll.abort();
    deployer.stop_app().await;
    if let Some(server) = proxy {
        tracing::info!("Stopping reverse proxy");
        server.shutdown(Duration::from_secs(10)).await;
    }
    observers.stopped(signal, true).await;
    0
}

/// Container mode in the foreground: the proxy runs in this process, on the `--port` addresses.
async fn start_proxy(
    c: &config::container::ContainerSettings,
) -> anyhow::Result<(crate::proxy::ProxyHandle, crate::proxy::Server)> {
    let specs = &c.ports;
    for s in specs {
        tracing::info!(port = s.listen.port(), listen = %s.listen, "Starting built-in reverse proxy");
    }
    let listeners = crate::proxy::listen::listeners(specs)?;
    let options = crate::proxy::Options {
        state_file: None,
        idle_timeout: c.proxy_idle_timeout,
        max_connections: c.proxy_max_connections,
        ..crate::proxy::Options::default()
    };
    let started = crate::proxy::start_with(specs.to_vec(), listeners, options).await?;
    for s in specs {
        tracing::info!(
            external_port = s.listen.port(),
            "Reverse proxy started successfully"
        );
    }
    Ok(started)
}

/// Publish the deployer and watcher on a bus when possible; `auto` tries the system bus,
/// then the session bus, and goes on without one.
async fn publish(
    choice: &str,
    app: &str,
    deployer: Arc<Deployer>,
    watcher: Arc<Watcher>,
) -> Vec<zbus::Connection> {
    let candidates: Vec<BusChoice> = match choice {
        "none" => return Vec::new(),
        "auto" => vec![BusChoice::System, BusChoice::Session],
        other => vec![other.parse().unwrap_or_default()],
    };
    for bus in candidates {
        let d = bus::serve_deployer(&bus, app, deployer.clone()).await;
        let w = bus::serve_watcher(&bus, app, watcher.clone()).await;
        match (d, w) {
            (Ok(d), Ok(w)) => {
                tracing::info!(bus = %bus, name = %bus::names::deployer_name(app), "Published on D-Bus");
                return vec![d, w];
            }
            (Err(e), _) | (_, Err(e)) => {
                if choice == "auto" {
                    tracing::debug!(bus = %bus, error = %e, "D-Bus not available; `dewy status` will not reach this run");
                } else {
                    tracing::warn!(bus = %bus, error = %e, "Publishing on D-Bus failed");
                }
            }
        }
    }
    Vec::new()
}

/// In the foreground the watcher offers releases to the deployer of the same process directly.
#[async_trait::async_trait]
impl crate::watch::DeployTarget for Deployer {
    async fn offer(&self, release: crate::registry::Release) -> anyhow::Result<crate::deploy::DeployResult> {
        Ok(Deployer::offer(self, release).await)
    }
}
