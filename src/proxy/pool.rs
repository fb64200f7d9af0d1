//! Idle keep-alive connections to one backend: kept per serving thread (a connection stays with
//! the runtime that registered it), reused newest first, closed after [`IDLE_FOR`] by a reaper
//! that each serving thread runs, bounded in number over the whole process (a share of the file
//! descriptor limit), and checked before reuse so that one the backend has closed is not handed
//! out.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// How long an idle connection is kept.
pub const IDLE_FOR: Duration = Duration::from_secs(30);
/// Most idle connections kept per backend.
const MAX_IDLE: usize = 512;

/// Idle connections kept over all backends and threads of the process, and the most allowed
/// (set from the descriptor limit at start by [`set_process_limit`]).
static IDLE_TOTAL: AtomicUsize = AtomicUsize::new(0);
static IDLE_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Keep at most `n` idle backend connections in the whole process.
pub fn set_process_limit(n: usize) {
    IDLE_LIMIT.store(n, Ordering::Relaxed);
}

/// Idle backend connections kept now, over the whole process.
pub fn idle_total() -> usize {
    IDLE_TOTAL.load(Ordering::Relaxed)
}

fn forget(n: usize) {
    if n > 0 {
        IDLE_TOTAL.fetch_sub(n, Ordering::Relaxed);
    }
}

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
            forget(dead.len() + usize::from(found.is_some()));
            found
        };
        drop(dead);
        found
    }

    /// Keep `s` for reuse; the oldest goes when the pool is full. When the process keeps as many
    /// idle connections as it may, `s` is closed instead.
    pub fn put(&self, s: TcpStream) {
        if IDLE_TOTAL.load(Ordering::Relaxed) >= IDLE_LIMIT.load(Ordering::Relaxed) {
            drop(s);
            return;
        }
        let oldest = {
            let mut conns = self.slot().lock().unwrap_or_else(|e| e.into_inner());
            let oldest = (conns.len() >= MAX_IDLE).then(|| conns.remove(0));
            conns.push((s, Instant::now()));
            if oldest.is_none() {
                IDLE_TOTAL.fetch_add(1, Ordering::Relaxed);
            }
            oldest
        };
        drop(oldest);
    }

    /// Close this thread's connections idle for longer than [`IDLE_FOR`] (or closed by the
    /// backend); returns how many were closed.
    pub fn reap(&self) -> usize {
        let dead: Vec<TcpStream> = {
            let mut conns = self.slot().lock().unwrap_or_else(|e| e.into_inner());
            if conns.is_empty() {
                return 0;
            }
            let mut dead = Vec::new();
            let mut i = 0;
            while i < conns.len() {
                if conns[i].1.elapsed() > IDLE_FOR || !open(&conns[i].0) {
                    dead.push(conns.remove(i).0);
                } else {
                    i += 1;
                }
            }
            forget(dead.len());
            dead
        };
        dead.len()
    }

    /// Close every idle connection of every thread (the backend left the tables).
    pub fn clear(&self) {
        for slot in &self.per_worker {
            let dead: Vec<_> = {
                let mut conns = slot.lock().unwrap_or_else(|e| e.into_inner());
                let dead: Vec<_> = conns.drain(..).collect();
                forget(dead.len());
                dead
            };
            drop(dead);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slot().lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        for slot in &self.per_worker {
            forget(slot.lock().map_or(0, |c| c.len()));
        }
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
