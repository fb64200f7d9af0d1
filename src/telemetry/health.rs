//! Whether the exports reach the collector: each exporter is wrapped so that a failure is
//! logged once as a warning when it starts (again every ten minutes while it lasts) and once
//! when exports work again, instead of an error per batch. A collector that is down is the
//! host's problem, never the release's: nothing else reacts to it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// How often a failure that lasts is logged again.
const REPEAT: Duration = Duration::from_secs(600);

/// The export health of one signal.
pub struct Health {
    signal: &'static str,
    endpoint: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When exports began failing, and when that was last logged.
    failing: Option<(Instant, Instant)>,
}

/// What [`Health::note`] has to say.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Failing,
    StillFailing,
    Recovered,
    Quiet,
}

impl Health {
    pub fn new(signal: &'static str, endpoint: &str) -> Arc<Health> {
        Arc::new(Health {
            signal,
            endpoint: endpoint.to_string(),
            state: Mutex::new(State::default()),
        })
    }

    /// Take note of one export's result.
    fn note(&self, result: &OTelSdkResult) {
        let change = self.change(result.is_ok(), Instant::now());
        let (signal, endpoint) = (self.signal, self.endpoint.as_str());
        match (change, result) {
            (Change::Failing | Change::StillFailing, Err(e)) => tracing::warn!(
                signal,
                endpoint,
                error = %e,
                "OpenTelemetry export failing; deploys are not affected (what could not be sent is dropped)"
            ),
            (Change::Recovered, _) => {
                tracing::info!(signal, endpoint, "OpenTelemetry export working again")
            }
            _ => {}
        }
    }

    fn change(&self, ok: bool, now: Instant) -> Change {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (ok, st.failing) {
            (true, None) => Change::Quiet,
            (true, Some(_)) => {
                st.failing = None;
                Change::Recovered
            }
            (false, None) => {
                st.failing = Some((now, now));
                Change::Failing
            }
            (false, Some((since, logged))) if now.duration_since(logged) >= REPEAT => {
                st.failing = Some((since, now));
                Change::StillFailing
            }
            (false, Some(_)) => Change::Quiet,
        }
    }
}

/// An exporter whose results feed a [`Health`].
pub struct Watched<E> {
    inner: E,
    health: Arc<Health>,
}

impl<E> Watched<E> {
    pub fn new(inner: E, health: Arc<Health>) -> Self {
        Watched { inner, health }
    }
}

impl<E> fmt::Debug for Watched<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("signal", &self.health.signal)
            .field("endpoint", &self.health.endpoint)
            .finish()
    }
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.health.note(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

impl<E: LogExporter> LogExporter for Watched<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.health.note(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Watched<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.health.note(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_told_when_it_begins_every_ten_minutes_and_when_it_ends() {
        let h = Health::new("traces", "collector:4317");
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(h.change(true, at(0)), Change::Quiet);
        assert_eq!(h.change(false, at(1)), Change::Failing);
        assert_eq!(h.change(false, at(15)), Change::Quiet);
        assert_eq!(h.change(false, at(400)), Change::Quiet);
        assert_eq!(h.change(false, at(601)), Change::StillFailing);
        assert_eq!(h.change(false, at(700)), Change::Quiet);
        assert_eq!(h.change(true, at(710)), Change::Recovered);
        assert_eq!(h.change(true, at(720)), Change::Quiet);
        assert_eq!(h.change(false, at(730)), Change::Failing);
    }
}
