//! Prometheus metrics: a small registry of atomics fed by the pipeline's events, rendered as
//! the text exposition format (served by [`serve`]). Names follow the Go Dewy where it has one.

pub mod serve;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::notify::event::Restart;
use crate::notify::{Event, EventSink, Stage};

/// Buckets of `dewy_deployment_duration_seconds` (the Go Dewy's).
pub const DURATION_BUCKETS: [f64; 8] = [1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Something that renders Prometheus text: a process's [`Metrics`], or the proxy's counters.
pub trait Render: Send + Sync {
    fn render(&self) -> String;
}

impl Render for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}

/// Container mode: (desired, running) replicas, read at every scrape.
pub type ReplicaCounts = Box<dyn Fn() -> (usize, usize) + Send + Sync>;

/// Whether the app's deploys are paused (`dewy pause`), read at every scrape.
pub type PausedProbe = Box<dyn Fn() -> bool + Send + Sync>;

/// The message counts of every notifier, read at every scrape.
pub type NotificationCounts = Box<dyn Fn() -> Vec<crate::notify::NotifierCounts> + Send + Sync>;

/// The counters and gauges of a [`Metrics`] at one moment (the duration histogram aside).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub command: String,
    pub checks: u64,
    pub check_errors: u64,
    /// Unix seconds of the last successful check (0: none yet).
    pub last_check_ok: u64,
    pub deployments: u64,
    pub deployment_errors: u64,
    pub rollbacks: u64,
    pub hook_failures: u64,
    /// New generations by reason (`deploy`, `crash`, `operator`, `rollback`).
    pub app_restarts: Vec<(&'static str, u64)>,
    /// Container mode: (desired, running) replicas.
    pub replicas: Option<(usize, usize)>,
    /// A deployer's process: whether its deploys are paused.
    pub paused: Option<bool>,
    pub notifications: Vec<crate::notify::NotifierCounts>,
}

/// The counters and gauges of one dewy process.
pub struct Metrics {
    command: String,
    replicas: std::sync::OnceLock<ReplicaCounts>,
    paused: std::sync::OnceLock<PausedProbe>,
    notifications: std::sync::OnceLock<NotificationCounts>,
    checks: AtomicU64,
    check_errors: AtomicU64,
    last_check_ok: AtomicU64,
    deployments: AtomicU64,
    deployment_errors: AtomicU64,
    rollbacks: AtomicU64,
    hook_failures: AtomicU64,
    /// Server mode: new generations by reason, in [`Restart::ALL`] order.
    app_restarts: [AtomicU64; Restart::ALL.len()],
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_us: AtomicU64,
}

impl Metrics {
    /// Metrics of a process running `command` (assets, server or container).
    pub fn new(command: &str) -> Self {
        Self {
            command: command.to_string(),
            replicas: std::sync::OnceLock::new(),
            paused: std::sync::OnceLock::new(),
            notifications: std::sync::OnceLock::new(),
            checks: AtomicU64::new(0),
            check_errors: AtomicU64::new(0),
            last_check_ok: AtomicU64::new(0),
            deployments: AtomicU64::new(0),
            deployment_errors: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            hook_failures: AtomicU64::new(0),
            app_restarts: Default::default(),
            buckets: Default::default(),
            duration_count: AtomicU64::new(0),
            duration_sum_us: AtomicU64::new(0),
        }
    }

    /// Container mode: report the replica gauges from `counts` (only the first call counts).
    pub fn set_replica_counts(&self, counts: ReplicaCounts) {
        let _ = self.replicas.set(counts);
    }

    /// A deployer's process: report `dewy_paused` from `paused` (only the first call counts).
    pub fn set_paused_probe(&self, paused: PausedProbe) {
        let _ = self.paused.set(paused);
    }

    /// Report the notifiers' message counts from `counts` (only the first call counts).
    pub fn set_notification_counts(&self, counts: NotificationCounts) {
        let _ = self.notifications.set(counts);
    }

    fn observe_duration(&self, secs: f64) {
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    /// The current values (what [`Metrics::render`] shows), for the OpenTelemetry export.
    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            command: self.command.clone(),
            checks: get(&self.checks),
            check_errors: get(&self.check_errors),
            last_check_ok: get(&self.last_check_ok),
            deployments: get(&self.deployments),
            deployment_errors: get(&self.deployment_errors),
            rollbacks: get(&self.rollbacks),
            hook_failures: get(&self.hook_failures),
            app_restarts: Restart::ALL
                .iter()
                .zip(&self.app_restarts)
                .map(|(r, n)| (r.as_str(), get(n)))
                .collect(),
            replicas: self.replicas.get().map(|counts| counts()),
            paused: self.paused.get().map(|paused| paused()),
            notifications: self
                .notifications
                .get()
                .map(|counts| counts())
                .unwrap_or_default(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let c = &self.command;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut o = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
            for (suffix_labels, value) in lines {
                let _ = writeln!(o, "{name}{suffix_labels} {value}");
            }
        };
        metric(
            "dewy_info",
            "gauge",
            "The dewy build and mode of this process.",
            &[(
                format!("{{version=\"{}\",command=\"{c}\"}}", env!("CARGO_PKG_VERSION")),
                "1".into(),
            )],
        );
        metric(
            "dewy_registry_checks_total",
            "counter",
            "Registry checks made (successful or not).",
            &[(String::new(), get(&self.checks).to_string())],
        );
        metric(
            "dewy_registry_check_errors_total",
            "counter",
            "Registry checks that failed.",
            &[(String::new(), get(&self.check_errors).to_string())],
        );
        metric(
            "dewy_last_successful_check_timestamp_seconds",
            "gauge",
            "Unix time of the last successful registry check (0: none yet).",
            &[(String::new(), get(&self.last_check_ok).to_string())],
        );
        metric(
            "dewy_deployments_total",
            "counter",
            "Deploys that made a release live.",
            &[(format!("{{command=\"{c}\"}}"), get(&self.deployments).to_string())],
        );
        metric(
            "dewy_deployment_errors_total",
            "counter",
            "Deploys that failed (the previous release kept serving).",
            &[(
                format!("{{command=\"{c}\"}}"),
                get(&self.deployment_errors).to_string(),
            )],
        );
        metric(
            "dewy_rollbacks_total",
            "counter",
            "Rollbacks to the previous release.",
            &[(format!("{{command=\"{c}\"}}"), get(&self.rollbacks).to_string())],
        );
        metric(
            "dewy_hook_failures_total",
            "counter",
            "Before- and after-deploy hooks that failed.",
            &[(
                format!("{{command=\"{c}\"}}"),
                get(&self.hook_failures).to_string(),
            )],
        );
        let restarts: Vec<(String, String)> = Restart::ALL
            .iter()
            .zip(&self.app_restarts)
            .map(|(r, n)| (format!("{{reason=\"{}\"}}", r.as_str()), get(n).to_string()))
            .collect();
        metric(
            "dewy_app_restarts_total",
            "counter",
            "Server mode: new generations of the app that replaced a running or exited one, by reason.",
            &restarts,
        );
        if let Some(paused) = self.paused.get() {
            metric(
                "dewy_paused",
                "gauge",
                "1 while the app's deploys are paused by `dewy pause`, else 0.",
                &[(String::new(), u8::from(paused()).to_string())],
            );
        }
        if let Some(counts) = self.replicas.get() {
            let (desired, running) = counts();
            metric(
                "dewy_container_desired_replicas",
                "gauge",
                "Container mode: replicas a deploy starts.",
                &[(String::new(), desired.to_string())],
            );
            metric(
                "dewy_container_replicas",
                "gauge",
                "Container mode: replicas in the proxy, by state.",
                &[("{state=\"running\"}".to_string(), running.to_string())],
            );
        }
        if let Some(counts) = self.notifications.get() {
            let counts = counts();
            let per_notifier = |value: fn(&crate::notify::NotifierCounts) -> u64| -> Vec<(String, String)> {
                counts
                    .iter()
                    .map(|n| {
                        (
                            format!("{{notifier=\"{}\"}}", label_value(&n.notifier)),
                            value(n).to_string(),
                        )
                    })
                    .collect()
            };
            metric(
                "dewy_notifications_sent_total",
                "counter",
                "Notifications the receiver took, by notifier.",
                &per_notifier(|n| n.sent),
            );
            metric(
                "dewy_notifications_failed_total",
                "counter",
                "Notifications given up on (a final failure, or every retry failed), by notifier.",
                &per_notifier(|n| n.failed),
            );
            metric(
                "dewy_notifications_dropped_total",
                "counter",
                "Notifications dropped unsent because the notifier's queue was full, by notifier.",
                &per_notifier(|n| n.dropped),
            );
        }
        let mut lines: Vec<(String, String)> = DURATION_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                (
                    format!("_bucket{{command=\"{c}\",le=\"{le}\"}}"),
                    get(n).to_string(),
                )
            })
            .collect();
        let count = get(&self.duration_count).to_string();
        lines.push((format!("_bucket{{command=\"{c}\",le=\"+Inf\"}}"), count.clone()));
        lines.push((
            format!("_sum{{command=\"{c}\"}}"),
            format!("{}", get(&self.duration_sum_us) as f64 / 1e6),
        ));
        lines.push((format!("_count{{command=\"{c}\"}}"), count));
        metric(
            "dewy_deployment_duration_seconds",
            "histogram",
            "Time from the start of a deploy to the release being live.",
            &lines,
        );
        o
    }
}

/// A label value in the exposition format: backslash, double quote and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl EventSink for Metrics {
    fn emit(&self, event: Event) {
        match event {
            Event::CheckSucceeded { .. } => {
                self.checks.fetch_add(1, Ordering::Relaxed);
                let now = chrono::Utc::now().timestamp().max(0) as u64;
                self.last_check_ok.store(now, Ordering::Relaxed);
            }
            Event::Failed {
                stage: Stage::Check, ..
            } => {
                self.checks.fetch_add(1, Ordering::Relaxed);
                self.check_errors.fetch_add(1, Ordering::Relaxed);
            }
            Event::Failed {
                stage: Stage::Deploy, ..
            } => {
                self.deployment_errors.fetch_add(1, Ordering::Relaxed);
            }
            Event::Deployed { duration, .. } => {
                self.deployments.fetch_add(1, Ordering::Relaxed);
                self.observe_duration(duration.as_secs_f64());
            }
            Event::RolledBack { .. } => {
                self.rollbacks.fetch_add(1, Ordering::Relaxed);
            }
            Event::Hook { success: false, .. } => {
                self.hook_failures.fetch_add(1, Ordering::Relaxed);
            }
            Event::ServerRestarted { reason, .. } => {
                self.app_restarts[reason.index()].fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new("assets");
        m.emit(Event::Deployed {
            version: "v1".into(),
            previous: None,
            duration: std::time::Duration::from_millis(2500),
            command: "assets".into(),
        });
        m.emit(Event::ServerRestarted {
            version: "v1".into(),
            reason: Restart::Crash,
        });
        assert!(Restart::ALL.iter().enumerate().all(|(i, r)| r.index() == i));
        let t = m.render();
        assert!(t.contains("dewy_app_restarts_total{reason=\"crash\"} 1\n"), "{t}");
        assert!(!t.contains("dewy_container_replicas"), "{t}");
        assert!(!t.contains("dewy_paused"), "only a deployer reports it: {t}");
        let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = paused.clone();
        m.set_paused_probe(Box::new(move || probe.load(Ordering::Relaxed)));
        assert!(m.render().contains("\n# TYPE dewy_paused gauge\ndewy_paused 0\n"));
        paused.store(true, Ordering::Relaxed);
        assert!(m.render().contains("\ndewy_paused 1\n"));
        m.set_replica_counts(Box::new(|| (3, 2)));
        let t = m.render();
        assert!(t.contains("dewy_container_desired_replicas 3\n"), "{t}");
        assert!(
            t.contains("dewy_container_replicas{state=\"running\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("dewy_app_restarts_total{reason=\"deploy\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("dewy_deployments_total{command=\"assets\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("dewy_deployment_duration_seconds_bucket{command=\"assets\",le=\"1\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("dewy_deployment_duration_seconds_bucket{command=\"assets\",le=\"5\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("dewy_deployment_duration_seconds_sum{command=\"assets\"} 2.5\n"),
            "{t}"
        );
        assert!(!t.contains("dewy_notifications"), "{t}");
        m.set_notification_counts(Box::new(|| {
            vec![crate::notify::NotifierCounts {
                notifier: "webhook+http://h\"x\\/…".into(),
                sent: 4,
                dropped: 2,
                failed: 1,
            }]
        }));
        let t = m.render();
        for line in [
            "dewy_notifications_sent_total{notifier=\"webhook+http://h\\\"x\\\\/…\"} 4\n",
            "dewy_notifications_dropped_total{notifier=\"webhook+http://h\\\"x\\\\/…\"} 2\n",
            "dewy_notifications_failed_total{notifier=\"webhook+http://h\\\"x\\\\/…\"} 1\n",
        ] {
            assert!(t.contains(line), "{line} in {t}");
        }
    }
}
