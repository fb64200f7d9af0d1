//! `dewy-proxy APP`: serves the app's container-mode ports on sockets from systemd (or bound
//! here), restores the saved backend table, takes table changes over D-Bus, and on SIGTERM stops
//! accepting and lets requests in flight finish.

use std::time::Duration;

use clap::Parser;

use super::args::DaemonArgs;
use super::{config_failure, fail, runtime, shutdown_signal, start_logging};
use crate::bus::{self, BusChoice};
use crate::config::proxy_daemon::{self, ProxySettings};
use crate::proxy::{self, ProxyHandle};
use crate::systemd::sd_notify;

fn status_line(h: &ProxyHandle) -> String {
    let ports = h.port_count();
    let backends = h.backend_count();
    format!(
        "serving {ports} port{}, {backends} backend{}",
        if ports == 1 { "" } else { "s" },
        if backends == 1 { "" } else { "s" }
    )
}

/// `dewy-proxy APP`.
pub fn proxy_main() -> i32 {
    let args = DaemonArgs::parse();
    let settings = match proxy_daemon::load(&args.app, args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return config_failure(&e),
    };
    let level = args
        .log_level
        .clone()
        .or_else(|| settings.log_level.clone())
        .unwrap_or_else(|| "info".into());
    let format = args
        .log_format
        .or(settings.log_format)
        .unwrap_or(crate::logging::LogFormat::Auto);
    if let Err(code) = start_logging(&level, format, "dewy-proxy", &args.app) {
        return code;
    }
    // Take or bind the sockets before the runtime starts threads.
    let listeners = match proxy::listen::listeners(&settings.specs) {
        Ok(l) => l,
        Err(e) => return fail("opening the proxy ports", format!("{e:#}")),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let bus: BusChoice = args.bus.bus.parse().unwrap_or_default();
    rt.block_on(serve(args.app, settings, listeners, bus))
}

async fn serve(
    app: String,
    settings: ProxySettings,
    listeners: Vec<std::net::TcpListener>,
    bus: BusChoice,
) -> i32 {
    let stop = shutdown_signal();
    let options = proxy::Options {
        state_file: Some(settings.state_file.clone()),
        idle_timeout: settings.idle_timeout,
        max_connections: settings.max_connections,
        ..proxy::Options::default()
    };
    let (handle, server) = match proxy::start_with(settings.specs.clone(), listeners, options).await {
        Ok(x) => x,
        Err(e) => return fail("starting the proxy", format!("{e:#}")),
    };
    let _conn = match bus::serve_proxy(&bus, &app, handle.clone()).await {
        Ok(c) => c,
        Err(e) => {
            return fail(
                &format!("publishing {} on the {bus} bus", bus::names::proxy_name(&app)),
                e,
            )
        }
    };
    let metrics: std::sync::Arc<dyn crate::metrics::Render> = std::sync::Arc::new(handle.clone());
    if let Err(e) = crate::metrics::serve::start(metrics, &settings.metrics_socket, None).await {
        tracing::warn!(error = %format!("{e:#}"), "Metrics not served");
    }
    let status = status_line(&handle);
    tracing::info!(state_file = %settings.state_file.display(), "Proxy ready: {status}");
    sd_notify::ready(&status);
    sd_notify::spawn_watchdog();
    let report = tokio::spawn({
        let handle = handle.clone();
        async move {
            let mut last = status;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = status_line(&handle);
                if now != last {
                    sd_notify::status(&now);
                    last = now;
                }
            }
        }
    });
    let signal = stop.await;
    sd_notify::stopping();
    report.abort();
    tracing::info!(signal, grace = ?settings.grace, "Proxy stopping: no new connections, finishing requests in flight");
    server.shutdown(settings.grace).await;
    tracing::info!("Proxy stopped");
    0
}
