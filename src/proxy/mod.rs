//! Container mode's reverse proxy: port specifications, per-port backend tables swapped
//! atomically, HTTP and TCP forwarding, drain and the persisted table.
//!
//! [`start`] serves already-bound listeners and returns a [`ProxyHandle`] (to change and read the
//! backends) and a [`Server`] (to stop gracefully). `dewy-proxy` runs it as a daemon; the
//! container deployer may run it in-process.

mod connections;
mod copy;
pub mod fds;
mod handle;
pub(crate) mod http;
pub mod listen;
mod metrics;
mod persist;
mod pool;
mod server;
mod start;
mod table;
mod tcp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::port_spec::{PortSpec, Protocol};
pub use handle::{PortStatus, ProxyHandle};
pub use server::Server;
pub use start::{start, start_with};
pub use table::BackendStats;

/// How long an idle backend connection is kept for reuse.
pub const IDLE_BACKEND_FOR: Duration = pool::IDLE_FOR;

use table::{Backends, PortTable};

/// One proxy port: its spec, live table and counters.
pub(crate) struct Port {
    spec: PortSpec,
    timeouts: Timeouts,
    table: PortTable,
    requests: AtomicU64,
    errors: AtomicU64,
    latency_us: AtomicU64,
    /// Counts per [`metrics::LATENCY_BUCKETS`] slot (not cumulative: one increment per request;
    /// the last slot counts what is above every bound).
    buckets: [AtomicU64; metrics::LATENCY_BUCKETS.len() + 1],
}

impl Port {
    /// Count a finished request (HTTP) or connection (TCP).
    fn observe(&self, took: Duration, error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let slot = metrics::LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(metrics::LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
    }
}

struct Shared {
    ports: BTreeMap<u16, Arc<Port>>,
    /// Open connections, the cap, shed connections and drain ends.
    counts: Arc<connections::Counts>,
    backends: Backends,
    state_file: Option<PathBuf>,
    /// Serialises table changes so the file always holds the last table set.
    change: tokio::sync::Mutex<()>,
}

impl Shared {
    fn snapshot(&self) -> BTreeMap<u16, Vec<SocketAddr>> {
        self.ports
            .iter()
            .map(|(p, port)| (*p, port.table.load().addrs()))
            .collect()
    }
}

/// Client-side time limits of HTTP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A whole request head: from the accept (first request), from its first byte (later ones).
    pub head: Duration,
    /// A request body may take this long plus one second per 500 bytes it brings.
    pub body_grace: Duration,
    /// Once the proxy stops, how long an idle keep-alive connection is kept for a last request.
    pub drain_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            head: Duration::from_secs(30),
            body_grace: Duration::from_secs(20),
            drain_idle: Duration::from_secs(5),
        }
    }
}

/// How a proxy serves, beyond its ports.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the table is saved (restored at start when present).
    pub state_file: Option<PathBuf>,
    /// TCP connections and HTTP tunnels close after this long without traffic (zero: never).
    pub idle_timeout: Duration,
    /// Most open client connections (`proxy-max-connections`); derived from the descriptor limit
    /// when not given.
    pub max_connections: Option<usize>,
    /// Client-side time limits.
    pub timeouts: Timeouts,
}

fn list(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "none".into();
    }
    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
}
