//! Shutdown signalling shared by the accept loops and the connections they spawn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// Stop (no new connections, finish what is in flight) and kill (cut everything) flags, and the
/// number of client connections still open.
#[derive(Clone)]
pub struct Life {
    stop: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
}

/// The sending side, kept by the server.
pub struct Control {
    stop: watch::Sender<bool>,
    kill: watch::Sender<bool>,
    open: Arc<AtomicUsize>,
}

pub fn new() -> (Control, Life) {
    let (stop_tx, stop) = watch::channel(false);
    let (kill_tx, kill) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    (
        Control {
            stop: stop_tx,
            kill: kill_tx,
            open: open.clone(),
        },
        Life { stop, kill, open },
    )
}

impl Control {
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    pub fn kill(&self) {
        self.kill.send_replace(true);
    }

    /// Client connections (and tunnels) still open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Life {
    /// Resolves once the server stops accepting (or the server is gone).
    pub async fn stopped(&self) {
        let mut rx = self.stop.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// True once the server has stopped accepting.
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once the grace period is over (or the server is gone).
    pub async fn killed(&self) {
        let mut rx = self.kill.clone();
        let _ = rx.wait_for(|k| *k).await;
    }

    /// Count a connection as open until the returned guard drops.
    pub fn open(&self) -> OpenGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenGuard(self.open.clone())
    }
}

/// One open connection.
pub struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The next client of `listener`, or `None` once `life` says stop. Accept errors (out of file
/// descriptors, a connection reset before it was taken) are logged and waited out briefly.
pub async fn next_client(
    listener: &tokio::net::TcpListener,
    proxy_port: u16,
    life: &Life,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => return Some(x),
                Err(e) => {
                    tracing::warn!(proxy_port, error = %e, "Accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = life.stopped() => return None,
        }
    }
}
