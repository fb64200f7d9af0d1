//! Idle keep-alive connections to one backend: kept per serving thread (a connection stays with
//! the runtime that registered it), reused newest first, dropped after [`IDLE_FOR`], and checked
//! before reuse so that one the backend has closed is not handed out.

use std::cell::Cell;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// How long an idle connection is kept.
pub const IDLE_FOR: Duration = Duration::from_secs(30);
/// Most idle connections kept per backend.
const MAX_IDLE: usize = 512;

/// Most serving threads.
pub const MAX_WORKERS: usize = 16;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Mark this thread as serving thread `i` (its own set of idle connections).
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i % MAX_WORKERS));
}

type Slot = Mutex<Vec<(TcpStream, Instant)>>;

#[derive(Debug, Default)]
pub struct Idle {
    per_worker: [Slot; MAX_WORKERS],
}

impl Idle {
    fn slot(&self) -> &Slot {
        &self.per_worker[WORKER.with(Cell::get)]
    }

    /// An idle connection of this thread the backend has not closed, if there is one.
    pub fn take(&self) -> Option<TcpStream> {
        let mut dead = Vec::new();
        let found = {
            let mut conns = self.slot().lock().unwrap_or_else(|e| e.into_inner());
            let expired = conns
                .iter()
                .take_while(|(_, since)| since.elapsed() > IDLE_FOR)
                .count();
            dead.extend(conns.drain(..expired).map(|(s, _)| s));
            let mut found = None;
            while let Some((s, _)) = conns.pop() {
                if open(&s) {
                    found = Some(s);
                    break;
                }
                dead.push(s);
            }
            found
        };
        drop(dead);
        found
    }

    /// Keep `s` for reuse; the oldest goes when the pool is full.
    pub fn put(&self, s: TcpStream) {
        let oldest = {
            let mut conns = self.slot().lock().unwrap_or_else(|e| e.into_inner());
            let oldest = (conns.len() >= MAX_IDLE).then(|| conns.remove(0));
            conns.push((s, Instant::now()));
            oldest
        };
        drop(oldest);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slot().lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// True when an idle connection has neither been closed by the backend nor received stray bytes.
/// Costs no system call unless the reactor saw the socket become readable.
fn open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn closed_connections_are_not_reused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let pool = Idle::default();
        let a = TcpStream::connect(addr).await.expect("connect");
        let (mut a_server, _) = l.accept().await.expect("accept");
        let b = TcpStream::connect(addr).await.expect("connect");
        let (b_server, _) = l.accept().await.expect("accept");
        pool.put(a);
        pool.put(b);
        // b (newest) is closed by its server, a receives a stray byte: neither is handed out.
        drop(b_server);
        a_server.write_all(b"x").await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take().is_none());
        assert_eq!(pool.len(), 0);
        let c = TcpStream::connect(addr).await.expect("connect");
        let (_c_server, _) = l.accept().await.expect("accept");
        pool.put(c);
        assert!(pool.take().is_some(), "an open idle connection is reused");
    }
}
