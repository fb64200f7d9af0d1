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
