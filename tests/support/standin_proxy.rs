//! A round-robin TCP forwarder that implements dewy's `ProxyControl`, standing in for dewy's
//! proxy in the container-mode tests: it counts connections in flight per backend, so `drain`
//! really waits for them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dewy::container::ProxyControl;

#[derive(Default)]
struct Table {
    backends: BTreeMap<u16, Vec<SocketAddr>>,
    in_flight: HashMap<SocketAddr, usize>,
}

/// Listeners on 127.0.0.1 for the given proxy ports, forwarding to the current backends.
pub struct StandInProxy {
    table: Arc<Mutex<Table>>,
    next: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl StandInProxy {
    /// Listen on each of `ports` (127.0.0.1).
    pub async fn start(ports: &[u16]) -> Arc<StandInProxy> {
        let table = Arc::new(Mutex::new(Table::default()));
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for &port in ports {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
            let table = table.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let backend = {
                        let mut t = table.lock().unwrap();
                        let list = t.backends.get(&port).cloned().unwrap_or_default();
                        if list.is_empty() {
                            None
                        } else {
                            let b = list[next.fetch_add(1, Ordering::Relaxed) % list.len()];
                            *t.in_flight.entry(b).or_default() += 1;
                            Some(b)
                        }
                    };
                    let Some(backend) = backend else { continue };
                    let table = table.clone();
                    tokio::spawn(async move {
                        if let Ok(mut up) = tokio::net::TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                        }
                        let mut t = table.lock().unwrap();
                        if let Some(n) = t.in_flight.get_mut(&backend) {
                            *n -= 1;
                        }
                    });
                }
            }));
        }
        Arc::new(StandInProxy { table, next, tasks })
    }

    /// The backends of each port now.
    pub fn backends(&self) -> BTreeMap<u16, Vec<SocketAddr>> {
        self.table.lock().unwrap().backends.clone()
    }
}

impl Drop for StandInProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[async_trait::async_trait]
impl ProxyControl for StandInProxy {
    async fn set_backends(&self, port: u16, backends: Vec<SocketAddr>) -> anyhow::Result<()> {
        self.table.lock().unwrap().backends.insert(port, backends);
        Ok(())
    }

    async fn drain(&self, backend: SocketAddr, max: Duration) -> anyhow::Result<usize> {
        let start = Instant::now();
        loop {
            let n = self
                .table
                .lock()
                .unwrap()
                .in_flight
                .get(&backend)
                .copied()
                .unwrap_or(0);
            if n == 0 || start.elapsed() >= max {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl StandInProxy {
    /// Empty or set a port's backends from a test (as a freshly started proxy would have them).
    pub async fn set_backends_for_test(&self, port: u16, backends: Vec<SocketAddr>) {
        self.table.lock().unwrap().backends.insert(port, backends);
    }
}
