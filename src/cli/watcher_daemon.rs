//! `dewy-watcher APP`: the unprivileged daemon that polls the release source and nominates new
//! versions to the deployer over D-Bus.

use std::sync::Arc;

use super::daemon::{prepare, Prepared};
use super::observe::Observers;
use super::{fail, shutdown_signal};
use crate::bus::{self, client::DeployerClient};
use crate::systemd::sd_notify;
use crate::watch::Watcher;

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
        tracing::info!(registry = %settings.registry, interval = %crate::units::format_duration(settings.interval), "Watcher ready");
        sd_notify::ready(&format!("watching {}", settings.registry));
        sd_notify::spawn_watchdog();
        let mut poll = tokio::spawn(watcher.clone().run());
        let signal = tokio::select! {
            signal = shutdown_signal() => signal,
            ended = &mut poll => return super::task_ended("registry polling", ended),
        };
        sd_notify::stopping();
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
