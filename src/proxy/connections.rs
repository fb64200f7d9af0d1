//! Shutdown signalling shared by the accept loops and the connections they spawn, the cap on
//! open client connections, and how each connection ended during a drain.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::port_spec::Protocol;

/// Stop (no new connections, finish what is in flight) and kill (cut everything) flags, the
/// number of client connections still open and the cap on them.
#[derive(Clone)]
pub struct Life {
    stop: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
    shared: Arc<Counts>,
}

/// The sending side, kept by the server.
pub struct Control {
    stop: watch::Sender<bool>,
    kill: watch::Sender<bool>,
    shared: Arc<Counts>,
}

/// How a client connection ended once the proxy was stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Closed after a response that said `Connection: close` (or the client closed first).
    AfterResponse,
    /// Idle keep-alive connection closed when the idle grace ran out.
    IdleGrace,
    /// Still open (a request, a tunnel, a TCP connection) at `drain-time`, and cut.
    Cut,
}

/// Counters shared by every serving thread.
#[derive(Default)]
pub struct Counts {
    open: AtomicUsize,
    max_open: AtomicUsize,
    shed: AtomicU64,
    drain_after_response: AtomicU64,
    drain_idle: AtomicU64,
    drain_cut: AtomicU64,
}

impl Counts {
    /// Connections refused for being over the cap, since start.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Connections that ended during a drain, by how.
    pub fn drained(&self, how: DrainEnd) -> u64 {
        self.drain_counter(how).load(Ordering::Relaxed)
    }

    fn drain_counter(&self, how: DrainEnd) -> &AtomicU64 {
        match how {
            DrainEnd::AfterResponse => &self.drain_after_response,
            DrainEnd::IdleGrace => &self.drain_idle,
            DrainEnd::Cut => &self.drain_cut,
        }
    }

    /// The cap on open client connections.
    pub fn max_open(&self) -> usize {
        self.max_open.load(Ordering::Relaxed)
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// `max_open`: the cap on open client connections (past it new ones are shed).
pub fn new(max_open: usize) -> (Control, Life) {
    let (stop_tx, stop) = watch::channel(false);
    let (kill_tx, kill) = watch::channel(false);
    let shared = Arc::new(Counts::default());
    shared.max_open.store(max_open.max(1), Ordering::Relaxed);
    (
        Control {
            stop: stop_tx,
            kill: kill_tx,
            shared: shared.clone(),
        },
        Life { stop, kill, shared },
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
        self.shared.open()
    }

    pub fn counts(&self) -> Arc<Counts> {
        self.shared.clone()
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

    /// True once the grace period is over.
    pub fn is_killed(&self) -> bool {
        *self.kill.borrow()
    }

    /// Count a connection as open until the returned guard drops. When the connection ends
    /// during a drain, the guard counts how ([`OpenGuard::ended`], else as cut when the proxy
    /// was killed, else as closed after a response).
    pub fn open(&self) -> OpenGuard {
        self.shared.open.fetch_add(1, Ordering::AcqRel);
        OpenGuard {
            life: self.clone(),
            end: None,
        }
    }

    /// Record how a connection ended (used once the proxy stops).
    fn count_end(&self, how: DrainEnd) {
        self.shared.drain_counter(how).fetch_add(1, Ordering::Relaxed);
    }

    /// True when the open connections have reached the cap.
    fn full(&self) -> bool {
        self.shared.open() >= self.shared.max_open()
    }
}

/// One open connection.
pub struct OpenGuard {
    life: Life,
    end: Option<DrainEnd>,
}

impl OpenGuard {
    /// Say how the connection ends, for the drain counters.
    pub fn ended(&mut self, how: DrainEnd) {
        self.end = Some(how);
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.life.is_stopped() {
            let how = if self.life.is_killed() {
                DrainEnd::Cut
            } else {
                self.end.unwrap_or(DrainEnd::AfterResponse)
            };
            self.life.count_end(how);
        }
        self.life.shared.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Logs a recurring warning at most once per interval, with the number held back meanwhile.
pub struct Throttle {
    every_ms: u64,
    /// Milliseconds since `epoch()` of the last line written, plus one (0: never).
    last: AtomicU64,
    held: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Self {
            every_ms: every.as_millis() as u64,
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last line)` when a line may be written now.
    pub fn allow(&self) -> Option<u64> {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now < last + self.every_ms {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

/// Accept errors are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(5);
static ACCEPT_ERRORS: Throttle = Throttle::new(LOG_EVERY);
static SHED: Throttle = Throttle::new(LOG_EVERY);
/// First and longest pause after an accept error that a retry cannot fix at once.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The next client of `listener`, or `None` once `life` says stop. Past the connection cap a
/// client is shed at once (HTTP ports answer `503` first). Accept errors are logged at most
/// once per interval; a shortage of descriptors or memory is waited out with a growing pause.
pub async fn next_client(
    listener: &tokio::net::TcpListener,
    proxy_port: u16,
    protocol: Protocol,
    life: &Life,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    let mut pause = BACKOFF_FIRST;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((s, peer)) => {
                    if life.full() {
                        shed(s, proxy_port, protocol, life);
                        continue;
                    }
                    return Some((s, peer));
                }
                Err(e) => {
                    if let Some(held) = ACCEPT_ERRORS.allow() {
                        tracing::warn!(proxy_port, error = %e, similar_errors_not_logged = held, "Accept failed");
                    }
                    // The proxy short of descriptors or memory: retrying at once would spin.
                    if super::http::own_shortage(&e) {
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = life.stopped() => return None,
                        }
                        pause = (pause * 2).min(BACKOFF_MAX);
                    }
                }
            },
            _ = life.stopped() => return None,
        }
    }
}

/// The answer a client over the cap gets on an HTTP port.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 51\r\nRetry-After: 1\r\nConnection: close\r\n\r\n\
503 Service Unavailable: too many open connections\n";

/// Refuse a connection over the cap without waiting for it: what the client has sent already is
/// read and dropped (so that the close is not a reset that could discard the answer), one write
/// that the socket buffer takes at once (HTTP), then close.
fn shed(s: tokio::net::TcpStream, proxy_port: u16, protocol: Protocol, life: &Life) {
    life.shared.shed.fetch_add(1, Ordering::Relaxed);
    if protocol == Protocol::Http {
        let mut scratch = [0u8; 4096];
        for _ in 0..4 {
            if !matches!(s.try_read(&mut scratch), Ok(n) if n > 0) {
                break;
            }
        }
        let _ = s.try_write(BUSY);
    }
    if let Some(held) = SHED.allow() {
        tracing::warn!(
            proxy_port,
            open = life.shared.open(),
            max = life.shared.max_open(),
            similar_not_logged = held,
            "Too many open connections: new ones are refused until some close"
        );
    }
    drop(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_holds_back_within_the_interval() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        let t = Throttle::new(Duration::ZERO);
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), Some(0));
    }

    #[test]
    fn busy_answer_length_matches() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    #[test]
    fn drain_ends_are_counted_once_stopped() {
        let (control, life) = new(2);
        drop(life.open());
        assert_eq!(control.counts().drained(DrainEnd::AfterResponse), 0);
        assert!(!life.full());
        let _a = life.open();
        let _b = life.open();
        assert!(life.full());
        control.stop();
        let mut g = life.open();
        g.ended(DrainEnd::IdleGrace);
        drop(g);
        drop(life.open());
        control.kill();
        drop(life.open());
        let c = control.counts();
        assert_eq!(c.drained(DrainEnd::IdleGrace), 1);
        assert_eq!(c.drained(DrainEnd::AfterResponse), 1);
        assert_eq!(c.drained(DrainEnd::Cut), 1);
        assert_eq!(c.open(), 2);
    }
}
