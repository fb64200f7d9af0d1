//! `dewy-deployer APP`: the root daemon of one app on the system bus; it decides and runs every
//! deploy.

use std::sync::Arc;
use std::time::Duration;

use super::daemon::{prepare, Prepared};
use super::observe::Observers;
use super::{fail, shutdown_signal};
use crate::bus;
use crate::deploy::Deployer;
use crate::notify::{Event, Sinks};
use crate::systemd::sd_notify;

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
        let shipping = crate::notify::shipping::ShippingReport::sink(&registry, settings.report);
        let deployer = match Deployer::open(settings, registry) {
            Ok(d) => d,
            Err(e) => return fail("opening the deployer", format!("{e:#}")),
        };
        let (signals, signal_queue) = bus::signals::queue();
        let sinks = [observers.sink(), signals].into_iter().chain(shipping).collect();
        deployer.set_events(Arc::new(Sinks(sinks)));
        observers.watch_replicas(&deployer);
        observers.watch_pause(&deployer);
        let conn = match bus::serve_deployer(&bus, &app, deployer.clone()).await {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    &format!("publishing {} on the {bus} bus", bus::names::deployer_name(&app)),
                    e,
                )
            }
        };
        bus::signals::start(&conn, &deployer, signal_queue);
        if deployer.settings().mode == crate::config::Mode::Container {
            deployer.set_proxy(Arc::new(bus::proxy_control::BusProxy::new(&conn, &app)));
        }
        let _admin =
            crate::admin::start(deployer.settings(), false, deployer.clone(), observers.metrics()).await;
        let stop = shutdown_signal();
        deployer.start_app().await;
        super::restart_on_sigusr1(deployer.clone());
        let live = deployer.live_version().unwrap_or_else(|| "nothing".into());
        tracing::info!(dewy_version = %live, "Deployer ready");
        observers.emit(Event::Started { command: mode });
        deployer.report_recovery();
        sd_notify::ready(&deployer.status_line());
        sd_notify::spawn_watchdog();
        let signal = stop.await;
        sd_notify::stopping();
        tracing::info!(signal, "Shutting down gracefully");
        // Let a deploy in flight finish its current step; recovery covers the rest.
        let _ = tokio::time::timeout(Duration::from_secs(60), deployer.wait_idle()).await;
        deployer.stop_app().await;
        observers.stopped(signal, true).await;
        0
    })
}
