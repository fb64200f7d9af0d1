//! Crash consistency: `dewy server` is SIGKILLed at each step of a deploy (download, verify,
//! extract, hooks, switch, restart…; `dewy::fault_inject::STEPS`), then the invariants are
//! checked: `current` points at a complete release, state.json agrees with it, nothing is marked
//! bad, the app kept serving, and the next start converges on the new release with exactly one
//! app process and nothing half-done left on disk.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::server::{served, setup, start_env, state, Setup, APP, LONG};
use support::{tar_gz, wait_for};

/// Size of the incompressible file in each release: the download takes several chunks.
const BLOB: usize = 1 << 20;

fn blob(version: &str) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ version.len() as u64;
    (0..BLOB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn publish(registry: &Path, version: &str) {
    let tmp = registry.join(format!(".tmp-{version}"));
    std::fs::create_dir_all(&tmp).unwrap();
    let archive = tar_gz(&[
        ("app", 0o755, APP.as_bytes()),
        ("VERSION", 0o644, version.as_bytes()),
        ("MODE", 0o644, b"plain"),
        ("blob", 0o644, &blob(version)),
    ]);
    std::fs::write(tmp.join("app.tar.gz"), archive).unwrap();
    std::fs::rename(&tmp, registry.join(version)).unwrap();
}

/// Processes whose working directory is `root`: the app generations (hooks run in a release) and
/// the deployer itself.
fn apps_in(root: &Path) -> Vec<i32> {
    let Ok(root) = std::fs::canonicalize(root) else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == root))
        .collect()
}

/// Kills whatever app processes are left under the root when a case ends, passed or not.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in apps_in(&self.0) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// `current` points at a complete release: the version it holds.
fn complete_current(s: &Setup) -> (String, String) {
    let target = std::fs::read_link(s.root.join("current")).expect("current is a symlink");
    let dir = s.root.join(&target);
    let version = std::fs::read_to_string(dir.join("VERSION")).expect("VERSION in current");
    assert_eq!(
        std::fs::read(dir.join("blob")).expect("blob in current"),
        blob(&version),
        "current ({}) holds a partial release",
        target.display()
    );
    assert_eq!(
        std::fs::read(dir.join("app")).expect("app in current"),
        APP.as_bytes()
    );
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    (version, name)
}

/// Files and directories a finished deploy must not leave: staging dirs, partial downloads.
fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with(".staging-") || name.ends_with(".part") {
                out.push(path.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) && name != "current" {
                dirs.push(path);
            }
        }
    }
    out
}

fn args(s: &Setup) -> Vec<String> {
    let hooks = s.root.join("../hooks.log");
    vec![
        "--alive-delay".into(),
        "300ms".into(),
        "--drain-time".into(),
        "2".into(),
        "--before-deploy-hook".into(),
        format!("sleep 0.6; echo before $DEWY_VERSION >> {}", hooks.display()),
        "--after-deploy-hook".into(),
        format!("sleep 0.6; echo after $DEWY_VERSION >> {}", hooks.display()),
    ]
}

/// One case: v1.0.0 serves, v2.0.0 is published, the deployer dies at `step` of its deploy.
fn kill_at(step: &str) {
    let s = setup();
    let _reaper = Reaper(s.root.clone());
    let args = args(&s);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    publish(&s.registry, "v1.0.0");
    let kill_at = format!("{step}@v2.0.0");
    let env = [
        ("DEWY_TEST_KILL_AT", kill_at.as_str()),
        ("DEWY_TEST_APP_STAYS", "1"),
    ];
    let mut first = start_env(&s, &args, "./current/app", &env);
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    publish(&s.registry, "v2.0.0");
    let status = wait_for(&format!("the deployer killed at {step}"), LONG, || {
        first.child.try_wait().ok().flatten()
    });
    let log = first.log();
    assert_eq!(status.signal(), Some(9), "{step}: not killed: {status:?}\n{log}");
    assert!(
        log.contains(&format!("fault injection: SIGKILL at {step} of v2.0.0")),
        "{log}"
    );

    // Right after the kill: a complete release is current, the state agrees, nothing is bad, and
    // the app still answers (its process outlives the deployer).
    let (version, name) = complete_current(&s);
    let st = state(&s);
    let live = &st["live"];
    let pending = &st["pending"];
    assert!(
        live["release"] == name.as_str() || pending["release"] == name.as_str(),
        "{step}: current is {name} ({version}) but state.json says {st}"
    );
    if live["release"] == name.as_str() {
        assert_eq!(live["version"], version.as_str(), "{step}: {st}");
    } else {
        assert_eq!(pending["version"], version.as_str(), "{step}: {st}");
    }
    assert_eq!(st["bad"], serde_json::json!({}), "{step}: {st}");
    let answer = support::server::get(s.port, "/").unwrap_or_default();
    assert!(
        answer == "v1.0.0" || answer == "v2.0.0",
        "{step}: nothing serves after the kill: {answer:?}"
    );

    // The next start converges: v2.0.0 live, served by one app process, nothing left over.
    let mut second = start_env(&s, &args, "./current/app", &[("DEWY_TEST_APP_STAYS", "1")]);
    wait_for(&format!("v2.0.0 live after a kill at {step}"), LONG, || {
        let st = state(&s);
        (st["live"]["version"] == "v2.0.0"
            && st["pending"].is_null()
            && served(s.port, "v2.0.0").is_some()
            && (second.log().contains("Server started for v2.0.0")
                || second.log().contains("Server restarted for v2.0.0")))
        .then_some(())
    });
    second.running().then_some(()).expect("the deployer runs");
    let (version, name) = complete_current(&s);
    assert_eq!(version, "v2.0.0", "{step}");
    let st = state(&s);
    assert_eq!(st["live"]["release"], name.as_str(), "{step}: {st}");
    assert_eq!(st["bad"], serde_json::json!({}), "{step}: {st}");
    assert_eq!(leftovers(&s.root), Vec::<PathBuf>::new(), "{step}");
    // v1.0.0's release and v2.0.0's: none other, not even one the killed deploy had extracted.
    let releases: Vec<String> = std::fs::read_dir(s.root.join("releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(releases.len(), 2, "{step}: {releases:?}");
    // Let the deploy finish its after-deploy hook and stop the old generation.
    std::thread::sleep(Duration::from_secs(3));
    let apps: Vec<i32> = apps_in(&s.root)
        .into_iter()
        .filter(|p| *p != second.pid())
        .collect();
    assert_eq!(apps.len(), 1, "{step}: app processes {apps:?}\n{}", second.log());
    for _ in 0..20 {
        assert_eq!(served(s.port, "v2.0.0"), Some(()), "{step}");
    }
    second.terminate(Duration::from_secs(30));
    assert_eq!(
        apps_in(&s.root),
        Vec::<i32>::new(),
        "{step}: an app outlived the deployer"
    );
}

#[test]
fn sigkill_at_every_deploy_step_keeps_a_complete_release_live_and_converges() {
    let steps = dewy::fault_inject::STEPS;
    for step in steps {
        eprintln!("killing the deployer at {step}");
        kill_at(step);
    }
    eprintln!("{} injection points covered", steps.len());
}
