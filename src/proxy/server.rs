//! [`Server`]: the running listeners and their graceful stop (drain, then cut).

use std::sync::Arc;
use std::time::Duration;

use super::{connections, Shared};

/// The running listeners; [`Server::shutdown`] stops them gracefully (dropping the server stops
/// them at once).
pub struct Server {
    pub(super) control: connections::Control,
    /// One per serving thread; each sends when its thread is done.
    pub(super) done: Vec<tokio::sync::oneshot::Receiver<()>>,
    /// The tables, kept as long as the server runs.
    pub(super) _shared: Arc<Shared>,
}

impl Server {
    /// Stop accepting and drain: requests in flight are answered with `Connection: close`, an
    /// idle keep-alive connection is served its next request (answered the same way) or closed
    /// once idle for the drain's idle grace, tunnels and TCP connections go on; whatever is left
    /// after `grace` is cut.
    pub async fn shutdown(mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.control.stop();
        while self.control.open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.control.open();
        if left > 0 {
            tracing::warn!(
                connections = left,
                "Grace period over: closing connections still open"
            );
        }
        self.control.kill();
        for d in std::mem::take(&mut self.done) {
            let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
        }
        let c = self.control.counts();
        tracing::info!(
            closed_after_response = c.drained(connections::DrainEnd::AfterResponse),
            closed_idle = c.drained(connections::DrainEnd::IdleGrace),
            cut_at_drain_time = c.drained(connections::DrainEnd::Cut),
            "Drain finished: {} connection(s) closed after a response, {} closed idle at the grace, {} cut at drain-time",
            c.drained(connections::DrainEnd::AfterResponse),
            c.drained(connections::DrainEnd::IdleGrace),
            c.drained(connections::DrainEnd::Cut),
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.control.stop();
        self.control.kill();
    }
}
