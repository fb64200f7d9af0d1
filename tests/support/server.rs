//! Support for `tests/server.rs`: a test app in Python that speaks the socket activation
//! protocol, publishing it, starting `dewy server`, and a tiny HTTP client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::proc::Daemon;
use super::tar_gz;

pub const LONG: Duration = Duration::from_secs(60);

/// The test app: serves HTTP on fd 3, checks the socket activation variables, and behaves as
/// the `MODE` file of its release says: `notify` (sends READY=1), `plain` (speaks no
/// sd_notify), `exit` (exits at once), `never` (serves but never says READY=1), `health` (also
/// serves every further inherited fd, such as dewy's private health probe socket), `crash`
/// (dies a second after it started).
pub const APP: &str = r#"#!/usr/bin/env python3
import http.server, os, signal, socket, socketserver, sys, threading, json, time
here = os.path.dirname(os.path.realpath(__file__))
version = open(os.path.join(here, "VERSION")).read().strip()
mode = open(os.path.join(here, "MODE")).read().strip()
if mode == "exit":
    sys.exit(3)
if mode == "crash":
    threading.Timer(1.0, lambda: os._exit(4)).start()
info = json.dumps({
    "pid": os.getpid(),
    "listen_pid_ok": os.environ.get("LISTEN_PID") == str(os.getpid()),
    "listen_fds": os.environ.get("LISTEN_FDS"),
    "server_starter_port": os.environ.get("SERVER_STARTER_PORT"),
}).encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = info if self.path == "/info" else version.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = False
    block_on_close = True
def server(fd):
    srv = S(("127.0.0.1", 0), H, bind_and_activate=False)
    srv.socket.close()
    srv.socket = socket.socket(fileno=fd)
    # Generations share the socket: a blocking accept() after a wakeup another generation won
    # would hang this one until the drain time ends and SIGKILL hits a just-accepted request.
    srv.socket.setblocking(False)
    return srv
def orphan_watch(parent=os.getppid()):
    # A test that fails SIGKILLs dewy; do not outlive it by more than a few seconds.
    gone = 0
    while True:
        time.sleep(0.5)
        gone = gone + 1 if os.getppid() != parent else 0
        if gone > 10:
            os._exit(0)
if os.environ.get("DEWY_TEST_APP_STAYS") != "1":
    threading.Thread(target=orphan_watch, daemon=True).start()
srv = server(3)
extra = [server(3 + i) for i in range(1, int(os.environ.get("LISTEN_FDS", "1")))] if mode == "health" else []
for e in extra:
    threading.Thread(target=e.serve_forever, daemon=True).start()
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
if mode == "notify":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
srv.serve_forever(poll_interval=0.05)
srv.server_close()
"#;

pub fn release(version: &str, mode: &str) -> Vec<u8> {
    tar_gz(&[
        ("app", 0o755, APP.as_bytes()),
        ("VERSION", 0o644, version.as_bytes()),
        ("MODE", 0o644, mode.as_bytes()),
    ])
}

pub fn publish(dir: &Path, version: &str, mode: &str) {
    let tmp = dir.join(format!(".tmp-{version}"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("app.tar.gz"), release(version, mode)).unwrap();
    std::fs::rename(&tmp, dir.join(version)).unwrap();
}

pub struct Setup {
    pub _tmp: tempfile::TempDir,
    pub registry: PathBuf,
    pub root: PathBuf,
    pub port: u16,
}

pub fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("registry");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Setup {
        _tmp: tmp,
        registry,
        root,
        port,
    }
}

pub fn start(s: &Setup, extra: &[&str]) -> Daemon {
    start_with(s, extra, "./current/app")
}

pub fn start_with(s: &Setup, extra: &[&str], command: &str) -> Daemon {
    start_env(s, extra, command, &[])
}

/// [`start_with`] with extra environment variables for dewy (and, through it, the app).
pub fn start_env(s: &Setup, extra: &[&str], command: &str, env: &[(&str, &str)]) -> Daemon {
    let url = format!("file://{}?artifact=app.tar.gz", s.registry.display());
    let port = format!("127.0.0.1:{}", s.port);
    let mut args = vec![
        "server",
        "--registry",
        &url,
        "--interval",
        "1",
        "--bus",
        "none",
        "--log-level",
        "debug",
        "--port",
        &port,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", command]);
    Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &args,
        env,
        &s.root,
        &s.root.join("../dewy.log"),
    )
}

/// One HTTP/1.0 GET on a new connection; the body, or an error.
pub fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("bad response: {out:?}"))),
    }
}

pub fn served(port: u16, version: &str) -> Option<()> {
    (get(port, "/").ok().as_deref() == Some(version)).then_some(())
}

/// The pid of the app answering now, if one answers.
pub fn try_app_pid(port: u16) -> Option<i32> {
    let info = get(port, "/info").ok()?;
    let v: serde_json::Value = serde_json::from_str(&info).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

pub fn app_pid(port: u16) -> i32 {
    let info = get(port, "/info").expect("info");
    let v: serde_json::Value = serde_json::from_str(&info).expect("info json");
    v["pid"].as_i64().expect("pid") as i32
}

pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// `<root>/.dewy/state.json` as JSON (panics when missing or unparsable: the deployer writes it
/// atomically, so a reader never sees half a file).
pub fn state(s: &Setup) -> serde_json::Value {
    let text = std::fs::read_to_string(s.root.join(".dewy/state.json")).expect("state.json");
    serde_json::from_str(&text).expect("state.json parses")
}
