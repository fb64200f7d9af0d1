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

/// Record the pids (each its own process group) of the generations running now: the serving one,
/// and while a new one gets ready, that one too. A killed deployer can leave both behind.
pub fn record(run_dir: &Path, pids: &[i32]) {
    let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
    if let Err(e) = std::fs::write(pid_file(run_dir), text) {
        tracing::warn!(error = %e, "Writing the app pid file failed");
    }
}

/// Forget the pid file (the app was stopped).
pub fn clear(run_dir: &Path) {
    let _ = std::fs::remove_file(pid_file(run_dir));
}

/// Each process the pid file names that is alive and has `root` as its working directory is an
/// app generation a previous deployer left running (the others are unrelated processes that
/// reused the pid): SIGTERM their groups, wait up to `drain`, then SIGKILL.
pub fn stop_leftover(run_dir: &Path, root: &Path, drain: Duration) {
    let text = std::fs::read_to_string(pid_file(run_dir)).unwrap_or_default();
    let root = std::fs::canonicalize(root).ok();
    let groups: Vec<Pid> = text
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
        .filter(|p| {
            let cwd = std::fs::read_link(format!("/proc/{p}/cwd")).ok();
            cwd.is_some_and(|c| root.as_ref() == Some(&c))
        })
        .map(Pid::from_raw)
        .collect();
    if groups.is_empty() {
        clear(run_dir);
        return;
    }
    let pids: Vec<i32> = groups.iter().map(|g| g.as_raw()).collect();
    tracing::warn!(
        pids = ?pids,
        "App processes started by a previous deployer are still running; stopping them"
    );
    let alive = |groups: &[Pid]| groups.iter().any(|g| kill(*g, None).is_ok());
    for g in &groups {
        let _ = killpg(*g, Signal::SIGTERM);
    }
    let start = Instant::now();
    while alive(&groups) && start.elapsed() < drain {
        std::thread::sleep(Duration::from_millis(20));
    }
    for g in &groups {
        let _ = killpg(*g, Signal::SIGKILL);
    }
    // The killed processes are not our children: wait until they are gone from /proc (reaped by
    // init).
    let start = Instant::now();
    while alive(&groups) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    clear(run_dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_that_is_not_an_app_of_this_root_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        // A process elsewhere (another root, or whatever reused the pid), leading its own group
        // as app generations do: never signalled.
        use std::os::unix::process::CommandExt;
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .current_dir("/")
            .process_group(0)
            .spawn()
            .unwrap();
        record(&run, &[stranger.id() as i32]);
        stop_leftover(&run, root.path(), Duration::from_secs(1));
        assert!(
            stranger.try_wait().unwrap().is_none(),
            "a foreign process was stopped"
        );
        assert!(!pid_file(&run).exists(), "the stale pid file stays");
        stranger.kill().unwrap();
        let _ = stranger.wait();
    }
}
