//! Running the before/after deploy hooks: `sh -c <command>` in its own process group,
//! with captured output, a timeout that kills the whole group, and one log line.

use std::fmt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::logging::MSG_HOOK;

/// Most output kept per stream; beyond it only the tail is kept.
const OUTPUT_CAP: usize = 64 * 1024;
/// How long to wait for the output pipes to close once the shell has exited (a
/// background process of the hook may keep them open).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// When a hook runs relative to the `current` switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Before,
    After,
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::Before => "before",
            HookKind::After => "after",
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct HookSpec<'a> {
    pub kind: HookKind,
    pub command: &'a str,
    pub cwd: &'a Path,
    /// Added to dewy's own environment.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// How a hook went.
#[derive(Debug, Clone)]
pub struct HookOutcome {
    pub kind: HookKind,
    pub command: String,
    pub success: bool,
    pub exit_code: Option<i32>,
    /// Trimmed; at most the last 64 KiB, prefixed by a note when truncated.
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
    pub timed_out: bool,
    pub error: Option<String>,
}

/// Kills the hook's process group if the run is abandoned (timeout or a dropped future).
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Output captured so far from one stream: the kept tail and the total size.
type Captured = Arc<Mutex<(Vec<u8>, usize)>>;

/// Reads a stream to its end in the background, keeping the last [`OUTPUT_CAP`] bytes.
fn capture<R: AsyncRead + Unpin + Send + 'static>(stream: Option<R>) -> (JoinHandle<()>, Captured) {
    let shared = Captured::default();
    let sink = shared.clone();
    let task = tokio::spawn(async move {
        let Some(mut stream) = stream else {
            return;
        };
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let Ok(mut guard) = sink.lock() else {
                break;
            };
            let (kept, total) = &mut *guard;
            *total += n;
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * OUTPUT_CAP {
                kept.drain(..kept.len() - OUTPUT_CAP);
            }
        }
    });
    (task, shared)
}

/// Waits until `deadline` for the stream to close, then renders what was captured.
async fn collect((task, shared): (JoinHandle<()>, Captured), deadline: Instant) -> String {
    let wait = deadline.saturating_duration_since(Instant::now());
    let abort = task.abort_handle();
    if tokio::time::timeout(wait, task).await.is_err() {
        abort.abort();
    }
    let Ok(guard) = shared.lock() else {
        return String::new();
    };
    let (kept, total) = &*guard;
    let tail = &kept[kept.len().saturating_sub(OUTPUT_CAP)..];
    let text = String::from_utf8_lossy(tail);
    if *total > tail.len() {
        format!("[{} bytes truncated]\n{}", total - tail.len(), text.trim())
    } else {
        text.trim().to_owned()
    }
}

/// Runs one hook and logs its outcome; never panics and never returns an error: a spawn
/// failure or timeout is reported in [`HookOutcome`].
pub async fn run_hook(spec: &HookSpec<'_>) -> HookOutcome {
    let start = Instant::now();
    let mut outcome = HookOutcome {
        kind: spec.kind,
        command: spec.command.to_owned(),
        success: false,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        duration: Duration::ZERO,
        timed_out: false,
        error: None,
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(spec.command)
        .current_dir(spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    match cmd.spawn() {
        Err(e) => {
            outcome.error = Some(format!("spawn sh -c in {}: {e}", spec.cwd.display()));
        }
        Ok(mut child) => {
            let mut guard = GroupGuard(
                child
                    .id()
                    .and_then(|id| i32::try_from(id).ok())
                    .map(Pid::from_raw),
            );
            let out = capture(child.stdout.take());
            let err = capture(child.stderr.take());
            let status = match tokio::time::timeout(spec.timeout, child.wait()).await {
                Ok(status) => status.map_err(|e| format!("wait for hook: {e}")),
                Err(_) => {
                    guard.kill();
                    outcome.timed_out = true;
                    let _ = child.wait().await;
                    Err(format!(
                        "timed out after {:?}; process group killed",
                        spec.timeout
                    ))
                }
            };
            // After a normal exit the group is left alone: a hook may start a daemon.
            guard.0 = None;
            let deadline = Instant::now() + DRAIN_GRACE;
            outcome.stdout = collect(out, deadline).await;
            outcome.stderr = collect(err, deadline).await;
            match status {
                Ok(status) => record_status(&mut outcome, status),
                Err(e) => outcome.error = Some(e),
            }
        }
    }
    outcome.duration = start.elapsed();
    log(&outcome);
    outcome
}

fn record_status(outcome: &mut HookOutcome, status: ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    outcome.exit_code = status.code();
    outcome.success = status.success();
    if let Some(sig) = status.signal() {
        outcome.error = Some(format!("killed by signal {sig}"));
    } else if !status.success() {
        outcome.error = Some(format!("exited with status {}", status.code().unwrap_or(-1)));
    }
}

fn log(o: &HookOutcome) {
    let duration_ms = u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX);
    if o.success {
        tracing::info!(
            message_id = MSG_HOOK,
            hook = %o.kind,
            command = %o.command,
            exit_code = o.exit_code,
            duration_ms,
            stdout = %o.stdout,
            stderr = %o.stderr,
            "Execute hook"
        );
    } else {
        tracing::error!(
            message_id = MSG_HOOK,
            hook = %o.kind,
            command = %o.command,
            exit_code = o.exit_code,
            duration_ms,
            stdout = %o.stdout,
            stderr = %o.stderr,
            error = o.error.as_deref().unwrap_or(""),
            timed_out = o.timed_out,
            "Execute hook failed"
        );
    }
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
