//! A client that sends requests one after another on new connections while something happens
//! (a deploy, a restart), keeping every answer and every failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::server::get;
use super::wait_for;

const LONG: Duration = Duration::from_secs(120);

/// Requests sent one after another on new connections while something happens.
pub struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Result<String, String>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let r = get(port, "/")
                    .map(|b| b.trim().to_string())
                    .map_err(|e| e.to_string());
                v.lock().unwrap().push(r);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Load {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Wait until `n` more requests after now were answered by `version`.
    pub fn wait_served(&self, version: &str, n: usize) {
        let from = self.seen.lock().unwrap().len();
        wait_for(&format!("{n} requests served by {version}"), LONG, || {
            let seen = self.seen.lock().unwrap();
            let ok = seen[from..]
                .iter()
                .filter(|r| r.as_deref() == Ok(version))
                .count();
            (ok >= n).then_some(())
        });
    }

    /// Stop; (requests, failures).
    pub fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let seen = self.seen.lock().unwrap();
        let failed = seen.iter().filter_map(|r| r.clone().err()).collect();
        (seen.len(), failed)
    }
}

/// What a [`KeepAlive`] load saw.
#[derive(Debug, Default, Clone)]
pub struct KeepAliveStats {
    /// Requests answered.
    pub answered: usize,
    /// Requests sent that got no complete answer, or connections that could not be made.
    pub failed: Vec<String>,
    /// Answers that said `Connection: close` (the client then reconnected).
    pub told_to_close: usize,
}

/// Clients that each keep one HTTP/1.1 connection alive and send requests on it one after
/// another (as a connection pool does), opening a new connection only when an answer says
/// `Connection: close`. A request written on a connection that then closes without answering
/// counts as failed.
pub struct KeepAlive {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<KeepAliveStats>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl KeepAlive {
    pub fn start(port: u16, connections: usize) -> KeepAlive {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(KeepAliveStats::default()));
        let threads = (0..connections)
            .map(|_| {
                let (stop, stats) = (stop.clone(), stats.clone());
                std::thread::spawn(move || keep_alive_client(port, &stop, &stats))
            })
            .collect();
        KeepAlive { stop, stats, threads }
    }

    /// Wait until `n` more requests after now were answered.
    pub fn wait_answered(&self, n: usize) {
        let from = self.stats.lock().unwrap().answered;
        wait_for(&format!("{n} more keep-alive requests answered"), LONG, || {
            (self.stats.lock().unwrap().answered >= from + n).then_some(())
        });
    }

    pub fn finish(mut self) -> KeepAliveStats {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let stats = self.stats.lock().unwrap().clone();
        stats
    }
}

fn keep_alive_client(port: u16, stop: &AtomicBool, stats: &Mutex<KeepAliveStats>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut conn: Option<BufReader<std::net::TcpStream>> = None;
    while !stop.load(Ordering::SeqCst) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(30)) {
                    Ok(s) => {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                        let _ = s.set_nodelay(true);
                        conn.insert(BufReader::new(s))
                    }
                    Err(e) => {
                        stats.lock().unwrap().failed.push(format!("connect: {e}"));
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
            }
        };
        let answer = (|| -> Result<bool, String> {
            c.get_mut()
                .write_all(b"GET / HTTP/1.1\r\nHost: load.example\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            let mut line = String::new();
            let mut close = false;
            let mut length = 0usize;
            let mut first = true;
            loop {
                line.clear();
                match c.read_line(&mut line) {
                    Ok(0) => return Err("closed without a complete answer".into()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
                let l = line.trim_end().to_ascii_lowercase();
                if first {
                    if !l.starts_with("http/1.1 200") {
                        return Err(format!("answered {l:?}"));
                    }
                    first = false;
                } else if l.is_empty() {
                    break;
                } else if let Some(v) = l.strip_prefix("content-length:") {
                    length = v.trim().parse().map_err(|_| format!("bad length {v:?}"))?;
                } else if let Some(v) = l.strip_prefix("connection:") {
                    close = v.split(',').any(|t| t.trim() == "close");
                }
            }
            let mut body = vec![0u8; length];
            c.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
            Ok(close)
        })();
        let mut s = stats.lock().unwrap();
        match answer {
            Ok(close) => {
                s.answered += 1;
                if close {
                    s.told_to_close += 1;
                    conn = None;
                }
            }
            Err(e) => {
                s.failed.push(e);
                conn = None;
            }
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What wrk's summary (with `--latency`) says; fields it did not print stay 0.
#[derive(Debug, Default, Clone)]
pub struct WrkSummary {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// `Non-2xx or 3xx responses:`.
    pub non_2xx: u64,
    /// The sum of connect, read, write and timeout errors.
    pub socket_errors: u64,
    /// The `Socket errors:` line as printed ("" when there were none).
    pub socket_errors_line: String,
}

/// A wrk latency (`812.00us`, `1.20ms`, `2.01s`) in milliseconds.
fn wrk_ms(v: &str) -> f64 {
    let v = v.trim();
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * mult
}

/// Read wrk's printed summary.
pub fn parse_wrk(out: &str) -> WrkSummary {
    let mut w = WrkSummary::default();
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            w.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            w.p50_ms = wrk_ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            w.p99_ms = wrk_ms(v);
        } else if t.contains(" requests in") {
            w.requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // connect N, read N, write N, timeout N
            w.socket_errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
                .sum::<u64>();
            w.socket_errors_line = t.to_string();
        }
    }
    w
}
