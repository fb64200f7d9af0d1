//! systemd protocols without systemd: sd_notify on a datagram socket the test binds, and
//! structured entries in a real `systemd-journald` started by the test when none runs.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use support::proc::Daemon;
use support::{current_file, tar_gz, wait_for};

const LONG: Duration = Duration::from_secs(60);

fn recv_all(sock: &UnixDatagram, until: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + until;
    while std::time::Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}

#[test]
fn deployer_speaks_sd_notify() {
    let bus = support::dbus::PrivateBus::start();
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let cfg = tmp.path().join("app.toml");
    std::fs::create_dir_all(tmp.path().join("reg")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "registry = \"file://{}/reg\"\nroot = \"{}/root\"\n",
            tmp.path().display(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy-deployer"),
        &["app", "--config", cfg.to_str().unwrap(), "--bus", &bus.address],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
        tmp.path(),
        &tmp.path().join("deployer.log"),
    );
    let msgs = recv_all(&sock, Duration::from_secs(2));
    let ready = msgs
        .iter()
        .find(|m| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY: {msgs:?}\n{}", d.log()));
    assert!(ready.contains("STATUS=nothing live; idle"), "{ready}");
    assert!(
        msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3,
        "{msgs:?}"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let msgs = recv_all(&sock, Duration::from_millis(500));
    assert!(msgs.iter().any(|m| m.contains("STOPPING=1")), "{msgs:?}");
    assert!(d.terminate(Duration::from_secs(10)).success());
}

/// A journald for the test when the machine has none (stopped at the end).
struct Journald(Option<Child>);

impl Journald {
    fn ensure() -> Journald {
        let socket = Path::new("/run/systemd/journal/socket");
        let listening = || UnixDatagram::unbound().and_then(|s| s.connect(socket)).is_ok();
        if listening() {
            return Journald(None);
        }
        let child = Command::new("/lib/systemd/systemd-journald")
            .spawn()
            .expect("systemd-journald is needed for this test (Debian package systemd); run as root");
        wait_for("journald socket", LONG, || listening().then_some(()));
        Journald(Some(child))
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn journal_entries_carry_structured_fields() {
    let _journald = Journald::ensure();
    let tmp = tempfile::tempdir().unwrap();
    let app = format!("jtest{}", std::process::id());
    let reg = tmp.path().join("reg/v3.1.4");
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(reg.join("site.tar.gz"), tar_gz(&[("VERSION", 0o644, b"v3.1.4")])).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{}/reg", tmp.path().display());
    let mut d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &[
            "assets",
            "--registry",
            &url,
            "--name",
            &app,
            "--log-format",
            "journal",
            "--bus",
            "none",
            "-i",
            "1",
        ],
        &[],
        &root,
        &tmp.path().join("dewy.log"),
    );
    wait_for("deployed", LONG, || {
        (current_file(&root, "VERSION").as_deref() == Some("v3.1.4")).then_some(())
    });
    assert!(d.terminate(Duration::from_secs(10)).success());
    let entries = wait_for("journal entries", LONG, || {
        let out = Command::new("journalctl")
            .args(["-o", "json", "--no-pager", &format!("DEWY_APP={app}")])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("Create symlink").then_some(text)
    });
    let entries: Vec<serde_json::Value> = entries
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let cached = entries
        .iter()
        .find(|e| e["MESSAGE"] == "Cached artifact")
        .expect("a Cached artifact entry");
    assert_eq!(cached["SYSLOG_IDENTIFIER"], "dewy");
    assert_eq!(cached["MESSAGE_ID"], "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e61");
    assert_eq!(cached["DEWY_VERSION"], "v3.1.4");
    assert_eq!(cached["DEWY_CACHE_KEY"], "v3.1.4--site.tar.gz");
    let symlink = entries.iter().find(|e| e["MESSAGE"] == "Create symlink").unwrap();
    assert_eq!(symlink["MESSAGE_ID"], "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e62");
    assert!(symlink["DEWY_RELEASE_DIR"]
        .as_str()
        .unwrap()
        .contains("/releases/"));
}
