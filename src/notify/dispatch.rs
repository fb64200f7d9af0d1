//! The dispatcher: fans events out to every notifier through its own bounded queue, with a
//! timeout per send, retries of transient failures (see [`super::retry`]), rate-limiting of
//! identical failures and the recovery message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::event::{Event, Note, Stage};
use super::{retry, EventSink, Notifier};
use crate::units::format_duration;

/// Messages waiting per notifier; when full the oldest is dropped (and counted).
pub const QUEUE_CAPACITY: usize = 64;
/// While the same failure goes on, a digest of the repeats is sent at most this often.
pub const DIGEST_EVERY: Duration = Duration::from_secs(3600);

/// The failure being rate-limited: the first was sent, the repeats are counted.
struct Ongoing {
    stage: Stage,
    key: String,
    error: String,
    failures: u64,
    suppressed: u64,
    since: DateTime<Utc>,
    last_sent: DateTime<Utc>,
}

struct Queue {
    notifier: Arc<dyn Notifier>,
    items: Mutex<VecDeque<Arc<Note>>>,
    wake: Notify,
    busy: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// What happened to the messages of one notifier so far (for the metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierCounts {
    /// The notifier as shown in logs (no secrets).
    pub notifier: String,
    /// Messages the receiver took.
    pub sent: u64,
    /// Messages dropped unsent because the queue was full.
    pub dropped: u64,
    /// Messages given up on: a final failure, or every try failed.
    pub failed: u64,
}

/// Sends events to several notifiers without ever blocking the caller.
pub struct Dispatcher {
    app: String,
    host: String,
    queues: Vec<Arc<Queue>>,
    ongoing: Mutex<Option<Ongoing>>,
}

impl Dispatcher {
    /// Start one sender task per notifier (call inside a tokio runtime).
    pub fn start(app: &str, notifiers: Vec<Arc<dyn Notifier>>) -> Arc<Self> {
        let queues: Vec<Arc<Queue>> = notifiers
            .into_iter()
            .map(|notifier| {
                Arc::new(Queue {
                    notifier,
                    items: Mutex::new(VecDeque::new()),
                    wake: Notify::new(),
                    busy: AtomicBool::new(false),
                    sent: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                })
            })
            .collect();
        for q in &queues {
            tokio::spawn(sender(q.clone()));
        }
        Arc::new(Self {
            app: app.to_string(),
            host: crate::host::name(),
            queues,
            ongoing: Mutex::new(None),
        })
    }

    /// The counts of every notifier, in configuration order.
    pub fn counts(&self) -> Vec<NotifierCounts> {
        self.queues
            .iter()
            .map(|q| NotifierCounts {
                notifier: q.notifier.name(),
                sent: q.sent.load(Ordering::Relaxed),
                dropped: q.dropped.load(Ordering::Relaxed),
                failed: q.failed.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// True when no notifier is configured.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Wait until every queue is empty and no send is in flight, or `limit` passes.
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.queues.iter().all(|q| {
                !q.busy.load(Ordering::SeqCst) && q.items.lock().map(|i| i.is_empty()).unwrap_or(true)
            });
            if idle || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Decide what to send for `event`: rate-limiting of repeats, digests and recoveries.
    fn admit(&self, event: Event) -> Vec<Event> {
        let now = Utc::now();
        let mut guard = self.ongoing.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        match &event {
            Event::Failed {
                stage,
                version,
                error,
                ..
            } => {
                let key = format!("{stage:?}|{}|{error}", version.as_deref().unwrap_or(""));
                match guard.as_mut() {
                    Some(o) if o.key == key => {
                        o.failures += 1;
                        o.suppressed += 1;
                        let due =
                            chrono::Duration::from_std(DIGEST_EVERY).is_ok_and(|d| now - o.last_sent >= d);
                        if due {
                            out.push(Event::Digest {
                                repeats: o.suppressed,
                                since: o.since,
                                error: o.error.clone(),
                            });
                            o.suppressed = 0;
                            o.last_sent = now;
                        } else {
                            tracing::info!(
                                repeats = o.suppressed,
                                error = %error,
                                "Same failure again; notification held back for the digest"
                            );
                        }
                        return out;
                    }
                    _ => {
                        let failures = guard.as_ref().map_or(0, |o| o.failures);
                        if let Some(o) = guard.take() {
                            if o.suppressed > 0 {
                                out.push(Event::Digest {
                                    repeats: o.suppressed,
                                    since: o.since,
                                    error: o.error,
                                });
                            }
                        }
                        *guard = Some(Ongoing {
                            stage: *stage,
                            key,
                            error: error.clone(),
                            failures: failures + 1,
                            suppressed: 0,
                            since: now,
                            last_sent: now,
                        });
                        out.push(event);
                    }
                }
            }
            Event::CheckSucceeded { .. } | Event::Deployed { .. } | Event::RolledBack { .. } => {
                // A good check ends check failures only; a deploy failure ends with a deploy.
                let ends = match (&event, guard.as_ref()) {
                    (_, None) => false,
                    (Event::CheckSucceeded { .. }, Some(o)) => o.stage == Stage::Check,
                    _ => true,
                };
                if let Some(o) = guard.take_if(|_| ends) {
                    if o.suppressed > 0 {
                        out.push(Event::Digest {
                            repeats: o.suppressed,
                            since: o.since,
                            error: o.error.clone(),
                        });
                    }
                    out.push(Event::Recovered {
                        failures: o.failures,
                        last_error: o.error,
                    });
                }
                if !matches!(event, Event::CheckSucceeded { .. }) {
                    out.push(event);
                }
            }
            _ => out.push(event),
        }
        out
    }

    fn enqueue(&self, note: Arc<Note>) {
        for q in &self.queues {
            if q.notifier.quiet() && !note.event.is_alert() {
                continue;
            }
            let dropped = {
                let mut items = q.items.lock().unwrap_or_else(|p| p.into_inner());
                let dropped = if items.len() >= QUEUE_CAPACITY {
                    items.pop_front()
                } else {
                    None
                };
                items.push_back(note.clone());
                dropped
            };
            if let Some(old) = dropped {
                let total = q.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    notifier = %q.notifier.name(),
                    dropped = old.event.kind(),
                    dropped_total = total,
                    capacity = QUEUE_CAPACITY,
                    "Notification queue full; dropped the oldest message"
                );
            }
            q.wake.notify_one();
        }
    }
}

impl EventSink for Dispatcher {
    fn emit(&self, event: Event) {
        if self.queues.is_empty() {
            return;
        }
        for e in self.admit(event) {
            self.enqueue(Arc::new(Note {
                event: e,
                app: self.app.clone(),
                host: self.host.clone(),
                time: Utc::now(),
            }));
        }
    }
}

/// Send the queue's messages one after the other, in order: a message is retried until it
/// is delivered or given up before the next one is taken.
async fn sender(q: Arc<Queue>) {
    loop {
        let next = q.items.lock().ok().and_then(|mut i| {
            let n = i.pop_front();
            if n.is_some() {
                q.busy.store(true, Ordering::SeqCst);
            }
            n
        });
        let Some(note) = next else {
            q.wake.notified().await;
            continue;
        };
        let counter = if deliver(q.notifier.as_ref(), &note).await {
            &q.sent
        } else {
            &q.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        q.busy.store(false, Ordering::SeqCst);
    }
}

/// Deliver one message with bounded retries; true when the receiver took it.
async fn deliver(notifier: &dyn Notifier, note: &Note) -> bool {
    let name = notifier.name();
    let kind = note.event.kind();
    let mut attempt = 1;
    loop {
        let limit = notifier.timeout();
        let (error, timed_out) = match tokio::time::timeout(limit, notifier.send(note)).await {
            Ok(Ok(())) => {
                if attempt > 1 {
                    tracing::info!(notifier = %name, event = kind, attempt, "Notification sent after retrying");
                } else {
                    tracing::debug!(notifier = %name, event = kind, "Notification sent");
                }
                return true;
            }
            Ok(Err(e)) => (e, false),
            Err(_) => (
                retry::transient(format!("no answer within {}", format_duration(limit)), None),
                true,
            ),
        };
        let error_text = format!("{error:#}");
        match retry::delay(&error, attempt) {
            Some(wait) => {
                let retry_in = format_duration(wait);
                if timed_out {
                    tracing::warn!(notifier = %name, event = kind, attempt, retry_in, "Notification timed out; retrying");
                } else {
                    tracing::warn!(notifier = %name, event = kind, attempt, retry_in, error = %error_text, "Notification failure; retrying");
                }
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            None => {
                if timed_out {
                    tracing::warn!(notifier = %name, event = kind, attempt, "Notification timed out; message dropped");
                } else {
                    tracing::warn!(notifier = %name, event = kind, attempt, error = %error_text, "Notification failure; message dropped");
                }
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(err: &str) -> Event {
        Event::Failed {
            stage: Stage::Check,
            version: None,
            error: err.into(),
            next_step: "wait".into(),
            command: "assets".into(),
        }
    }

    /// A receiver that never answers, so that every message after the first waits in the queue.
    struct Stuck;

    #[async_trait::async_trait]
    impl Notifier for Stuck {
        fn name(&self) -> String {
            "stuck".into()
        }
        fn quiet(&self) -> bool {
            false
        }
        fn timeout(&self) -> Duration {
            Duration::from_secs(600)
        }
        async fn send(&self, _: &Note) -> anyhow::Result<()> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_counts_it() {
        let d = Dispatcher::start("app", vec![Arc::new(Stuck)]);
        let emitted = QUEUE_CAPACITY + 10;
        for i in 0..emitted {
            d.emit(Event::Downloaded {
                version: format!("v1.0.{i}"),
            });
            tokio::task::yield_now().await;
        }
        let counts = d.counts();
        assert_eq!(counts.len(), 1);
        // One message is in flight (or not yet taken), the queue holds QUEUE_CAPACITY.
        let dropped = counts[0].dropped as usize;
        assert!(
            dropped == emitted - QUEUE_CAPACITY || dropped == emitted - QUEUE_CAPACITY - 1,
            "{counts:?}"
        );
        assert_eq!((counts[0].sent, counts[0].failed), (0, 0));
        let queued: Vec<String> = d.queues[0]
            .items
            .lock()
            .unwrap()
            .iter()
            .filter_map(|n| n.event.deploy_version().map(str::to_string))
            .collect();
        assert_eq!(queued.len(), QUEUE_CAPACITY);
        assert_eq!(
            queued.last().map(String::as_str),
            Some(format!("v1.0.{}", emitted - 1).as_str())
        );
    }

    #[tokio::test]
    async fn repeats_are_held_and_recovery_reports_them() {
        let d = Dispatcher::start("app", Vec::new());
        assert_eq!(d.admit(fail("boom")).len(), 1);
        assert!(d.admit(fail("boom")).is_empty());
        assert!(d.admit(fail("boom")).is_empty());
        // Other events are never muted.
        assert_eq!(d.admit(Event::Downloaded { version: "v1".into() }).len(), 1);
        // A different failure: digest of the old one, then the new one.
        let out = d.admit(fail("other"));
        assert!(matches!(out[0], Event::Digest { repeats: 2, .. }), "{out:?}");
        assert!(matches!(out[1], Event::Failed { .. }));
        let out = d.admit(Event::CheckSucceeded { version: "v1".into() });
        assert!(
            matches!(out[..], [Event::Recovered { failures: 4, .. }]),
            "{out:?}"
        );
        assert!(d.admit(Event::CheckSucceeded { version: "v1".into() }).is_empty());
    }
}
