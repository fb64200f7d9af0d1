//! Notifiers and metrics of a run: built from the settings, fed by the deployer and watcher.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::metrics::{serve, Metrics};
use crate::notify::{self, Dispatcher, Event, EventSink, Sinks};

/// How long a stopping dewy waits for queued notifications.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// The event sinks of one process.
pub(super) struct Observers {
    dispatcher: Arc<Dispatcher>,
    telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    sinks: Arc<Sinks>,
    metrics: Arc<Metrics>,
}

impl Observers {
    /// Start the notifiers and serve the metrics on `socket_name` (in the runtime directory, or
    /// the state directory outside systemd) and, when `tcp` is true, on `metrics-listen`.
    pub(super) async fn start(settings: &Settings, socket_name: &str, tcp: bool) -> Result<Self, i32> {
        let notifiers = notify::build(&settings.notifiers).map_err(|e| {
            eprintln!("Error: bad configuration: {e:#}");
            crate::EXIT_CONFIG
        })?;
        for n in &notifiers {
            tracing::info!(notifier = %n.name(), quiet = n.quiet(), "Notifier ready");
        }
        let dispatcher = Dispatcher::start(&settings.app, notifiers);
        let metrics = Arc::new(Metrics::new(&settings.mode.to_string()));
        if !dispatcher.is_empty() {
            let d = Arc::downgrade(&dispatcher);
            metrics.set_notification_counts(Box::new(move || {
                d.upgrade().map(|d| d.counts()).unwrap_or_default()
            }));
        }
        let socket = crate::systemd::runtime_file(&settings.state_dir, socket_name);
        let listen = if tcp { settings.metrics_listen } else { None };
        if let Err(e) = serve::start(metrics.clone(), &socket, listen).await {
            tracing::warn!(error = %format!("{e:#}"), "Metrics not served");
        }
        let mut sinks: Vec<Arc<dyn EventSink>> = vec![dispatcher.clone(), metrics.clone()];
        let telemetry = start_telemetry(settings, socket_name, &metrics)?;
        if let Some(t) = &telemetry {
            sinks.push(t.clone());
        }
        let sinks = Arc::new(Sinks(sinks));
        Ok(Self {
            dispatcher,
            telemetry,
            sinks,
            metrics,
        })
    }

    /// Container mode: the replica gauges come from the deployer at every scrape.
    pub(super) fn watch_replicas(&self, deployer: &Arc<crate::deploy::Deployer>) {
        if deployer.replica_counts().is_none() {
            return;
        }
        let d = Arc::downgrade(deployer);
        self.metrics.set_replica_counts(Box::new(move || {
            d.upgrade().and_then(|d| d.replica_counts()).unwrap_or_default()
        }));
    }

    /// A deployer: `dewy_paused` comes from the deployer's pause at every scrape.
    pub(super) fn watch_pause(&self, deployer: &Arc<crate::deploy::Deployer>) {
        let d = Arc::downgrade(deployer);
        self.metrics.set_paused_probe(Box::new(move || {
            d.upgrade().is_some_and(|d| d.paused().is_some())
        }));
    }

    /// The metrics of this process (also served by the admin API).
    pub(super) fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The sink to hand to the deployer and the watcher.
    pub(super) fn sink(&self) -> Arc<dyn EventSink> {
        self.sinks.clone()
    }

    pub(super) fn emit(&self, event: Event) {
        self.sinks.emit(event);
    }

    /// Report the stop and give queued notifications a moment to leave.
    pub(super) async fn stopped(&self, signal: &str, announce: bool) {
        if announce {
            self.emit(Event::Stopped {
                signal: signal.to_string(),
            });
        }
        self.dispatcher.flush(FLUSH_LIMIT).await;
        if let Some(t) = &self.telemetry {
            t.shutdown(FLUSH_LIMIT).await;
        }
    }
}

/// With `otlp-endpoint`: the OpenTelemetry export, named after the process.
fn start_telemetry(
    settings: &Settings,
    socket_name: &str,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<crate::telemetry::Telemetry>>, i32> {
    let Some(otlp) = &settings.telemetry.otlp else {
        if settings.telemetry.enabled {
            tracing::info!(
                "Telemetry enabled without otlp-endpoint: the metrics are on the Prometheus endpoint only"
            );
        }
        return Ok(None);
    };
    let role = process_role(socket_name);
    match crate::telemetry::Telemetry::start(otlp, role, &settings.app, metrics.clone()) {
        Ok(t) => {
            tracing::info!(endpoint = %otlp.endpoint, insecure = otlp.insecure, "Telemetry enabled: OTLP export of metrics, deploy traces and event logs");
            Ok(Some(Arc::new(t)))
        }
        Err(e) => {
            eprintln!("Error: failed to initialize telemetry: {e:#}");
            Err(crate::EXIT_CONFIG)
        }
    }
}

/// `dewy-watcher`, `dewy-deployer` or `dewy`: the program's name when it is one of the
/// daemons, else told by the metrics socket (the watcher's has its own name).
fn process_role(socket_name: &str) -> &'static str {
    let program = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    match (program.as_str(), socket_name) {
        (_, "watcher-metrics.sock") | ("dewy-watcher", _) => "dewy-watcher",
        ("dewy-deployer", _) => "dewy-deployer",
        _ => "dewy",
    }
}
