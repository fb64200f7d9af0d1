//! Start a binary with listening sockets passed the way systemd passes them: fds 3, 4, … with
//! `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` naming the process itself.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::proc::Daemon;

/// Start `bin args…` with `sockets` as its activation fds; output goes to `log`.
pub fn spawn_with_sockets(
    bin: &str,
    args: &[&str],
    env: &[(&str, &str)],
    sockets: &[&std::net::TcpListener],
    log: &Path,
) -> Daemon {
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let names = vec!["proxy"; fds.len()].join(":");
    // `sh` sets LISTEN_PID to its own pid, then execs the binary, which keeps that pid.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS={} LISTEN_FDNAMES={names} exec \"$0\" \"$@\"",
            fds.len()
        ))
        .arg(bin)
        .args(args);
    // SAFETY: `install` only calls fcntl and dup2 (async-signal-safe) and does not allocate.
    unsafe {
        cmd.pre_exec(move || dewy::supervise::sockets::install(&fds));
    }
    Daemon::spawn(cmd, env, log)
}
