//! `dewy assets` in the foreground against a `file://` registry: deploys, the atomic `current`
//! switch, hooks, refused archives, the grace period, config errors and a SIGKILL mid-extraction.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::proc::{dewy, Daemon};
use support::{current_file, current_target, tar_gz, wait_for, Workspace};

const LONG: Duration = Duration::from_secs(60);

fn site(version: &str) -> Vec<u8> {
    let index = format!("<h1>{version}</h1>\n");
    tar_gz(&[
        ("VERSION", 0o644, version.as_bytes()),
        ("index.html", 0o644, index.as_bytes()),
        ("bin/run", 0o755, b"#!/bin/sh\necho hi\n"),
    ])
}

fn start(s: &Workspace, extra: &[&str]) -> Daemon {
    let url = s.registry_url();
    let mut args = vec![
        "assets",
        "--registry",
        &url,
        "--interval",
        "1",
        "--bus",
        "none",
        "--log-level",
        "debug",
    ];
    args.extend_from_slice(extra);
    Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &args,
        &[],
        &s.root,
        &s.root.join("../dewy.log"),
    )
}

#[test]
fn deploys_new_versions_with_hooks_and_current_never_dangles() {
    let s = Workspace::new();
    s.publish("v1.0.0", &site("v1.0.0"));
    let hook = format!(
        "env | grep ^DEWY_ | sort > {}/hook-$DEWY_VERSION.env",
        s.root.display()
    );
    let mut d = start(&s, &["--after-deploy-hook", &hook]);
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    let mode = std::fs::metadata(s.root.join("current/bin/run")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o755
    );

    // A reader that checks `current` resolves, all the time, while v1.1.0 is switched in.
    let stop = Arc::new(AtomicBool::new(false));
    let misses = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, misses, reads, root) = (stop.clone(), misses.clone(), reads.clone(), s.root.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if std::fs::read_to_string(root.join("current/VERSION")).is_err() {
                    misses.fetch_add(1, Ordering::Relaxed);
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    s.publish("v1.1.0", &site("v1.1.0"));
    wait_for("v1.1.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.1.0")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(reads.load(Ordering::Relaxed) > 100, "the reader barely ran");
    assert_eq!(
        misses.load(Ordering::Relaxed),
        0,
        "current was missing or dangling during the switch"
    );

    let env = wait_for("after hook of v1.1.0", LONG, || {
        std::fs::read_to_string(s.root.join("hook-v1.1.0.env")).ok()
    });
    assert!(env.contains("DEWY_VERSION=v1.1.0"), "{env}");
    assert!(env.contains("DEWY_PREVIOUS_VERSION=v1.0.0"), "{env}");
    assert!(env.contains("DEWY_APP=registry"), "{env}");
    let target = current_target(&s.root).unwrap();
    assert!(
        env.contains(&format!(
            "DEWY_RELEASE_DIR={}",
            s.root.join("releases").join(&target).display()
        )),
        "{env}"
    );
    // Two releases kept, named by UTC timestamp.
    let names: Vec<String> = std::fs::read_dir(s.root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.len() >= 16 && n.as_bytes()[8] == b'T' && n.contains('Z')),
        "{names:?}"
    );

    // Later polls skip the live version.
    wait_for("a skipped poll", LONG, || {
        d.log().contains("Deploy skipped").then_some(())
    });
    let log = d.log();
    for msg in [
        "Dewy started",
        "Cached artifact",
        "Download notification",
        "Extract archive",
        "Create symlink",
        "Execute hook",
    ] {
        assert!(log.contains(msg), "missing {msg:?} in log:\n{log}");
    }
    let status = d.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
}

#[test]
fn broken_and_malicious_archives_are_refused_and_not_retried() {
    let s = Workspace::new();
    s.publish("v1.0.0", &site("v1.0.0"));
    let d = start(&s, &[]);
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    let good = current_target(&s.root).unwrap();

    // Path traversal.
    let mut evil = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    let data = b"owned";
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    evil.append(&h, &data[..]).unwrap();
    let evil = evil.into_inner().unwrap().finish().unwrap();
    s.publish("v1.1.0", &evil);
    wait_for("v1.1.0 refused", LONG, || {
        d.log().contains("Deploy failed").then_some(())
    });
    assert!(!s.root.join("escape").exists() && !s.root.join("releases/escape").exists());
    assert_eq!(current_target(&s.root).as_deref(), Some(good.as_str()));
    // Not retried at every poll.
    wait_for("v1.1.0 skipped as bad", LONG, || {
        d.log().contains("failed before").then_some(())
    });
    assert_eq!(d.log().matches("Deploy failed").count(), 1, "{}", d.log());

    // Garbage that claims to be a tar.gz.
    s.publish("v1.2.0", b"this is not gzip at all");
    wait_for("v1.2.0 refused", LONG, || {
        (d.log().matches("Deploy failed").count() == 2).then_some(())
    });

    // A checksum that does not match.
    let tmp = s.registry.join(".tmp-v1.3.0");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("site.tar.gz"), site("v1.3.0")).unwrap();
    std::fs::write(
        tmp.join("checksums.txt"),
        format!("{}  site.tar.gz\n", "0".repeat(64)),
    )
    .unwrap();
    std::fs::rename(&tmp, s.registry.join("v1.3.0")).unwrap();
    wait_for("v1.3.0 refused", LONG, || {
        (d.log().matches("Deploy failed").count() == 3).then_some(())
    });
    assert!(d.log().contains("checksum"), "{}", d.log());
    assert_eq!(current_target(&s.root).as_deref(), Some(good.as_str()));
    assert_eq!(current_file(&s.root, "VERSION").as_deref(), Some("v1.0.0"));
    // Nothing half-extracted left behind.
    let leftovers: Vec<_> = std::fs::read_dir(s.root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn grace_period_skips_quietly_then_fails_loudly() {
    let s = Workspace::new();
    s.publish("v1.0.0", &site("v1.0.0"));
    let d = start(&s, &[]);
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    // v2.0.0 is created, its artifact not uploaded yet.
    std::fs::create_dir_all(s.registry.join("v2.0.0")).unwrap();
    wait_for("grace-period skip", LONG, || {
        d.log()
            .contains("Artifact not found within grace period")
            .then_some(())
    });
    assert!(!d.log().contains("level=ERROR"), "{}", d.log());
    drop(d);

    // The same release published two hours ago is an error.
    let two_hours_ago = nix::sys::time::TimeVal::new(chrono::Utc::now().timestamp() - 7200, 0);
    nix::sys::stat::utimes(&s.registry.join("v2.0.0"), &two_hours_ago, &two_hours_ago).unwrap();
    let d = start(&s, &[]);
    wait_for("artifact-not-found error", LONG, || {
        d.log()
            .contains("level=ERROR msg=\"Artifact not found\"")
            .then_some(())
    });
}

#[test]
fn sigkill_during_extraction_leaves_a_consistent_state() {
    let s = Workspace::new();
    s.publish("v1.0.0", &site("v1.0.0"));
    let mut d = start(&s, &[]);
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    // v2: 1.5 GiB of zeros compresses to a few MiB but takes a while to write out.
    let tmp = s.registry.join(".tmp-v2.0.0");
    std::fs::create_dir_all(&tmp).unwrap();
    {
        let f = std::fs::File::create(tmp.join("site.tar.gz")).unwrap();
        let enc = flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::fast());
        let mut b = tar::Builder::new(enc);
        let mut h = tar::Header::new_gnu();
        h.set_size(1536 << 20);
        h.set_mode(0o644);
        b.append_data(&mut h, "big.bin", std::io::repeat(0).take_exact(1536 << 20))
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(7);
        h.set_mode(0o644);
        b.append_data(&mut h, "VERSION", &b"v2.0.0\n"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    std::fs::rename(&tmp, s.registry.join("v2.0.0")).unwrap();
    let releases = s.root.join("releases");
    wait_for("extraction of v2.0.0 started", LONG, || {
        std::fs::read_dir(&releases)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
            .then_some(())
    });
    d.kill9();
    assert_eq!(current_file(&s.root, "VERSION").as_deref(), Some("v1.0.0"));

    // Restart: the staging dir is cleaned, v1 stays live until v2 is deployed again; the
    // operators are told of the interrupted deploy.
    let rx = support::receiver::Receiver::start();
    let hook = format!("webhook+{}/hook", rx.base());
    let d = start(&s, &["--notifier", &hook]);
    wait_for("v2.0.0 live after restart", Duration::from_secs(120), || {
        current_file(&s.root, "VERSION")
            .filter(|v| v.trim() == "v2.0.0")
            .map(|_| ())
    });
    let log = d.log();
    assert!(log.contains("Removed staging directories"), "{log}");
    assert!(log.contains("Interrupted deploy undone"), "{log}");
    let told = wait_for("the interrupted deploy notification", LONG, || {
        rx.to("/hook")
            .into_iter()
            .map(|r| r.json())
            .find(|j| j["event"] == "failed")
    });
    let text = told["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("Deploy of v2.0.0 failed: interrupted by a stop of the deployer"),
        "{told}"
    );
    assert!(text.contains("v1.0.0 stays live"), "{told}");
    let staging_left = std::fs::read_dir(&releases)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
        .count();
    assert_eq!(staging_left, 0);
}

trait TakeExact: std::io::Read + Sized {
    fn take_exact(self, n: u64) -> std::io::Take<Self> {
        self.take(n)
    }
}
impl<R: std::io::Read> TakeExact for R {}

/// Without `--offline`, `config check` asks the source for its newest release.
#[test]
fn config_check_probes_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("site.toml");
    let releases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/releases");
    let body = format!(
        "registry = \"file://{}?artifact=site.tar.gz\"\n",
        releases.display()
    );
    std::fs::write(&cfg, body).unwrap();
    let (code, out, err) = dewy(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("# source file://"), "{out}");
    assert!(
        out.contains("reachable; newest release v1.1.0 (site.tar.gz)"),
        "{out}"
    );
    assert!(out.parse::<toml::Table>().is_ok(), "output stays TOML: {out}");

    let missing = tmp.path().join("nowhere");
    std::fs::write(&cfg, format!("registry = \"file://{}\"\n", missing.display())).unwrap();
    let (code, out, err) = dewy(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("cannot be used"), "{err}");
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn the_help_lists_go_dewys_telemetry_flags() {
    for mode in ["assets", "server", "container"] {
        let (code, out, err) = dewy(&[mode, "--help"], &[]);
        assert_eq!(code, 0, "{err}");
        for flag in ["--telemetry", "--otlp-endpoint <HOST:PORT>", "--otlp-insecure"] {
            assert!(out.contains(flag), "{mode} --help lacks {flag}:\n{out}");
        }
    }
}

#[test]
fn config_errors_exit_78_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("web.toml");
    std::fs::write(
        &cfg,
        "registry = \"file:///srv/x\"\n\nbefore-deploy-hok = \"true\"\n",
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let (code, _, err) = dewy(&["config", "check", cfg_s], &[]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains(&format!("{cfg_s}:3:1")), "{err}");
    assert!(err.contains("before-deploy-hok"), "{err}");

    std::fs::write(&cfg, "registry = \"file:///srv/x\"\ninterval = \"30s\"\n").unwrap();
    std::fs::create_dir_all(tmp.path().join("web.toml.d")).unwrap();
    std::fs::write(tmp.path().join("web.toml.d/10-slot.toml"), "slot = \"blue\"\n").unwrap();
    let (code, out, err) = dewy(&["config", "check", "--offline", cfg_s], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("interval = \"30s\""), "{out}");
    assert!(out.contains("slot = \"blue\""), "{out}");
    assert!(!out.contains("# source"), "{out}");

    std::fs::write(&cfg, "registry = \"ghr://o/r?pre-relase=true\"\n").unwrap();
    let (code, _, err) = dewy(&["config", "check", cfg_s], &[]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("pre-relase"), "{err}");

    let (code, _, err) = dewy(
        &[
            "assets",
            "--registry",
            "file:///x",
            "--otlp-endpoint",
            "http://c:4317",
        ],
        &[],
    );
    assert_eq!(code, 78);
    assert!(
        err.contains("otlp-endpoint \"http://c:4317\": give host:port without a scheme"),
        "{err}"
    );
    let (code, _, err) = dewy(&["assets"], &[]);
    assert_eq!(code, 78);
    assert!(err.contains("--registry is not set"), "{err}");
    let (code, _, err) = dewy(&["server", "--registry", "file:///x"], &[]);
    assert_eq!(code, 78);
    assert!(err.contains("server mode needs the app's command"), "{err}");
    let (code, _, err) = dewy(
        &["assets", "--registry", "file:///x", "--notifier", "teams://c"],
        &[],
    );
    assert_eq!(code, 78);
    assert!(err.contains("notifier teams://c: unknown scheme"), "{err}");
    let (code, _, err) = dewy(
        &["assets", "--registry", "file:///x", "--notifier", "slack://c"],
        &[("SLACK_TOKEN", ""), ("CREDENTIALS_DIRECTORY", "/nonexistent")],
    );
    assert_eq!(code, 78);
    assert!(err.contains("notifier slack://c: no bot token"), "{err}");
}

#[test]
fn before_hook_failure_continues_or_aborts_as_configured_and_json_logs() {
    let s = Workspace::new();
    s.publish("v1.0.0", &site("v1.0.0"));
    let cfg = s.root.join("../web.toml");
    let write_cfg = |policy: &str| {
        std::fs::write(
            &cfg,
            format!(
                "registry = \"file://{}?artifact=site.tar.gz\"\ninterval = 1\nbefore-deploy-hook = \"echo migrating $DEWY_VERSION; test -f VERSION && exit 3\"\nbefore-hook-failure = \"{policy}\"\nlog-format = \"json\"\n",
                s.registry.display()
            ),
        )
        .unwrap();
    };
    write_cfg("continue");
    let cfg_s = cfg.to_str().unwrap().to_string();
    let run = |log: &str| {
        Daemon::start(
            env!("CARGO_BIN_EXE_dewy"),
            &["assets", "--config", &cfg_s, "--bus", "none"],
            &[],
            &s.root,
            &s.root.join(log),
        )
    };
    // continue: the failed hook (it ran inside the new release: VERSION exists) is recorded, the deploy goes on.
    let d = run("../continue.log");
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    let log = d.log();
    let lines: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty(), "{log}");
    assert!(
        lines
            .iter()
            .all(|l| l["time"].is_string() && l["level"].is_string() && l["msg"].is_string()),
        "{log}"
    );
    let hook = lines
        .iter()
        .find(|l| l["msg"] == "Execute hook failed")
        .expect("hook failure logged");
    assert_eq!(hook["exit_code"], 3, "{hook}");
    assert!(
        hook["stdout"].as_str().unwrap().contains("migrating v1.0.0"),
        "{hook}"
    );
    assert!(
        lines.iter().any(|l| l["msg"] == "Before deploy hook failure"),
        "{log}"
    );
    drop(d);

    // abort: the deploy stops, the previous release keeps serving.
    write_cfg("abort");
    s.publish("v1.1.0", &site("v1.1.0"));
    let d = run("../abort.log");
    wait_for("aborted deploy", LONG, || {
        d.log().contains("Deploy failed").then_some(())
    });
    assert!(d.log().contains("before-deploy hook failed"), "{}", d.log());
    assert_eq!(current_file(&s.root, "VERSION").as_deref(), Some("v1.0.0"));
    // Not marked bad: the next check tries again.
    wait_for("retry at the next check", LONG, || {
        (d.log().matches("Deploy failed").count() >= 2).then_some(())
    });
    let releases = std::fs::read_dir(s.root.join("releases")).unwrap().count();
    assert_eq!(releases, 1, "the aborted release directory is removed");
}
