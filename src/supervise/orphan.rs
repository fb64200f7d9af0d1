//! The pid file of the running generation, and stopping an app a killed deployer left behind
//! (it still holds the ports, so they could not be bound again).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// `.dewy/run/app.pid`.
pub fn pid_file(run_dir: &Path) -> PathBuf {
    run_dir.join("app.pid")
}

/// Record the pid (and process group) of the generation now serving.
pub fn record(run_dir: &Path, pid: i32) {
    if let Err(e) = std::fs::write(pid_file(run_dir), format!("{pid}\n")) {
        tracing::warn!(error = %e, "Writing the app pid file failed");
    }
}

/// Forget the pid file (the app was stopped).
pub fn clear(run_dir: &Path) {
    let _ = std::fs::remove_file(pid_file(run_dir));
}

/// When the pid file names a live process whose working directory is `root`, that is an app a
/// previous deployer left running: SIGTERM its group, wait up to `drain`, then SIGKILL.
pub fn stop_leftover(run_dir: &Path, root: &Path, drain: Duration) {
    let Some(pid) = std::fs::read_to_string(pid_file(run_dir))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
    else {
        return;
    };
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let ours = cwd.is_some_and(|c| std::fs::canonicalize(root).is_ok_and(|r| r == c));
    if !ours {
        clear(run_dir);
        return;
    }
    tracing::warn!(
        pid,
        "An app started by a previous deployer is still running; stopping it"
    );
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    let start = Instant::now();
    while kill(group, None).is_ok() && start.elapsed() < drain {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(group, Signal::SIGKILL);
    // The killed process is not our child: wait until it is gone from /proc (reaped by init).
    let start = Instant::now();
    while kill(group, None).is_ok() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    clear(run_dir);
}
