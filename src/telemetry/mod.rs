//! OpenTelemetry: the Prometheus metrics, each deploy as a trace and the events as log
//! records, exported by OTLP/gRPC (`telemetry`, `otlp-endpoint`, `otlp-insecure`).
//!
//! Everything is fed by the pipeline's [`Event`]s and timed [`Step`]s through [`Telemetry`] as
//! one more [`EventSink`]; exports run in the SDK's background workers with bounded timeouts, so a
//! collector that is slow or down never blocks a deploy, and the final flush at shutdown is
//! bounded too.

mod channel;
mod health;
mod logs;
mod metrics;
mod traces;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::config::telemetry::Otlp;
use crate::notify::{Event, EventSink, Step};

/// The instrumentation scope of every metric, span and log record.
pub const SCOPE: &str = "dewy";
/// Metric export interval (Go Dewy's), unless `OTEL_METRIC_EXPORT_INTERVAL` (ms) says otherwise.
const EXPORT_INTERVAL: Duration = Duration::from_secs(15);
/// Longest one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP pipelines of one process, and the sink that feeds them.
pub struct Telemetry {
    meters: SdkMeterProvider,
    tracers: SdkTracerProvider,
    loggers: SdkLoggerProvider,
    _instruments: metrics::Instruments,
    duration: opentelemetry::metrics::Histogram<f64>,
    traces: traces::DeployTraces,
    logs: logs::EventLogs,
}

impl Telemetry {
    /// Start exporting to `otlp`: the metrics of `source` (read at each collection), and what
    /// [`EventSink::emit`] and [`EventSink::step`] receive. `role` names the process (`dewy`, `dewy-deployer`,
    /// `dewy-watcher`) in the resource; `app` is the app's name. Needs a Tokio runtime.
    pub fn start(
        otlp: &Otlp,
        role: &str,
        app: &str,
        source: Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<Telemetry> {
        use opentelemetry::logs::LoggerProvider as _;
        use opentelemetry::metrics::MeterProvider as _;
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};

        let channel = channel::connect(otlp)?;
        let resource = Resource::builder()
            .with_service_name("dewy")
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("dewy.process", role.to_string()),
                KeyValue::new("dewy.app", app.to_string()),
                KeyValue::new("host.name", crate::host::name()),
            ])
            .build();
        let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_channel(channel.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .context("OTLP metric exporter")?;
        let metric_exporter =
            health::Watched::new(metric_exporter, health::Health::new("metrics", &otlp.endpoint));
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metric_exporter)
            .with_interval(export_interval())
            .build();
        let meters = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_reader(reader)
            .build();
        let instruments = metrics::register(&meters.meter(SCOPE), source);
        let duration = metrics::duration_histogram(&meters.meter(SCOPE));

        let span_exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(channel.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .context("OTLP span exporter")?;
        let tracers = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(health::Watched::new(
                span_exporter,
                health::Health::new("traces", &otlp.endpoint),
            ))
            .build();

        let log_exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_channel(channel)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .context("OTLP log exporter")?;
        let loggers = SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(health::Watched::new(
                log_exporter,
                health::Health::new("logs", &otlp.endpoint),
            ))
            .build();

        let traces = traces::DeployTraces::new(tracers.tracer(SCOPE), app);
        let logs = logs::EventLogs::new(loggers.logger(SCOPE), app);
        Ok(Telemetry {
            meters,
            tracers,
            loggers,
            _instruments: instruments,
            duration,
            traces,
            logs,
        })
    }

    /// Export what is pending and stop, waiting at most `limit`. The SDK's flushes block, so
    /// each runs on a thread of its own; past the limit they are left behind (the process does
    /// not wait for them when it exits).
    pub async fn shutdown(&self, limit: Duration) {
        self.traces.abandon();
        let (tracers, loggers, meters) = (self.tracers.clone(), self.loggers.clone(), self.meters.clone());
        let jobs: [(&'static str, Flush); 3] = [
            ("traces", Box::new(move || tracers.shutdown_with_timeout(limit))),
            ("logs", Box::new(move || loggers.shutdown_with_timeout(limit))),
            ("metrics", Box::new(move || meters.shutdown_with_timeout(limit))),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::channel(jobs.len());
        for (what, job) in jobs {
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("otel-{what}"))
                .spawn(move || {
                    let _ = tx.blocking_send((what, job()));
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "OpenTelemetry {what}: no thread for the final export");
            }
        }
        drop(tx);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((what, Err(e)))) => {
                    tracing::warn!(error = %e, "OpenTelemetry {what}: final export failed")
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(limit = ?limit, "OpenTelemetry: the final export did not finish in time; not waiting for it");
                    break;
                }
            }
        }
    }
}

/// One provider's final flush.
type Flush = Box<dyn FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send>;

impl EventSink for Telemetry {
    fn emit(&self, event: Event) {
        if let Event::Deployed {
            duration, command, ..
        } = &event
        {
            self.duration.record(
                duration.as_secs_f64(),
                &[KeyValue::new("command", command.clone())],
            );
        }
        let trace = self.traces.on_event(&event);
        self.logs.on_event(&event, trace);
    }

    fn step(&self, step: &Step) {
        self.traces.on_step(step);
    }
}

fn export_interval() -> Duration {
    std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(EXPORT_INTERVAL, Duration::from_millis)
}
