//! Support for the fleet tests: dewy hosts whose after-deploy hook stamps the start and end of
//! each activation, the timeline read back from those stamps, and a FleetLock server speaking
//! the protocol (`POST /v1/pre-reboot`, `POST /v1/steady-state`) with a semaphore per group.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::proc::Daemon;
use super::{current_file, tar_gz, wait_for};

/// How long a fleet step may take on a busy machine.
pub const LONG: Duration = Duration::from_secs(180);

/// A release holding only its `VERSION` file.
pub fn site(version: &str) -> Vec<u8> {
    tar_gz(&[("VERSION", 0o644, version.as_bytes())])
}

/// One dewy host of a fleet: a foreground run with its own root, config and log.
pub struct Host {
    pub id: String,
    pub root: PathBuf,
    /// `<id>.hooks`: a `<ns> <version>` line when an activation's after-deploy hook starts and a
    /// `<ns> end` line when it ends.
    pub hooks: PathBuf,
    pub daemon: Daemon,
}

/// How to start a [`Host`].
pub struct HostSpec<'a> {
    /// `assets` or `server`.
    pub mode: &'a str,
    /// The release source.
    pub registry: &'a str,
    /// More config lines (the fleet keys, the server's port and command…).
    pub config: &'a str,
    /// What the after-deploy hook runs between its two stamps (an activation's length).
    pub pause: &'a str,
    /// `--bus`: `none`, or a bus address for `dewy pause`.
    pub bus: &'a str,
    /// More environment for dewy (credentials).
    pub env: &'a [(&'a str, &'a str)],
}

/// Start host `id` under `dir` (`dir/<id>` is its root, `dir/<id>.toml` its config,
/// `dir/<id>.log` its log).
pub fn start(dir: &Path, id: &str, spec: &HostSpec<'_>) -> Host {
    let root = dir.join(id);
    std::fs::create_dir_all(&root).expect("root");
    let hooks = dir.join(format!("{id}.hooks"));
    // The hook runs after the switch: its start and end bracket the host's activation.
    let hook = format!(
        "echo \"$(date +%s%N) $DEWY_VERSION\" >> {h}; {pause}; echo \"$(date +%s%N) end\" >> {h}",
        h = hooks.display(),
        pause = spec.pause
    );
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "registry = \"{}\"\ninterval = 1\nroot = \"{}\"\nafter-deploy-hook = '{hook}'\nfleet-id = \"{id}\"\n{}\n",
            spec.registry,
            root.display(),
            spec.config
        ),
    )
    .expect("config");
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &[
            spec.mode,
            "--config",
            config.to_str().expect("utf-8"),
            "--bus",
            spec.bus,
        ],
        spec.env,
        &root,
        &dir.join(format!("{id}.log")),
    );
    Host {
        id: id.to_string(),
        root,
        hooks,
        daemon,
    }
}

/// The (start, end) of each finished after-deploy hook run of a host, in nanoseconds.
pub fn hook_spans(h: &Host) -> Vec<(u128, u128)> {
    let text = std::fs::read_to_string(&h.hooks).unwrap_or_default();
    let stamps: Vec<u128> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    stamps
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0], c[1]))
        .collect()
}

/// The versions a host's after-deploy hook ran for, in order.
pub fn hooked_versions(h: &Host) -> Vec<String> {
    let text = std::fs::read_to_string(&h.hooks).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|v| *v != "end")
        .map(str::to_string)
        .collect()
}

/// The most hook runs (activations) at one moment.
pub fn max_concurrent(spans: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = spans.iter().flat_map(|(a, b)| [(*a, 1), (*b, -1)]).collect();
    edges.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// Whether `h` runs `version`: its hook ran for it and finished, and `current` holds it.
pub fn runs(h: &Host, version: &str) -> bool {
    let text = std::fs::read_to_string(&h.hooks).unwrap_or_default();
    let hooked = text.lines().any(|l| l.ends_with(&format!(" {version}")))
        && text.lines().last().is_some_and(|l| l.ends_with(" end"));
    hooked && current_file(&h.root, "VERSION").as_deref() == Some(version)
}

/// Wait until every host runs `version`; how long it took.
pub fn converge(hosts: &[Host], version: &str) -> Duration {
    let t = Instant::now();
    for h in hosts {
        wait_for(&format!("{} on {version}", h.id), LONG, || {
            runs(h, version).then_some(())
        });
    }
    t.elapsed()
}

pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

#[derive(Default)]
pub struct LockState {
    /// The ids holding a slot.
    pub holders: Vec<String>,
    /// Per id: (granted, released) times; released 0 while held.
    pub spans: BTreeMap<String, Vec<(u128, u128)>>,
    /// Every call: (path, id, answer status).
    pub calls: Vec<(String, String, u16)>,
    pub max_held: usize,
}

/// A FleetLock server: `POST /v1/pre-reboot` takes a slot of the group's semaphore (or keeps the
/// one the id holds), `POST /v1/steady-state` gives it back.
#[derive(Clone)]
pub struct LockServer {
    pub state: Arc<Mutex<LockState>>,
    pub url: String,
    group: String,
    slots: usize,
}

impl LockServer {
    /// A server for one group whose semaphore has `slots` slots.
    pub fn start(group: &str, slots: usize) -> LockServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/lock/", listener.local_addr().expect("addr"));
        let server = LockServer {
            state: Arc::new(Mutex::new(LockState::default())),
            url,
            group: group.to_string(),
            slots,
        };
        let s = server.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.serve(conn));
            }
        });
        server
    }

    fn serve(&self, conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut length = 0;
        let mut protocol = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or((&h, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "fleet-lock-protocol" => protocol = value.trim() == "true",
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) = self.answer(&path, protocol, &body);
        let mut conn = conn;
        let _ = write!(
            conn,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        );
    }

    fn answer(&self, path: &str, protocol: bool, body: &[u8]) -> (u16, String) {
        let fail = |status: u16, kind: &str, value: &str| {
            (
                status,
                serde_json::json!({ "kind": kind, "value": value }).to_string(),
            )
        };
        if !protocol {
            return fail(400, "missing_header", "fleet-lock-protocol: true is required");
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return fail(400, "bad_body", "not JSON");
        };
        let (Some(id), Some(group)) = (
            v["client_params"]["id"].as_str(),
            v["client_params"]["group"].as_str(),
        ) else {
            return fail(400, "bad_body", "client_params.id and .group are required");
        };
        if group != self.group {
            return fail(400, "bad_group", group);
        }
        let mut st = self.state.lock().expect("state");
        let (status, answer) = match path {
            "/lock/v1/pre-reboot" => {
                if st.holders.iter().any(|h| h == id) {
                    (200, String::new())
                } else if st.holders.len() < self.slots {
                    st.holders.push(id.to_string());
                    st.max_held = st.max_held.max(st.holders.len());
                    st.spans.entry(id.to_string()).or_default().push((now_ns(), 0));
                    (200, String::new())
                } else {
                    fail(409, "failed_lock", "semaphore is full")
                }
            }
            "/lock/v1/steady-state" => {
                if let Some(i) = st.holders.iter().position(|h| h == id) {
                    st.holders.remove(i);
                    if let Some(span) = st.spans.get_mut(id).and_then(|s| s.last_mut()) {
                        span.1 = now_ns();
                    }
                }
                (200, String::new())
            }
            _ => fail(404, "not_found", path),
        };
        st.calls.push((path.to_string(), id.to_string(), status));
        (status, answer)
    }

    /// Hold a slot as `id` (another host, or one that crashed holding it).
    pub fn occupy(&self, id: &str) {
        let mut st = self.state.lock().expect("state");
        st.holders.push(id.to_string());
        st.spans.entry(id.to_string()).or_default().push((now_ns(), 0));
    }

    pub fn free(&self, id: &str) {
        let mut st = self.state.lock().expect("state");
        st.holders.retain(|h| h != id);
    }

    pub fn holders(&self) -> Vec<String> {
        self.state.lock().expect("state").holders.clone()
    }
}

/// Each activation of each host lies inside a span in which `server` let it hold a slot.
pub fn assert_activations_held_the_lock(server: &LockServer, hosts: &[Host]) {
    let st = server.state.lock().expect("state");
    for h in hosts {
        let held = st.spans.get(&h.id).cloned().unwrap_or_default();
        for (start, end) in hook_spans(h) {
            assert!(
                held.iter().any(|(g, r)| *g <= start && (*r == 0 || end <= *r)),
                "{}: activation {start}..{end} outside its lock spans {held:?}",
                h.id
            );
        }
    }
}
