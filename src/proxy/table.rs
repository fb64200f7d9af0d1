//! Backend tables: per-port lists swapped atomically, round robin over healthy backends,
//! ejection of backends that refuse connections, and per-backend counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

/// How long a backend that refused a connection is skipped.
pub const EJECT_FOR: Duration = Duration::from_secs(5);

/// One upstream address with its counters. Shared by every table that lists it, so counters
/// and in-flight counts survive table swaps.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Milliseconds since `epoch` until which the backend is skipped (0: healthy).
    ejected_until_ms: AtomicU64,
    epoch: Instant,
    /// Idle keep-alive connections (HTTP mode).
    pub conns: super::pool::Idle,
}

/// Counters of one backend, as reported over D-Bus.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackendStats {
    pub addr: SocketAddr,
    pub in_flight: usize,
    pub requests: u64,
    pub errors: u64,
    pub ejected: bool,
}

impl Backend {
    fn new(addr: SocketAddr, epoch: Instant) -> Self {
        Self {
            addr,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ejected_until_ms: AtomicU64::new(0),
            epoch,
            conns: super::pool::Idle::default(),
        }
    }

    /// Count a request or connection as started; it ends when the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: Arc::clone(self),
        }
    }

    /// Requests or connections to this backend still open.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Count a failed request or connection.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Skip this backend for [`EJECT_FOR`].
    pub fn eject(&self) {
        let until = self.epoch.elapsed() + EJECT_FOR;
        self.ejected_until_ms
            .store(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// True while the backend is ejected.
    pub fn ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && (self.epoch.elapsed().as_millis() as u64) < until
    }

    pub fn stats(&self) -> BackendStats {
        BackendStats {
            addr: self.addr,
            in_flight: self.in_flight(),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            ejected: self.ejected(),
        }
    }
}

/// A request or connection in flight to a backend; dropping it ends it.
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The backends of one port at one moment. Requests keep the `Arc<Table>` they started with.
#[derive(Debug, Default)]
pub struct Table {
    pub backends: Vec<Arc<Backend>>,
    next: AtomicUsize,
}

impl Table {
    /// The next backend in round-robin order that is healthy and not in `tried`; when every
    /// untried backend is ejected, the next untried one anyway (better a try than a 502).
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let untried = |b: &&Arc<Backend>| !tried.contains(&b.addr);
        let ring = || (0..n).map(|i| &self.backends[(start + i) % n]);
        ring()
            .filter(untried)
            .find(|b| !b.ejected())
            .or_else(|| ring().find(untried))
            .cloned()
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.backends.iter().map(|b| b.addr).collect()
    }
}

/// The live table of one port.
#[derive(Debug, Default)]
pub struct PortTable {
    current: ArcSwap<Table>,
}

impl PortTable {
    /// The table new requests use now.
    pub fn load(&self) -> Arc<Table> {
        self.current.load_full()
    }

    fn store(&self, t: Table) {
        self.current.store(Arc::new(t));
    }
}

/// Every backend any table lists (or a request still holds), by address, so that the same
/// address keeps one set of counters.
#[derive(Debug)]
pub struct Backends {
    known: Mutex<HashMap<SocketAddr, Weak<Backend>>>,
    epoch: Instant,
}

impl Default for Backends {
    fn default() -> Self {
        Self {
            known: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

impl Backends {
    /// Make `addrs` (duplicates dropped, order kept) the table of `port`.
    pub fn swap(&self, port: &PortTable, addrs: &[SocketAddr]) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|_, w| w.strong_count() > 0);
        let mut list: Vec<Arc<Backend>> = Vec::with_capacity(addrs.len());
        for a in addrs {
            if list.iter().any(|b| b.addr == *a) {
                continue;
            }
            let b = match known.get(a).and_then(Weak::upgrade) {
                Some(b) => b,
                None => {
                    let b = Arc::new(Backend::new(*a, self.epoch));
                    known.insert(*a, Arc::downgrade(&b));
                    b
                }
            };
            list.push(b);
        }
        let before = port.load();
        port.store(Table {
            backends: list,
            next: AtomicUsize::new(0),
        });
        // A backend leaving the table is about to be stopped: its idle connections would be
        // closed under the next request that took one, so they go now.
        let now = port.load();
        for b in &before.backends {
            if !now.backends.iter().any(|n| n.addr == b.addr) {
                b.conns.clear();
            }
        }
    }

    /// The backend of `addr` if a table lists it or a request still holds it.
    pub fn get(&self, addr: SocketAddr) -> Option<Arc<Backend>> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(&addr).and_then(Weak::upgrade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn round_robin_skips_ejected_and_tried() {
        let reg = Backends::default();
        let port = PortTable::default();
        reg.swap(&port, &[addr(1), addr(2), addr(3), addr(2)]);
        let t = port.load();
        assert_eq!(t.addrs(), [addr(1), addr(2), addr(3)]);
        let picks: Vec<_> = (0..6).map(|_| t.pick(&[]).map(|b| b.addr.port())).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3].map(Some));
        t.backends[1].eject();
        let picks: Vec<_> = (0..4)
            .filter_map(|_| t.pick(&[]).map(|b| b.addr.port()))
            .collect();
        assert!(!picks.contains(&2), "{picks:?}");
        assert_eq!(t.pick(&[addr(1), addr(3)]).map(|b| b.addr), Some(addr(2)));
        assert!(t.pick(&[addr(1), addr(2), addr(3)]).is_none());
    }

    #[test]
    fn counters_survive_a_swap() {
        let reg = Backends::default();
        let port = PortTable::default();
        reg.swap(&port, &[addr(1)]);
        let guard = port.load().pick(&[]).map(|b| b.begin());
        reg.swap(&port, &[addr(2)]);
        let b1 = reg.get(addr(1)).expect("held by the request");
        assert_eq!(b1.in_flight(), 1);
        drop(guard);
        assert_eq!(b1.in_flight(), 0);
        reg.swap(&port, &[addr(1), addr(2)]);
        assert_eq!(reg.get(addr(1)).map(|b| b.stats().requests), Some(1));
    }
}
