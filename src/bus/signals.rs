//! Deploys as they happen, on the bus: the deployer's `Deployed`, `DeployFailed` and `RolledBack`
//! signals and `PropertiesChanged` for `LiveVersion` and `Activity`, for `dewy status --follow`
//! and `busctl monitor`. The deployer knows nothing of the bus: it reports events to a sink and
//! its activity through a watch channel; this module turns both into signals.

use std::sync::Arc;

use tokio::sync::mpsc;
use zbus::Connection;

use super::names;
use super::server::DeployerIface;
use crate::deploy::Deployer;
use crate::notify::{Event, EventSink, Stage};

/// An event sink that queues the deployer's events until the bus connection exists, then hands
/// them to the signal task in order.
pub struct SignalSink {
    tx: mpsc::UnboundedSender<Event>,
}

/// The receiving end of a [`SignalSink`], given to [`start`].
pub struct SignalQueue {
    rx: mpsc::UnboundedReceiver<Event>,
}

/// A sink for the deployer's events and the queue [`start`] emits them from.
pub fn queue() -> (Arc<SignalSink>, SignalQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(SignalSink { tx }), SignalQueue { rx })
}

impl EventSink for SignalSink {
    fn emit(&self, event: Event) {
        if matches!(
            event,
            Event::Deployed { .. }
                | Event::RolledBack { .. }
                | Event::Failed {
                    stage: Stage::Deploy | Stage::Rollback,
                    ..
                }
        ) {
            let _ = self.tx.send(event);
        }
    }
}

/// Emit the queued events as signals of the deployer object on `conn`, and `PropertiesChanged`
/// whenever the deployer's activity changes (the live version changes with it).
pub fn start(conn: &Connection, deployer: &Arc<Deployer>, queue: SignalQueue) {
    let mut rx = queue.rx;
    let events_conn = conn.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Err(e) = signal(&events_conn, &event).await {
                tracing::debug!(error = %e, "Emitting a deploy signal failed");
            }
        }
    });
    let mut activity = deployer.watch_activity();
    let conn = conn.clone();
    tokio::spawn(async move {
        while activity.changed().await.is_ok() {
            if let Err(e) = properties_changed(&conn).await {
                tracing::debug!(error = %e, "Emitting PropertiesChanged failed");
            }
        }
    });
}

async fn iface(conn: &Connection) -> zbus::Result<zbus::object_server::InterfaceRef<DeployerIface>> {
    conn.object_server()
        .interface::<_, DeployerIface>(names::DEPLOYER_PATH)
        .await
}

async fn signal(conn: &Connection, event: &Event) -> zbus::Result<()> {
    let iface = iface(conn).await?;
    let emitter = iface.signal_emitter();
    match event {
        Event::Deployed {
            version,
            previous,
            duration,
            ..
        } => {
            let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
            DeployerIface::deployed(emitter, version, previous.as_deref().unwrap_or_default(), ms).await
        }
        Event::RolledBack { from, to, reason } => DeployerIface::rolled_back(emitter, from, to, reason).await,
        Event::Failed {
            stage,
            version,
            error,
            next_step,
            ..
        } => {
            let stage = match stage {
                Stage::Rollback => "rollback",
                _ => "deploy",
            };
            DeployerIface::deploy_failed(
                emitter,
                version.as_deref().unwrap_or_default(),
                stage,
                error,
                next_step,
            )
            .await
        }
        _ => Ok(()),
    }
}

async fn properties_changed(conn: &Connection) -> zbus::Result<()> {
    let iface = iface(conn).await?;
    let emitter = iface.signal_emitter();
    let guard = iface.get().await;
    guard.activity_changed(emitter).await?;
    guard.live_version_changed(emitter).await
}
