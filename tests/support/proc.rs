//! Starting dewy's binaries for a test, with their output kept in a log file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A dewy process under test; SIGKILLed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Start `bin` (e.g. `env!("CARGO_BIN_EXE_dewy-deployer")`) with `args` and extra env.
    pub fn start(bin: &str, args: &[&str], env: &[(&str, &str)], cwd: &Path, log: &Path) -> Daemon {
        let mut cmd = Command::new(bin);
        cmd.args(args).current_dir(cwd);
        Daemon::spawn(cmd, env, log)
    }

    /// Spawn `cmd` as a daemon under test: no systemd environment leaking in from the caller,
    /// dewy's debug logs, `env` on top, stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, env: &[(&str, &str)], log: &Path) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .env("DEWY_LOG", "dewy=debug,info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()));
        Daemon {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM and wait for the exit status (panics after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if start.elapsed() > timeout {
                self.kill9();
                panic!(
                    "process did not exit within {timeout:?} after SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running() {
            self.kill9();
        }
    }
}

/// Run `dewy` with arguments and return (exit code, stdout, stderr).
pub fn dewy(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dewy"));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running dewy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dewy-proxy APP` as a daemon on a private bus, serving `ports` (container-mode `port`
/// entries) at warn level, with its config, state and log under `dir`; both stop on drop.
pub fn proxy_daemon(app: &str, ports: &[String], dir: &Path) -> (super::dbus::PrivateBus, Daemon) {
    let bus = super::dbus::PrivateBus::start();
    let config = dir.join(format!("{app}.toml"));
    let list: Vec<String> = ports.iter().map(|p| format!("\"{p}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "mode = \"container\"\nlog-level = \"warn\"\nport = [{}]\n",
            list.join(", ")
        ),
    )
    .expect("config");
    let state = dir.join("state");
    let daemon = Daemon::start(
        env!("CARGO_BIN_EXE_dewy-proxy"),
        &[
            app,
            "--config",
            config.to_str().expect("utf-8"),
            "--bus",
            &bus.address,
            "-l",
            "warn",
        ],
        &[
            ("STATE_DIRECTORY", state.to_str().expect("utf-8")),
            ("DEWY_LOG", "warn"),
        ],
        dir,
        &dir.join("proxy.log"),
    );
    (bus, daemon)
}
