//! A Debian tree booted with systemd as PID 1 under `systemd-nspawn`, for end-to-end tests of
//! the packages. The tree is made once by debootstrap and kept (`/var/cache/dewy-test/bookworm`,
//! or `$DEWY_TEST_ROOTFS`); every boot is a volatile overlay over it, so it stays pristine.
//! Commands run inside through `nsenter`; the network is the host's, so ports are on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::wait_for;

/// One booted machine at a time: boots share the tree and the host's ports.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const BOOT: Duration = Duration::from_secs(120);
const PACKAGES: &str = "systemd,systemd-sysv,dbus,libpam-systemd,iproute2,curl";

/// Why this machine cannot boot a systemd container at all, if it cannot (then the test is
/// skipped with that reason). Missing tools are not such a reason: the test fails and says
/// how to install them.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("systemd-nspawn needs root".into());
    }
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && !Path::new("/sys/fs/cgroup/systemd").exists()
    {
        return Some("no cgroup hierarchy for a systemd container".into());
    }
    for tool in ["systemd-nspawn", "debootstrap", "nsenter"] {
        assert!(
            super::have(tool),
            "{tool} is missing: apt-get install systemd-container debootstrap util-linux (.ci/run does)"
        );
    }
    None
}

/// The Debian mirror of this machine's apt sources (the non-security one).
fn mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            // `URIs: http://…/debian` (deb822) or `deb [options] http://…/debian suite …`.
            if let Some(uri) = line
                .split_whitespace()
                .find(|w| w.contains("://") && w.trim_end_matches('/').ends_with("/debian"))
            {
                return uri.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".into()
}

/// The bookworm tree, made by debootstrap on first use (about a minute, 260 MB).
pub fn rootfs() -> PathBuf {
    let dir = std::env::var_os("DEWY_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/dewy-test/bookworm"));
    if dir.join("usr/lib/systemd/systemd").exists() {
        return dir;
    }
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::create_dir_all(dir.parent().expect("rootfs parent")).expect("rootfs parent");
    let start = Instant::now();
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={PACKAGES}"), "bookworm"])
        .arg(&tmp)
        .arg(mirror())
        .output()
        .expect("running debootstrap");
    assert!(
        out.status.success(),
        "debootstrap failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // Another test run made the tree first: use that one.
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            dir.join("usr/lib/systemd/systemd").exists(),
            "moving the new tree into place: {e}"
        );
    }
    eprintln!("debootstrap of {} took {:?}", dir.display(), start.elapsed());
    dir
}

/// A bind mount into the machine.
pub struct Bind<'a> {
    pub host: &'a Path,
    pub guest: &'a str,
    pub read_only: bool,
}

/// A booted machine; powered off (SIGTERM to nspawn, then SIGKILL) on drop.
pub struct Machine {
    nspawn: Child,
    leader: i32,
    pub log: PathBuf,
    pub boot_time: Duration,
}

impl Machine {
    pub fn boot(rootfs: &Path, binds: &[Bind], log: &Path) -> Machine {
        let out = std::fs::File::create(log).expect("nspawn log");
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "-b",
            "--register=no",
            "--keep-unit",
            "--console=passive",
            "--volatile=overlay",
        ])
        .arg("-D")
        .arg(rootfs);
        for b in binds {
            let flag = if b.read_only { "--bind-ro" } else { "--bind" };
            cmd.arg(format!("{flag}={}:{}", b.host.display(), b.guest));
        }
        let start = Instant::now();
        let nspawn = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("starting systemd-nspawn");
        let mut m = Machine {
            leader: 0,
            nspawn,
            log: log.to_path_buf(),
            boot_time: Duration::ZERO,
        };
        let np = m.nspawn.id();
        m.leader = wait_for("the container's init", BOOT, || {
            let children = std::fs::read_to_string(format!("/proc/{np}/task/{np}/children")).ok()?;
            children.split_whitespace().next()?.parse().ok()
        });
        let state = wait_for("systemd in the container to finish booting", BOOT, || {
            let o = m.run(&["systemctl", "is-system-running"]);
            let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            matches!(s.as_str(), "running" | "degraded").then_some(s)
        });
        m.boot_time = start.elapsed();
        if state == "degraded" {
            let failed = m.sh("systemctl --failed --no-legend");
            eprintln!(
                "container booted degraded: {}",
                String::from_utf8_lossy(&failed.stdout)
            );
        }
        m
    }

    /// Run a command inside, with a clean environment.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "--", "env", "-i"])
            .args([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running nsenter")
    }

    /// Run a shell script inside.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["sh", "-c", script])
    }

    /// Run a shell script inside; its stdout, or a panic with everything it printed.
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "`{script}` failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A path inside the machine, as the host sees it.
    pub fn path(&self, guest: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader)).join(guest.trim_start_matches('/'))
    }

    /// Write a file inside the machine (parents created).
    pub fn write(&self, guest: &str, contents: &str) {
        let p = self.path(guest);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("creating the parent directory");
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("writing {guest}: {e}"));
    }

    /// The journal of the machine for `unit`, as JSON entries.
    pub fn journal(&self, unit: &str) -> Vec<serde_json::Value> {
        let out = self.ok(&format!("journalctl -u {unit} -o json --no-pager"));
        out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.nspawn.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                eprintln!("powered off in {:?}", start.elapsed());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}
