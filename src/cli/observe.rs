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
        let sinks = Arc::new(Sinks(vec![dispatcher.clone(), metrics.clone()]));
        Ok(Self {
            dispatcher,
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
    }
}
