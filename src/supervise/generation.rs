//! One generation of the app: spawned with the sockets and its own `NOTIFY_SOCKET`, watched
//! until it is ready or fails, and stopped gracefully (SIGTERM to its process group, drain, SIGKILL).

use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::net::UnixDatagram;
use tokio::sync::watch;

use super::sockets::{self, Socket};

/// Sets `LISTEN_PID` to the app's own pid, then execs the app. Why a shell: `$$` is the shell's
/// pid and `exec` keeps it, so the app sees its own pid; the variable is set by a fresh process
/// instead of between fork and exec in the (multi-threaded) deployer, where changing the
/// environment is not async-signal-safe; and `/bin/sh` is on every host, unlike a path to dewy's
/// own binary, which a package upgrade may replace while the deployer runs.
const SHIM: &str = "LISTEN_PID=$$; export LISTEN_PID; exec \"$@\"";

/// [`SHIM`] held at a gate: it waits for a line on stdin (sent once the deployer moved it into
/// its own unit, so that no process of the app starts in the deployer's cgroup), then execs the
/// app with stdin from /dev/null.
const GATED_SHIM: &str = "read -r _ || exit 125; LISTEN_PID=$$; export LISTEN_PID; exec \"$@\" </dev/null";

/// [`GATED_SHIM`] whose output goes to the journal through `systemd-cat`, which connects the
/// stream from inside the app's unit (journald files a stream under the unit its writer was in
/// when it connected: `journalctl -u dewy-app-<app>-<n>.scope` and `systemctl status` show it) and
/// execs the app, keeping its pid. The identifier comes in `DEWY_JOURNAL_IDENTIFIER`.
const GATED_JOURNAL_SHIM: &str = "read -r _ || exit 125; LISTEN_PID=$$; export LISTEN_PID; \
     ident=$DEWY_JOURNAL_IDENTIFIER; unset DEWY_JOURNAL_IDENTIFIER; \
     exec /usr/bin/systemd-cat --identifier=\"$ident\" -- \"$@\" </dev/null";

/// Where [`GATED_JOURNAL_SHIM`] finds `systemd-cat`.
const SYSTEMD_CAT: &str = "/usr/bin/systemd-cat";

/// How a generation ended: its exit status, or unknown for a generation adopted from an earlier
/// deployer (it is not this process's child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended(pub Option<ExitStatus>);

/// How a generation proves it is ready.
#[derive(Debug, Clone)]
pub enum Check {
    /// `READY=1` on its `NOTIFY_SOCKET`.
    Notify,
    /// Still running after this delay (or `READY=1` earlier).
    Alive(Duration),
    /// `GET path` on the generation's private probe socket answers 2xx/3xx.
    Health(String),
}

/// What a generation is started with.
pub struct Launch<'a> {
    pub number: u64,
    pub version: &'a str,
    pub command: &'a [String],
    pub cwd: &'a Path,
    pub sockets: &'a [Socket],
    pub run_dir: &'a Path,
    /// Bind a private loopback probe socket and pass it as the last fd (`dewy-health`).
    pub probe: bool,
    /// Send the app's stdout and stderr to the journal under this `SYSLOG_IDENTIFIER`.
    pub journal_ident: Option<&'a str>,
    /// Hold the app at a gate until [`Generation::release`] (it is moved into its unit first).
    pub gated: bool,
}

/// A running (or exited) generation.
pub struct Generation {
    pub number: u64,
    pub version: String,
    pub pid: i32,
    pub started: Instant,
    exit: watch::Receiver<Option<Ended>>,
    notify: UnixDatagram,
    /// The gate of a gated start, until released.
    gate: std::sync::Mutex<Option<tokio::process::ChildStdin>>,
    /// The transient unit the generation runs in, under systemd.
    pub unit: std::sync::Mutex<Option<String>>,
    notify_path: PathBuf,
    probe_port: Option<u16>,
    _probe: Option<OwnedFd>,
}

impl Generation {
    /// Spawn the app in its own process group with fds 3.. = the sockets.
    pub fn spawn(l: Launch<'_>) -> anyhow::Result<Generation> {
        let program = l.command.first().context("no command to run")?;
        std::fs::create_dir_all(l.run_dir).with_context(|| format!("creating {}", l.run_dir.display()))?;
        let notify_path = l.run_dir.join(format!("notify-{}.sock", l.number));
        let _ = std::fs::remove_file(&notify_path);
        let notify =
            UnixDatagram::bind(&notify_path).with_context(|| format!("binding {}", notify_path.display()))?;
        let (probe, probe_port) = if l.probe {
            let p = TcpListener::bind("127.0.0.1:0").context("binding the health probe socket")?;
            let port = p.local_addr().context("health probe address")?.port();
            (Some(OwnedFd::from(p)), Some(port))
        } else {
            (None, None)
        };
        let mut fds: Vec<RawFd> = sockets::raw(l.sockets);
        let mut names: Vec<String> = l.sockets.iter().map(|s| s.name.clone()).collect();
        if let Some(p) = &probe {
            fds.push(p.as_raw_fd());
            names.push("dewy-health".into());
        }
        // A gated generation connects its own journal stream once it is in its unit.
        let journal_in_unit = l.gated && l.journal_ident.is_some() && Path::new(SYSTEMD_CAT).exists();
        let shim = match (l.gated, journal_in_unit) {
            (true, true) => GATED_JOURNAL_SHIM,
            (true, false) => GATED_SHIM,
            (false, _) => SHIM,
        };
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(shim)
            .arg(program)
            .args(l.command)
            .current_dir(l.cwd)
            .stdin(if l.gated { Stdio::piped() } else { Stdio::null() })
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES")
            .env("NOTIFY_SOCKET", &notify_path)
            .env("DEWY_VERSION", l.version)
            .env("SERVER_STARTER_GENERATION", l.number.to_string())
            .process_group(0);
        if !fds.is_empty() {
            cmd.env("LISTEN_FDS", fds.len().to_string())
                .env("LISTEN_FDNAMES", names.join(":"))
                .env("SERVER_STARTER_PORT", sockets::server_starter_port(l.sockets));
        }
        if let (true, Some(ident)) = (journal_in_unit, l.journal_ident) {
            cmd.env("DEWY_JOURNAL_IDENTIFIER", ident);
        } else if let Some(ident) = l.journal_ident {
            match journal_stream(ident) {
                Ok(fd) => {
                    let err = fd.try_clone().context("duplicating the journal stream")?;
                    cmd.stdout(Stdio::from(fd)).stderr(Stdio::from(err));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Journal stream unavailable; the app's output goes to dewy's")
                }
            }
        }
        if let Some(port) = probe_port {
            cmd.env("DEWY_HEALTH_PORT", port.to_string());
        }
        // SAFETY: `install` only calls fcntl and dup2 on fds that stay open in the parent.
        unsafe {
            cmd.pre_exec(move || sockets::install(&fds));
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", l.command.join(" ")))?;
        let pid = child.id().context("the app exited before its pid was known")? as i32;
        let gate = child.stdin.take();
        let (tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = child
                .wait()
                .await
                .unwrap_or_else(|_| ExitStatus::from_raw(255 << 8));
            let _ = tx.send(Some(Ended(Some(status))));
        });
        Ok(Generation {
            number: l.number,
            version: l.version.to_string(),
            pid,
            started: Instant::now(),
            exit,
            notify,
            gate: std::sync::Mutex::new(gate),
            unit: std::sync::Mutex::new(None),
            notify_path,
            probe_port,
            _probe: probe,
        })
    }

    /// Let a gated generation exec the app.
    pub async fn release(&self) {
        use tokio::io::AsyncWriteExt;
        let gate = self.gate.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut gate) = gate {
            if let Err(e) = gate.write_all(b"go\n").await {
                tracing::warn!(pid = self.pid, error = %e, "Releasing the app's start gate failed");
            }
        }
    }

    /// A generation an earlier deployer started and left running in its unit: watched through a
    /// pidfd (it is not this process's child, so its exit status is unknown).
    pub fn adopt(number: u64, version: &str, pid: i32, unit: String) -> anyhow::Result<Generation> {
        let pidfd = pidfd_open(pid).with_context(|| format!("watching pid {pid}"))?;
        let (tx, exit) = watch::channel(None);
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open, the same fd, until it drops.
        let watched =
            unsafe { tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow!("watching the pidfd: {}", e.into_parts().1))?;
        tokio::spawn(async move {
            // Readable once the process has exited.
            let _ = watched.readable().await;
            let _ = tx.send(Some(Ended(None)));
        });
        let (notify, _) = UnixDatagram::pair().context("a notify socket pair")?;
        Ok(Generation {
            number,
            version: version.to_string(),
            pid,
            started: Instant::now(),
            exit,
            notify,
            gate: std::sync::Mutex::new(None),
            unit: std::sync::Mutex::new(Some(unit)),
            notify_path: PathBuf::new(),
            probe_port: None,
            _probe: None,
        })
    }

    /// How the process ended, once it is gone.
    pub fn exited(&self) -> Option<Ended> {
        *self.exit.borrow()
    }

    /// Wait until the process exits.
    pub async fn wait_exit(&self) -> Ended {
        let mut rx = self.exit.clone();
        loop {
            if let Some(s) = *rx.borrow_and_update() {
                return s;
            }
            if rx.changed().await.is_err() {
                return Ended(Some(ExitStatus::from_raw(255 << 8)));
            }
        }
    }

    /// Wait until ready; Ok(true) when the app sent `READY=1`. Fails when the app exits or the
    /// timeout passes first.
    pub async fn wait_ready(&self, check: &Check, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let probe = self.probe(check);
        tokio::pin!(probe);
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                status = self.wait_exit() => bail!("the app exited before it was ready ({})", describe(status)),
                _ = &mut deadline => bail!("the app was not ready within {}", crate::units::format_duration(timeout)),
                got = self.notify.recv(&mut buf) => {
                    let n = got.context("reading the notify socket")?;
                    if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l.trim() == "READY=1") {
                        return Ok(true);
                    }
                }
                r = &mut probe => {
                    r?;
                    return Ok(false);
                }
            }
        }
    }

    async fn probe(&self, check: &Check) -> anyhow::Result<()> {
        match check {
            Check::Notify => std::future::pending().await,
            Check::Alive(delay) => {
                tokio::time::sleep(*delay).await;
                Ok(())
            }
            Check::Health(path) => {
                let port = self.probe_port.ok_or_else(|| anyhow!("no health probe socket"))?;
                let url = format!("http://127.0.0.1:{port}/{}", path.trim_start_matches('/'));
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(Duration::from_secs(2))
                    .build()
                    .context("building the health client")?;
                loop {
                    match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() || r.status().is_redirection() => return Ok(()),
                        Ok(r) => tracing::debug!(status = %r.status(), %url, "Health check not ready"),
                        Err(e) => tracing::debug!(error = %e, %url, "Health check not ready"),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// SIGTERM the process group, wait up to `drain`, then SIGKILL whatever is left.
    pub async fn stop(&self, drain: Duration) -> Ended {
        let group = Pid::from_raw(self.pid);
        if self.exited().is_none() {
            let _ = killpg(group, Signal::SIGTERM);
        }
        let status = match tokio::time::timeout(drain, self.wait_exit()).await {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!(
                    pid = self.pid,
                    "App did not stop within the drain time; killing it"
                );
                let _ = killpg(group, Signal::SIGKILL);
                self.wait_exit().await
            }
        };
        // Children the app left in its group go too.
        let _ = killpg(group, Signal::SIGKILL);
        status
    }

    /// SIGKILL the process group at once (a generation that failed to get ready).
    pub async fn kill(&self) -> Ended {
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        self.wait_exit().await
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.notify_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.notify_path);
        }
    }
}

/// A pidfd for `pid` (Linux 5.3+): readable once the process has exited.
fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; the fd is owned here.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| std::io::Error::other("pidfd out of range"))?;
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A stream to journald's stdout socket, the way systemd connects a service's output: the header
/// gives the identifier, priority 6 (info), `<N>` level prefixes honoured, no forwarding.
fn journal_stream(ident: &str) -> std::io::Result<OwnedFd> {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect("/run/systemd/journal/stdout")?;
    write!(s, "{ident}\n\n6\n1\n0\n0\n0\n")?;
    s.shutdown(std::net::Shutdown::Read)?;
    Ok(OwnedFd::from(s))
}

/// `exit code 3` / `signal 9` / `exited (status unknown)`.
pub fn describe(ended: Ended) -> String {
    let Some(status) = ended.0 else {
        return "exited (status unknown: started by an earlier deployer)".into();
    };
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    }
}
