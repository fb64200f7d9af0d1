//! `dewy-deployer` and `dewy-watcher`: one app each, on the system bus (`dewy-proxy` is in
//! [`super::proxy_daemon`]).

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use super::args::DaemonArgs;
use super::observe::Observers;
use super::{config_failure, fail, init_logging, runtime, shutdown_signal};
use crate::bus::{self, client::DeployerClient, BusChoice};
use crate::config::{self, Settings, Sources};
use crate::deploy::Deployer;
use crate::notify::Event;
use crate::registry;
use crate::systemd::notify;
use crate::watch::Watcher;

fn load(args: &DaemonArgs, identifier: &str) -> Result<Settings, i32> {
    let mut sources = Sources {
        config: args.config.clone(),
        ..Default::default()
    };
    sources.flags.log_level = args.log_level.clone();
    sources.flags.log_format = args.log_format;
    let settings = config::load(&args.app, &sources).map_err(|e| config_failure(&e))?;
    init_logging(&settings, identifier)?;
    Ok(settings)
}

/// What every daemon needs before its own work: arguments, settings with logging, a registry,
/// the bus to use and a runtime.
struct Prepared {
    settings: Settings,
    registry: Arc<dyn registry::Registry>,
    bus: BusChoice,
    rt: tokio::runtime::Runtime,
}

fn prepare(identifier: &str) -> Result<Prepared, i32> {
    let args = DaemonArgs::parse();
    let settings = load(&args, identifier)?;
    let registry =
        super::open_registry(&settings).map_err(|e| fail("opening the registry", format!("{e:#}")))?;
    Ok(Prepared {
        settings,
        registry,
        bus: args.bus.bus.parse().unwrap_or_default(),
        rt: runtime()?,
    })
}

/// `dewy-deployer APP`.
pub fn deployer_main() -> i32 {
    let Prepared {
        settings,
        registry,
        bus,
        rt,
    } = match prepare("dewy-deployer") {
        Ok(p) => p,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let app = settings.app.clone();
        let observers = match Observers::start(&settings, "metrics.sock", true).await {
            Ok(o) => o,
            Err(code) => return code,
        };
        let mode = settings.mode.to_string();
        let deployer = match Deployer::open(settings, registry) {
            Ok(d) => d,
            Err(e) => return fail("opening the deployer", format!("{e:#}")),
        };
        deployer.set_events(observers.sink());
        observers.watch_replicas(&deployer);
        let conn = match bus::serve_deployer(&bus, &app, deployer.clone()).await {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    &format!("publishing {} on the {bus} bus", bus::names::deployer_name(&app)),
                    e,
                )
            }
        };
        if deployer.settings().mode == crate::config::Mode::Container {
            deployer.set_proxy(Arc::new(crate::container::BusProxy::new(&conn, &app)));
        }
        let stop = shutdown_signal();
        deployer.start_app().await;
        super::restart_on_sigusr1(deployer.clone());
        let live = deployer.live_version().unwrap_or_else(|| "nothing".into());
        tracing::info!(dewy_version = %live, "Deployer ready");
        observers.emit(Event::Started { command: mode });
        deployer.report_recovery();
        notify::ready(&deployer.status_line());
        notify::spawn_watchdog();
        let signal = stop.await;
        notify::stopping();
        tracing::info!(signal, "Shutting down gracefully");
        // Let a deploy in flight finish its current step; recovery covers the rest.
        let _ = tokio::time::timeout(Duration::from_secs(60), deployer.wait_idle()).await;
        deployer.stop_app().await;
        observers.stopped(signal, true).await;
        0
    })
}

/// `dewy-watcher APP`.
pub fn watcher_main() -> i32 {
    let Prepared {
        settings,
        registry,
        bus,
        rt,
    } = match prepare("dewy-watcher") {
        Ok(p) => p,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let conn = match bus.connect().await {
            Ok(c) => c,
            Err(e) => return fail(&format!("connecting to the {bus} bus"), e),
        };
        let target = match DeployerClient::new(&conn, &settings.app).await {
            Ok(c) => c,
            Err(e) => return fail("creating the deployer client", format!("{e:#}")),
        };
        let watcher = Watcher::new(
            &settings.registry,
            registry,
            Arc::new(target),
            settings.interval,
            settings.grace_period,
        );
        // Check metrics go to their own socket; start and stop are announced by the deployer.
        let observers = match Observers::start(&settings, "watcher-metrics.sock", false).await {
            Ok(o) => o,
            Err(code) => return code,
        };
        watcher.set_events(&settings.app, observers.sink());
        if let Err(e) = publish_watcher(&conn, &settings.app, watcher.clone()).await {
            return fail("publishing the watcher", e);
        }
        tracing::info!(registry = %settings.registry, interval = %config::values::format_duration(settings.interval), "Watcher ready");
        notify::ready(&format!("watching {}", settings.registry));
        notify::spawn_watchdog();
        let mut poll = tokio::spawn(watcher.clone().run());
        let signal = tokio::select! {
            signal = shutdown_signal() => signal,
            ended = &mut poll => return super::task_ended("registry polling", ended),
        };
        notify::stopping();
        poll.abort();
        observers.stopped(signal, false).await;
        0
    })
}

async fn publish_watcher(conn: &zbus::Connection, app: &str, watcher: Arc<Watcher>) -> zbus::Result<()> {
    conn.object_server()
        .at(bus::names::WATCHER_PATH, bus::WatcherIface { watcher })
        .await?;
    conn.request_name(bus::names::watcher_name(app)).await
}
