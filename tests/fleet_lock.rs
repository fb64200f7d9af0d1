//! FleetLock: several foreground `dewy assets` hosts on one release source and a FleetLock
//! server written here (a semaphore of N slots per group, speaking the protocol Zincati speaks).
//! At no moment do more hosts switch releases than there are slots; each switch (and its
//! after-deploy hook) happens while its host holds a slot; a host that cannot get a slot, or
//! cannot reach the server, does not deploy and says why; a slot held before a restart is given
//! back when the host starts.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::proc::Daemon;
use support::{current_file, tar_gz, wait_for, Workspace};

const LONG: Duration = Duration::from_secs(180);
const SLOTS: usize = 2;
const HOSTS: usize = 5;
const GROUP: &str = "web";

/// Nanoseconds since the epoch (the hooks write `date +%s%N`).
fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

#[derive(Default)]
struct LockState {
    /// The ids holding a slot.
    holders: Vec<String>,
    /// Per id: (granted, released) times; released 0 while held.
    spans: BTreeMap<String, Vec<(u128, u128)>>,
    /// Every call: (path, id, answer status).
    calls: Vec<(String, String, u16)>,
    max_held: usize,
}

/// A FleetLock server: `POST /v1/pre-reboot` takes a slot of the group's semaphore (or keeps the
/// one the id holds), `POST /v1/steady-state` gives it back.
#[derive(Clone)]
struct LockServer {
    state: Arc<Mutex<LockState>>,
    url: String,
}

impl LockServer {
    fn start() -> LockServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/lock/", listener.local_addr().expect("addr"));
        let server = LockServer {
            state: Arc::new(Mutex::new(LockState::default())),
            url,
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
        if group != GROUP {
            return fail(400, "bad_group", group);
        }
        let mut st = self.state.lock().expect("state");
        let (status, answer) = match path {
            "/lock/v1/pre-reboot" => {
                if st.holders.iter().any(|h| h == id) {
                    (200, String::new())
                } else if st.holders.len() < SLOTS {
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
    fn occupy(&self, id: &str) {
        let mut st = self.state.lock().expect("state");
        st.holders.push(id.to_string());
        st.spans.entry(id.to_string()).or_default().push((now_ns(), 0));
    }

    fn free(&self, id: &str) {
        let mut st = self.state.lock().expect("state");
        st.holders.retain(|h| h != id);
    }

    fn holders(&self) -> Vec<String> {
        self.state.lock().expect("state").holders.clone()
    }
}

fn site(version: &str) -> Vec<u8> {
    tar_gz(&[("VERSION", 0o644, version.as_bytes())])
}

struct Host {
    id: String,
    root: PathBuf,
    hooks: PathBuf,
    daemon: Daemon,
}

fn host(dir: &Path, ws: &Workspace, id: &str, lock_url: &str) -> Host {
    let root = dir.join(id);
    std::fs::create_dir_all(&root).expect("root");
    let hooks = dir.join(format!("{id}.hooks"));
    // The hook runs after the switch: its start and end bracket the host's activation.
    let hook = format!(
        "echo \"$(date +%s%N) $DEWY_VERSION\" >> {h}; sleep 1; echo \"$(date +%s%N) end\" >> {h}",
        h = hooks.display()
    );
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "registry = \"{}\"\ninterval = 1\nroot = \"{}\"\nafter-deploy-hook = '{hook}'\nfleet-lock = \"{lock_url}\"\nfleet-group = \"{GROUP}\"\nfleet-id = \"{id}\"\n",
            ws.registry_url(),
            root.display()
        ),
    )
    .expect("config");
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &[
            "assets",
            "--config",
            config.to_str().expect("utf-8"),
            "--bus",
            "none",
        ],
        &[],
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

/// The (start, end) of each after-deploy hook run of a host, in nanoseconds.
fn hook_spans(h: &Host) -> Vec<(u128, u128)> {
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

/// The most hook runs (activations) at one moment.
fn max_concurrent(spans: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = spans.iter().flat_map(|(a, b)| [(*a, 1), (*b, -1)]).collect();
    edges.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// Each activation of each host lies inside a span in which the server let it hold a slot.
fn assert_activations_held_the_lock(server: &LockServer, hosts: &[Host]) {
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

fn converge(hosts: &[Host], version: &str) -> Duration {
    let t = Instant::now();
    for h in hosts {
        wait_for(&format!("{} on {version}", h.id), LONG, || {
            let text = std::fs::read_to_string(&h.hooks).unwrap_or_default();
            let hooked = text.lines().any(|l| l.ends_with(&format!(" {version}")))
                && text.lines().last().is_some_and(|l| l.ends_with(" end"));
            (hooked && current_file(&h.root, "VERSION").as_deref() == Some(version)).then_some(())
        });
    }
    t.elapsed()
}

#[test]
fn hosts_deploy_at_most_slots_at_a_time_and_wait_for_the_lock() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = Workspace::new();
    ws.publish("v1.0.0", &site("v1.0.0"));
    let server = LockServer::start();
    // host-0 held a slot when it stopped: starting again, it gives it back first.
    server.occupy("host-0");
    let hosts: Vec<Host> = (0..HOSTS)
        .map(|i| host(tmp.path(), &ws, &format!("host-{i}"), &server.url))
        .collect();
    // A host whose lock server does not answer: never deploys, says why.
    let dead_port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let lost = host(tmp.path(), &ws, "lost", &format!("http://127.0.0.1:{dead_port}/"));

    let first = converge(&hosts, "v1.0.0");
    {
        let st = server.state.lock().expect("state");
        let first_call = st
            .calls
            .iter()
            .find(|(_, id, _)| id == "host-0")
            .expect("host-0 called");
        assert_eq!(first_call.0, "/lock/v1/steady-state", "{:?}", st.calls);
    }

    // The group's slots are taken elsewhere: v1.1.0 waits on every host, which says why.
    server.occupy("maintenance-a");
    server.occupy("maintenance-b");
    ws.publish("v1.1.0", &site("v1.1.0"));
    for h in &hosts {
        wait_for(&format!("{} waiting for the lock", h.id), LONG, || {
            let log = h.daemon.log();
            (log.contains("Deploy waits for the fleet lock") && log.contains("semaphore is full"))
                .then_some(())
        });
    }
    for h in &hosts {
        assert_eq!(
            current_file(&h.root, "VERSION").as_deref(),
            Some("v1.0.0"),
            "{}",
            h.id
        );
    }
    server.free("maintenance-a");
    server.free("maintenance-b");
    let second = converge(&hosts, "v1.1.0");

    let all: Vec<(u128, u128)> = hosts.iter().flat_map(hook_spans).collect();
    assert_eq!(all.len(), 2 * HOSTS, "one activation per host and release");
    let max = max_concurrent(&all);
    assert!(max <= SLOTS, "{max} hosts activated at once");
    assert_activations_held_the_lock(&server, &hosts);
    assert!(server.state.lock().expect("state").max_held <= SLOTS);
    assert!(
        server.holders().is_empty(),
        "every slot given back: {:?}",
        server.holders()
    );

    let log = wait_for("the lost host saying why it waits", LONG, || {
        let log = lost.daemon.log();
        log.contains("cannot reach the fleet lock").then_some(log)
    });
    assert!(log.contains("the live release keeps serving"), "{log}");
    assert_eq!(current_file(&lost.root, "VERSION"), None);

    eprintln!(
        "fleet-lock timeline: {HOSTS} hosts, {SLOTS} slots; max concurrent activations {max}; \
         converged on v1.0.0 in {first:?}, on v1.1.0 in {second:?} after the slots were freed"
    );
}
