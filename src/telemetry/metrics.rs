//! The Prometheus metrics as OpenTelemetry instruments: counters and gauges observed from the
//! process's [`Metrics`] at each collection (so both endpoints always agree), and the deploy
//! duration histogram recorded from `Deployed` events with the same buckets.
//!
//! Names are the Prometheus names with dots (Go Dewy's style): `dewy_deployments_total` is
//! `dewy.deployments.total`; unit suffixes become units (`…_seconds` → unit `s`).

use std::sync::Arc;

use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::KeyValue;

use crate::metrics::{Metrics, Snapshot, DURATION_BUCKETS};

/// Observations as (value, attributes) pairs.
type Points = Vec<(u64, Vec<KeyValue>)>;

/// Picks one metric's observations from a snapshot.
type Pick = fn(&Snapshot) -> Points;

/// The registered instruments (kept alive with the pipeline).
pub struct Instruments {
    _observed: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

/// The deploy duration histogram, recorded by [`super::Telemetry`] at each `Deployed`.
pub fn duration_histogram(meter: &Meter) -> Histogram<f64> {
    meter
        .f64_histogram("dewy.deployment.duration")
        .with_unit("s")
        .with_description("Time from the start of a deploy to the release being live.")
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build()
}

/// One observed counter: `value` picks it from a snapshot as (value, attributes) pairs.
fn counter(
    meter: &Meter,
    source: &Arc<Metrics>,
    name: &'static str,
    help: &'static str,
    value: Pick,
) -> Box<dyn std::any::Any + Send + Sync> {
    let source = source.clone();
    Box::new(
        meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |observer| {
                for (v, attrs) in value(&source.snapshot()) {
                    observer.observe(v, &attrs);
                }
            })
            .build(),
    )
}

/// One observed gauge.
fn gauge(
    meter: &Meter,
    source: &Arc<Metrics>,
    name: &'static str,
    unit: Option<&'static str>,
    help: &'static str,
    value: Pick,
) -> Box<dyn std::any::Any + Send + Sync> {
    let source = source.clone();
    let mut builder = meter.u64_observable_gauge(name).with_description(help);
    if let Some(unit) = unit {
        builder = builder.with_unit(unit);
    }
    Box::new(
        builder
            .with_callback(move |observer| {
                for (v, attrs) in value(&source.snapshot()) {
                    observer.observe(v, &attrs);
                }
            })
            .build(),
    )
}

fn by_command(s: &Snapshot, v: u64) -> Points {
    vec![(v, vec![KeyValue::new("command", s.command.clone())])]
}

fn plain(v: u64) -> Points {
    vec![(v, Vec::new())]
}

fn per_notifier(s: &Snapshot, pick: fn(&crate::notify::NotifierCounts) -> u64) -> Points {
    s.notifications
        .iter()
        .map(|n| (pick(n), vec![KeyValue::new("notifier", n.notifier.clone())]))
        .collect()
}

/// Register every instrument on `meter`, observing `source`.
pub fn register(meter: &Meter, source: Arc<Metrics>) -> Instruments {
    let m = meter;
    let s = &source;
    let observed = vec![
        gauge(
            m,
            s,
            "dewy.info",
            None,
            "The dewy build and mode of this process.",
            |s| {
                vec![(
                    1,
                    vec![
                        KeyValue::new("version", env!("CARGO_PKG_VERSION")),
                        KeyValue::new("command", s.command.clone()),
                    ],
                )]
            },
        ),
        counter(
            m,
            s,
            "dewy.registry.checks.total",
            "Registry checks made (successful or not).",
            |s| plain(s.checks),
        ),
        counter(
            m,
            s,
            "dewy.registry.check.errors.total",
            "Registry checks that failed.",
            |s| plain(s.check_errors),
        ),
        gauge(
            m,
            s,
            "dewy.last.successful.check.timestamp",
            Some("s"),
            "Unix time of the last successful registry check (0: none yet).",
            |s| plain(s.last_check_ok),
        ),
        counter(
            m,
            s,
            "dewy.deployments.total",
            "Deploys that made a release live.",
            |s| by_command(s, s.deployments),
        ),
        counter(
            m,
            s,
            "dewy.deployment.errors.total",
            "Deploys that failed (the previous release kept serving).",
            |s| by_command(s, s.deployment_errors),
        ),
        counter(
            m,
            s,
            "dewy.rollbacks.total",
            "Rollbacks to the previous release.",
            |s| by_command(s, s.rollbacks),
        ),
        counter(
            m,
            s,
            "dewy.hook.failures.total",
            "Before- and after-deploy hooks that failed.",
            |s| by_command(s, s.hook_failures),
        ),
        counter(
            m,
            s,
            "dewy.app.restarts.total",
            "Server mode: new generations of the app that replaced a running or exited one, by reason.",
            |s| {
                s.app_restarts
                    .iter()
                    .map(|(reason, n)| (*n, vec![KeyValue::new("reason", *reason)]))
                    .collect()
            },
        ),
        gauge(
            m,
            s,
            "dewy.paused",
            None,
            "1 while the app's deploys are paused by `dewy pause`, else 0.",
            |s| s.paused.map(|p| plain(u64::from(p))).unwrap_or_default(),
        ),
        gauge(
            m,
            s,
            "dewy.container.desired_replicas",
            None,
            "Container mode: replicas a deploy starts.",
            |s| s.replicas.map(|(d, _)| plain(d as u64)).unwrap_or_default(),
        ),
        gauge(
            m,
            s,
            "dewy.container.replicas",
            None,
            "Container mode: replicas in the proxy, by state.",
            |s| {
                s.replicas
                    .map(|(_, r)| vec![(r as u64, vec![KeyValue::new("state", "running")])])
                    .unwrap_or_default()
            },
        ),
        counter(
            m,
            s,
            "dewy.notifications.sent.total",
            "Notifications the receiver took, by notifier.",
            |s| per_notifier(s, |n| n.sent),
        ),
        counter(
            m,
            s,
            "dewy.notifications.failed.total",
            "Notifications given up on (a final failure, or every retry failed), by notifier.",
            |s| per_notifier(s, |n| n.failed),
        ),
        counter(
            m,
            s,
            "dewy.notifications.dropped.total",
            "Notifications dropped unsent because the notifier's queue was full, by notifier.",
            |s| per_notifier(s, |n| n.dropped),
        ),
    ];
    Instruments { _observed: observed }
}
