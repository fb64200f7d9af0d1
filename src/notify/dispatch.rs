//! The dispatcher: fans events out to every notifier through its own bounded queue, with a
//! timeout per send, rate-limiting of identical failures and the recovery message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::event::{Event, Note, Stage};
use super::{EventSink, Notifier};

/// Messages waiting per notifier; when full the oldest is dropped.
pub const QUEUE_CAPACITY: usize = 64;
/// How long one send may take by default (`timeout=` on the notifier URL overrides it).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);
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
                })
            })
            .collect();
        for q in &queues {
            tokio::spawn(sender(q.clone()));
        }
        Arc::new(Self {
            app: app.to_string(),
            host: hostname(),
            queues,
            ongoing: Mutex::new(None),
        })
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
                tracing::warn!(
                    notifier = %q.notifier.name(),
                    dropped = old.event.kind(),
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
        let limit = q.notifier.timeout();
        match tokio::time::timeout(limit, q.notifier.send(&note)).await {
            Ok(Ok(())) => {
                tracing::debug!(notifier = %q.notifier.name(), event = note.event.kind(), "Notification sent")
            }
            Ok(Err(e)) => tracing::warn!(
                notifier = %q.notifier.name(),
                event = note.event.kind(),
                error = %format!("{e:#}"),
                "Notification failure"
            ),
            Err(_) => tracing::warn!(
                notifier = %q.notifier.name(),
                event = note.event.kind(),
                timeout = %crate::config::values::format_duration(limit),
                "Notification timed out; message dropped"
            ),
        }
        q.busy.store(false, Ordering::SeqCst);
    }
}

/// This machine's name, for the messages.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
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
