//! Container mode's reverse proxy: port specifications, per-port backend tables swapped
//! atomically, HTTP and TCP forwarding, drain and the persisted table.
//!
//! [`start`] serves already-bound listeners and returns a [`ProxyHandle`] (to change and read the
//! backends) and a [`Server`] (to stop gracefully). `dewy-proxy` runs it as a daemon; the
//! container deployer may run it in-process.

mod connections;
mod copy;
pub mod fds;
pub(crate) mod http;
pub mod listen;
mod metrics;
mod persist;
mod pool;
mod table;
mod tcp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

pub use crate::config::port_spec::{PortSpec, Protocol};
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

/// Changes and reads the backend tables of a running proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

/// One port in [`ProxyHandle::status`].
#[derive(Debug, Clone, Serialize)]
pub struct PortStatus {
    pub listen: SocketAddr,
    pub protocol: Protocol,
    pub container_port: Option<u16>,
    /// Requests (HTTP) or connections (TCP) handled, and how many failed.
    pub requests: u64,
    pub errors: u64,
    pub backends: Vec<BackendStats>,
}

impl ProxyHandle {
    /// Replace the backends of the proxy port `port` (the PortSpec's listen port). Returns after the swap.
    pub async fn set_backends(&self, port: u16, backends: Vec<SocketAddr>) -> anyhow::Result<()> {
        let Some(p) = self.shared.ports.get(&port) else {
            let known: Vec<String> = self.shared.ports.keys().map(u16::to_string).collect();
            bail!("no proxy port {port} (ports: {})", known.join(", "));
        };
        let _change = self.shared.change.lock().await;
        let before = p.table.load().addrs();
        self.shared.backends.swap(&p.table, &backends);
        let after = p.table.load().addrs();
        tracing::info!(
            proxy_port = port,
            backends = %list(&after),
            previous = %list(&before),
            "Backends switched"
        );
        self.save().await;
        Ok(())
    }

    /// Current table: listen port -> backends.
    pub fn backends(&self) -> BTreeMap<u16, Vec<SocketAddr>> {
        self.shared.snapshot()
    }

    /// Wait until no request/connection is in flight to `backend` (no longer in any table) or `max` passes; returns how many were still in flight.
    pub async fn drain(&self, backend: SocketAddr, max: Duration) -> usize {
        let deadline = Instant::now() + max;
        loop {
            let n = self.shared.backends.get(backend).map_or(0, |b| b.in_flight());
            if n == 0 || Instant::now() >= deadline {
                if n > 0 {
                    tracing::warn!(%backend, in_flight = n, "Drain time over with requests in flight");
                }
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every port with its backends and counters.
    pub fn status(&self) -> Vec<PortStatus> {
        self.shared
            .ports
            .values()
            .map(|p| PortStatus {
                listen: p.spec.listen,
                protocol: p.spec.protocol,
                container_port: p.spec.container_port,
                requests: p.requests.load(Ordering::Relaxed),
                errors: p.errors.load(Ordering::Relaxed),
                backends: p.table.load().backends.iter().map(|b| b.stats()).collect(),
            })
            .collect()
    }

    /// Backends over all ports.
    pub fn backend_count(&self) -> usize {
        self.shared
            .ports
            .values()
            .map(|p| p.table.load().backends.len())
            .sum()
    }

    /// Proxy ports served.
    pub fn port_count(&self) -> usize {
        self.shared.ports.len()
    }

    async fn save(&self) {
        let Some(path) = self.shared.state_file.clone() else {
            return;
        };
        let table = self.shared.snapshot();
        let result = tokio::task::spawn_blocking(move || persist::save(&path, &table)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "Saving the backend table failed (the new table is live)")
            }
            Err(e) => tracing::warn!(error = %e, "Saving the backend table failed (the new table is live)"),
        }
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "none".into();
    }
    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
}

/// The running listeners; [`Server::shutdown`] stops them gracefully (dropping the server stops
/// them at once).
pub struct Server {
    control: connections::Control,
    /// One per serving thread; each sends when its thread is done.
    done: Vec<tokio::sync::oneshot::Receiver<()>>,
    /// The tables, kept as long as the server runs.
    _shared: Arc<Shared>,
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

/// Serving threads: one per CPU, as many as [`pool::MAX_WORKERS`] at most (`DEWY_PROXY_THREADS`
/// overrides).
fn serving_threads() -> usize {
    std::env::var("DEWY_PROXY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, pool::MAX_WORKERS)
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

/// [`start_with`] with only a state file and the tunnels' idle timeout.
pub async fn start(
    specs: Vec<PortSpec>,
    listeners: Vec<std::net::TcpListener>,
    state_file: Option<PathBuf>,
    idle_timeout: Duration,
) -> anyhow::Result<(ProxyHandle, Server)> {
    let options = Options {
        state_file,
        idle_timeout,
        ..Options::default()
    };
    start_with(specs, listeners, options).await
}

/// Start serving `specs` on `listeners` (already-bound std listeners, one per spec, same order).
///
/// The soft descriptor limit is raised to the hard one and shared between client connections
/// (their cap, unless `options` sets it) and idle backend connections ([`fds::Budget`]).
/// Connections are served by [`serving_threads`] threads, each with its own single-threaded
/// runtime accepting on every port (like nginx's workers): a connection stays on the thread that
/// accepted it, with that thread's idle backend connections, and no work moves between threads.
pub async fn start_with(
    specs: Vec<PortSpec>,
    listeners: Vec<std::net::TcpListener>,
    options: Options,
) -> anyhow::Result<(ProxyHandle, Server)> {
    let Options {
        state_file,
        idle_timeout,
        max_connections,
        timeouts,
    } = options;
    if specs.len() != listeners.len() {
        bail!("{} port specs but {} listeners", specs.len(), listeners.len());
    }
    let mut ports = BTreeMap::new();
    for s in &specs {
        let port = Arc::new(Port {
            spec: *s,
            timeouts,
            table: PortTable::default(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            buckets: Default::default(),
        });
        if ports.insert(s.listen.port(), port).is_some() {
            bail!("proxy port {} is given twice", s.listen.port());
        }
    }
    let (soft, _) = fds::raise_limit();
    let budget = fds::Budget::from_limit(soft).with_clients(max_connections);
    pool::set_process_limit(budget.idle_backends);
    tracing::info!(
        max_connections = budget.clients,
        max_idle_backend_connections = budget.idle_backends,
        "Connection limits"
    );
    let (control, life) = connections::new(budget.clients);
    let shared = Arc::new(Shared {
        ports,
        counts: control.counts(),
        backends: Backends::default(),
        state_file,
        change: tokio::sync::Mutex::new(()),
    });
    restore(&shared);
    for (spec, l) in specs.iter().zip(&listeners) {
        l.set_nonblocking(true)
            .with_context(|| format!("preparing the listener of {spec}"))?;
        let addr = l
            .local_addr()
            .map_or_else(|_| spec.listen.to_string(), |a| a.to_string());
        let port = &shared.ports[&spec.listen.port()];
        tracing::info!(proxy_port = spec.listen.port(), listen = %addr, protocol = %spec.protocol, backends = %list(&port.table.load().addrs()), "Proxy listening");
    }
    let threads = serving_threads();
    let mut done = Vec::new();
    for worker in 0..threads {
        let mut mine = Vec::new();
        for (spec, l) in specs.iter().zip(&listeners) {
            let l = l
                .try_clone()
                .with_context(|| format!("sharing the listener of {spec}"))?;
            mine.push((l, shared.ports[&spec.listen.port()].clone()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let life = life.clone();
        std::thread::Builder::new()
            .name(format!("dewy-proxy-{worker}"))
            .spawn(move || {
                serve_thread(worker, mine, life, idle_timeout);
                let _ = tx.send(());
            })
            .context("starting a serving thread")?;
        done.push(rx);
    }
    drop(listeners);
    Ok((
        ProxyHandle {
            shared: shared.clone(),
        },
        Server {
            control,
            done,
            _shared: shared,
        },
    ))
}

/// One serving thread: accept loops for every port until stop, then the connections still open
/// until they end or the grace period is over.
fn serve_thread(
    worker: usize,
    ports: Vec<(std::net::TcpListener, Arc<Port>)>,
    life: connections::Life,
    idle: Duration,
) {
    pool::set_worker(worker);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker, error = %e, "Serving thread could not start its runtime");
            return;
        }
    };
    rt.block_on(async move {
        let reaped_ports: Vec<Arc<Port>> = ports.iter().map(|(_, p)| p.clone()).collect();
        let mut loops = Vec::new();
        for (l, port) in ports {
            let l = match tokio::net::TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(worker, proxy_port = port.spec.listen.port(), error = %e, "Serving thread could not register a listener");
                    continue;
                }
            };
            loops.push(match port.spec.protocol {
                Protocol::Http => tokio::spawn(http::serve(l, port, life.clone(), idle)),
                Protocol::Tcp => tokio::spawn(tcp::serve(l, port, life.clone(), idle)),
            });
        }
        let reaper = tokio::spawn(reap_idle(reaped_ports));
        for l in loops {
            let _ = l.await;
        }
        reaper.abort();
        // Connections in flight run on this runtime: keep it until they end (the server kills
        // once none is open) or the grace period is over.
        life.killed().await;
    });
}

/// How often each serving thread closes its expired idle backend connections.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Close this thread's idle backend connections once they expire, whether or not a request
/// comes to take one (expiry would otherwise be noticed only then).
async fn reap_idle(ports: Vec<Arc<Port>>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for p in &ports {
            for b in &p.table.load().backends {
                let closed = b.conns.reap();
                if closed > 0 {
                    tracing::debug!(backend = %b.addr, closed, "Idle backend connections closed");
                }
            }
        }
    }
}

/// Load the saved table into the ports it names; a bad file is set aside with a warning.
fn restore(shared: &Shared) {
    let Some(path) = &shared.state_file else { return };
    let saved = match persist::load(path) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            let aside = persist::set_aside(path);
            tracing::warn!(error = %format!("{e:#}"), moved_to = ?aside, "Ignoring an unreadable backend table");
            return;
        }
    };
    for (port, addrs) in saved {
        match shared.ports.get(&port) {
            Some(p) => {
                shared.backends.swap(&p.table, &addrs);
                tracing::info!(proxy_port = port, backends = %list(&addrs), "Backends restored");
            }
            None => {
                tracing::warn!(proxy_port = port, backends = %list(&addrs), "Saved backends for a port no longer configured; dropped")
            }
        }
    }
}
