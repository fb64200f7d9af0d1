//! Starting the proxy: the ports and their tables, the descriptor budget, and the serving
//! threads (each a single-threaded runtime accepting on every port) with their idle-connection
//! reaper.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::handle::restore;
use super::table::{Backends, PortTable};
use super::{
    connections, fds, http, list, pool, tcp, Options, Port, PortSpec, Protocol, ProxyHandle, Server, Shared,
};

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

/// Serving threads: one per CPU, as many as [`pool::MAX_WORKERS`] at most (`DEWY_PROXY_THREADS`
/// overrides).
fn serving_threads() -> usize {
    std::env::var("DEWY_PROXY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, pool::MAX_WORKERS)
}
