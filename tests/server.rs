//! `dewy server` with real processes and sockets: the app gets its sockets by socket activation,
//! deploys overlap generations with no failed request, bad releases leave the old generation
//! serving, a crashed app is restarted, and stopping dewy leaves no app process behind.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::proc::Daemon;
use support::server::{alive, app_pid, get, publish, served, setup, start, start_with, try_app_pid, LONG};
use support::{current_file, tar_gz, wait_for};

#[test]
fn deploy_overlaps_generations_with_no_failed_request_and_stop_leaves_nothing() {
    let s = setup();
    publish(&s.registry, "v1.0.0", "notify");
    let mut d = start(&s, &["--readiness", "notify", "--drain-time", "5"]);
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    let info: serde_json::Value = serde_json::from_str(&get(s.port, "/info").unwrap()).unwrap();
    assert_eq!(info["listen_pid_ok"], true, "{info}");
    assert_eq!(info["listen_fds"], "1", "{info}");
    assert_eq!(
        info["server_starter_port"],
        format!("127.0.0.1:{}=3", s.port),
        "{info}"
    );
    let v1_pid = app_pid(s.port);

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let requests = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, failures, requests, seen, port) = (
                stop.clone(),
                failures.clone(),
                requests.clone(),
                seen.clone(),
                s.port,
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match get(port, "/") {
                        Ok(v) => {
                            let mut seen = seen.lock().unwrap();
                            if seen.last() != Some(&v) {
                                seen.push(v);
                            }
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    publish(&s.registry, "v2.0.0", "notify");
    wait_for("v2.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v2.0.0")).then_some(())
    });
    wait_for("the v1 process to stop", LONG, || (!alive(v1_pid)).then_some(()));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        requests.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    assert!(requests.load(Ordering::Relaxed) > 50, "the clients barely ran");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first().map(String::as_str), Some("v1.0.0"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("v2.0.0"), "{seen:?}");
    let log = d.log();
    assert!(log.contains("Server restarted for v2.0.0"), "{log}");

    let v2_pid = app_pid(s.port);
    let status = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert!(!alive(v2_pid), "the app outlived dewy");
    assert!(
        get(s.port, "/").is_err(),
        "the port still answers after dewy stopped"
    );
}

#[test]
fn bad_releases_leave_the_old_generation_serving_and_are_not_retried() {
    let s = setup();
    publish(&s.registry, "v1.0.0", "notify");
    let mut d = start(&s, &["--readiness", "notify", "--health-timeout", "2"]);
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    let v1_pid = app_pid(s.port);
    let v1_dir = std::fs::read_link(s.root.join("current")).unwrap();

    // Exits at once.
    publish(&s.registry, "v1.1.0", "exit");
    wait_for("v1.1.0 failed", LONG, || {
        d.log().contains("exited before it was ready").then_some(())
    });
    // Never ready.
    std::thread::sleep(Duration::from_millis(300));
    publish(&s.registry, "v1.2.0", "never");
    wait_for("v1.2.0 failed", LONG, || {
        d.log().contains("was not ready within 2s").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(std::fs::read_link(s.root.join("current")).unwrap(), v1_dir);
    assert_eq!(get(s.port, "/").unwrap(), "v1.0.0");
    assert_eq!(app_pid(s.port), v1_pid, "the old generation was replaced");
    let state = support::server::state(&s);
    assert!(state["bad"]["v1.2.0"].is_object(), "{state}");
    assert_eq!(state["live"]["version"], "v1.0.0", "{state}");
    let log = d.log();
    let attempts = |v: &str| {
        log.lines()
            .filter(|l| l.contains("Server process started") && l.contains(&format!("version={v} ")))
            .count()
    };
    assert_eq!(attempts("v1.1.0"), 1, "a bad version was retried:\n{log}");
    assert_eq!(attempts("v1.2.0"), 1, "a bad version was retried:\n{log}");
    d.terminate(Duration::from_secs(30));
    assert!(!alive(v1_pid));
}

#[test]
fn alive_readiness_and_a_crashed_app_is_restarted() {
    let s = setup();
    publish(&s.registry, "v1.0.0", "plain");
    let rx = support::receiver::Receiver::start();
    let hook = format!("webhook+{}/hook", rx.base());
    let mut d = start(
        &s,
        &["--alive-delay", "1s", "--drain-time", "2", "--notifier", &hook],
    );
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    wait_for("alive readiness", LONG, || {
        d.log().contains("Server started for v1.0.0").then_some(())
    });
    assert!(d.log().contains("readiness=Alive(1s)"), "{}", d.log());
    let pid = app_pid(s.port);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let new_pid = wait_for("a new app process", LONG, || {
        try_app_pid(s.port).filter(|p| *p != pid)
    });
    assert!(d.log().contains("exited unexpectedly"), "{}", d.log());
    // The operators hear of the crash (with what dewy does next), then of the restart.
    let crash = wait_for("the crash notification", LONG, || {
        rx.to("/hook")
            .into_iter()
            .map(|r| r.json())
            .find(|j| j["event"] == "failed")
    });
    let text = crash["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("Server v1.0.0 stopped: the app exited unexpectedly"),
        "{crash}"
    );
    assert!(text.contains("dewy restarts it in"), "{crash}");
    wait_for("the restart notification", LONG, || {
        rx.to("/hook").into_iter().map(|r| r.json()).find(|j| {
            j["event"] == "server-restarted"
                && j["message"]
                    .as_str()
                    .is_some_and(|t| t.contains("after it exited"))
        })
    });
    let sock = s.root.join(".dewy/metrics.sock");
    wait_for("the crash restart counted", LONG, || {
        support::scrape_metrics(&sock).filter(|t| t.contains("dewy_app_restarts_total{reason=\"crash\"} 1\n"))
    });
    d.terminate(Duration::from_secs(30));
    assert!(!alive(new_pid));
}

#[test]
fn health_readiness_probes_the_new_generation_on_its_private_socket() {
    let s = setup();
    publish(&s.registry, "v1.0.0", "health");
    let mut d = start(
        &s,
        &[
            "--health-path",
            "/info",
            "--health-timeout",
            "3",
            "--drain-time",
            "2",
        ],
    );
    wait_for("health readiness", LONG, || {
        d.log().contains("Server started for v1.0.0").then_some(())
    });
    assert!(d.log().contains("readiness=\"Health("), "{}", d.log());
    let info: serde_json::Value = serde_json::from_str(&get(s.port, "/info").unwrap()).unwrap();
    assert_eq!(info["listen_fds"], "2", "{info}");
    // An app that serves only its public socket never answers the probe: not ready, rolled back.
    publish(&s.registry, "v2.0.0", "plain");
    wait_for("v2.0.0 refused", LONG, || {
        d.log().contains("starting v2.0.0").then_some(())
    });
    assert_eq!(get(s.port, "/").unwrap(), "v1.0.0");
    d.terminate(Duration::from_secs(30));
}

#[test]
fn sockets_from_systemd_socket_activation_are_passed_on() {
    if std::process::Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("systemd-socket-activate not installed; skipping");
        return;
    }
    let s = setup();
    publish(&s.registry, "v1.0.0", "notify");
    let url = format!("file://{}?artifact=app.tar.gz", s.registry.display());
    let listen = format!("127.0.0.1:{}", s.port);
    let dewy = env!("CARGO_BIN_EXE_dewy");
    let mut d = Daemon::start(
        "systemd-socket-activate",
        &[
            "-l",
            &listen,
            "--fdname=web",
            "-E",
            "DEWY_LOG",
            dewy,
            "server",
            "--registry",
            &url,
            "--interval",
            "1",
            "--bus",
            "none",
            "--",
            "./current/app",
        ],
        &[],
        &s.root,
        &s.root.join("../dewy.log"),
    );
    // systemd-socket-activate execs dewy only at the first connection; this GET triggers it.
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    let info: serde_json::Value = serde_json::from_str(&get(s.port, "/info").unwrap()).unwrap();
    assert_eq!(info["listen_pid_ok"], true, "{info}");
    assert_eq!(
        info["server_starter_port"],
        format!("127.0.0.1:{}=3", s.port),
        "{info}"
    );
    let pid = app_pid(s.port);
    assert!(
        d.log().contains("Using the listening sockets passed by systemd"),
        "{}",
        d.log()
    );
    d.terminate(Duration::from_secs(30));
    assert!(!alive(pid));
}

#[test]
fn a_release_that_crash_loops_is_rolled_back() {
    let s = setup();
    publish(&s.registry, "v1.0.0", "plain");
    let mut d = start(&s, &["--alive-delay", "300ms", "--drain-time", "2"]);
    wait_for("v1.0.0 started", LONG, || {
        d.log().contains("Server started for v1.0.0").then_some(())
    });
    let v1_dir = std::fs::read_link(s.root.join("current")).unwrap();
    publish(&s.registry, "v2.0.0", "crash");
    wait_for("v2.0.0 started", LONG, || {
        d.log().contains("Server restarted for v2.0.0").then_some(())
    });
    let start = std::time::Instant::now();
    while !(std::fs::read_link(s.root.join("current")).ok() == Some(v1_dir.clone())
        && served(s.port, "v1.0.0").is_some())
    {
        assert!(start.elapsed() < LONG, "no rollback to v1.0.0:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = d.log();
    assert!(log.contains("Server crash loop"), "{log}");
    let state = support::server::state(&s);
    assert_eq!(state["live"]["version"], "v1.0.0", "{state}");
    assert!(state["bad"]["v2.0.0"].is_object(), "{state}");
    let pid = app_pid(s.port);
    d.terminate(Duration::from_secs(30));
    assert!(!alive(pid));
}

/// Make the live release's app crash a second after every start, from now on (or serve again),
/// and kill the serving process so that the supervisor starts it again.
fn break_live_app(s: &support::server::Setup, mode: &str) {
    std::fs::write(s.root.join("current/MODE"), mode).unwrap();
    if mode == "crash" {
        let pid = app_pid(s.port);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
}

/// Wait until dewy's log has `line`; on timeout, fail showing the log.
fn wait_log(d: &Daemon, line: &str) {
    let start = std::time::Instant::now();
    while !d.log().contains(line) {
        assert!(start.elapsed() < LONG, "no {line:?} in:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_crash_loop_after_a_rollback_keeps_the_release_and_never_flip_flops() {
    crash_loop_after_rollback(false);
}

#[test]
fn a_rollback_onto_a_release_that_fails_too_keeps_retrying_it_and_never_flip_flops() {
    crash_loop_after_rollback(true);
}

/// v2.0.0 crash-loops and is rolled back; then v1.0.0 fails too: when `early`, it exits at once
/// from the rollback on (its start fails), else it crash-loops after it served again.
fn crash_loop_after_rollback(early: bool) {
    let s = setup();
    publish(&s.registry, "v1.0.0", "plain");
    let rx = support::receiver::Receiver::start();
    let hook = format!("webhook+{}/hook", rx.base());
    // `alive-delay` below the `crash` app's one second (so v2.0.0 starts, then crashes) and
    // well above the time the `exit` app takes to start and exit on a busy machine (so the
    // rollback's start of v1.0.0 fails rather than counting as ready).
    let mut d = start(
        &s,
        &["--alive-delay", "800ms", "--drain-time", "2", "--notifier", &hook],
    );
    wait_for("v1.0.0 started", LONG, || {
        d.log().contains("Server started for v1.0.0").then_some(())
    });
    let v1_dir = std::fs::read_link(s.root.join("current")).unwrap();
    publish(&s.registry, "v2.0.0", "crash");
    if early {
        wait_log(&d, "Server restarted for v2.0.0");
        std::fs::write(s.root.join(&v1_dir).join("MODE"), "exit").unwrap();
    } else {
        // Started again (its first start is logged the same way) and ready, by the rollback.
        wait_for("v1.0.0 started by the rollback", LONG, || {
            (d.log().matches("Server started for v1.0.0").count() == 2).then_some(())
        });
        // Now v1.0.0 breaks too (as when a database it needs goes away): v2.0.0 is marked bad,
        // so there is nothing to roll back onto.
        break_live_app(&s, "crash");
    }
    // v1.0.0 stays live and is restarted (as v1.0.0); nothing more is marked bad.
    wait_log(
        &d,
        "Server crash loop; keeping v1.0.0 and restarting it with backoff",
    );
    let log = d.log();
    assert!(log.contains("v2.0.0 is marked bad"), "{log}");
    // After the rollback, only v1.0.0 is started: restarts follow `current`, not the version of
    // the generation that crashed last.
    let after = &log[log.find("Rolled back").expect("rolled back")..];
    assert!(!after.contains("version=v2.0.0 readiness"), "{log}");
    if early {
        assert!(after.contains("Server failure after rollback"), "{log}");
    }
    assert_eq!(std::fs::read_link(s.root.join("current")).unwrap(), v1_dir);
    let state = support::server::state(&s);
    let rollbacks = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["result"] == "rolled-back")
        .count();
    assert_eq!(rollbacks, 1, "{state}");
    assert_eq!(state["live"]["version"], "v1.0.0", "{state}");
    assert!(state["bad"]["v2.0.0"].is_object(), "{state}");
    assert!(state["bad"]["v1.0.0"].is_null(), "{state}");
    let told = wait_for("the crash loop notification", LONG, || {
        rx.to("/hook").into_iter().map(|r| r.json()).find(|j| {
            j["event"] == "failed" && j["message"].as_str().is_some_and(|t| t.contains("no rollback"))
        })
    });
    assert!(
        told["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing is marked bad"),
        "{told}"
    );
    // Whatever broke is repaired: the next restart (backoff capped at 60 s) serves again.
    break_live_app(&s, "plain");
    wait_for("v1.0.0 served again", Duration::from_secs(90), || {
        served(s.port, "v1.0.0")
    });
    let state = support::server::state(&s);
    assert_eq!(state["live"]["version"], "v1.0.0", "{state}");
    assert!(state["bad"]["v1.0.0"].is_null(), "{state}");
    let pid = app_pid(s.port);
    d.terminate(Duration::from_secs(30));
    assert!(!alive(pid));
}

#[test]
fn a_release_that_served_past_its_blame_window_is_not_blamed_for_a_crash_loop() {
    let s = setup();
    publish(&s.registry, "v1.0.0", "plain");
    let mut d = start(
        &s,
        &[
            "--alive-delay",
            "300ms",
            "--drain-time",
            "2",
            "--blame-window",
            "2s",
        ],
    );
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    publish(&s.registry, "v2.0.0", "plain");
    wait_for("v2.0.0 served", LONG, || served(s.port, "v2.0.0"));
    let v2_dir = std::fs::read_link(s.root.join("current")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    break_live_app(&s, "crash");
    wait_log(
        &d,
        "Server crash loop; keeping v2.0.0 and restarting it with backoff",
    );
    let log = d.log();
    assert!(log.contains("the environment broke, not the release"), "{log}");
    assert_eq!(std::fs::read_link(s.root.join("current")).unwrap(), v2_dir);
    let state = support::server::state(&s);
    assert!(
        state["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["result"] != "rolled-back"),
        "{state}"
    );
    assert_eq!(state["live"]["version"], "v2.0.0", "{state}");
    assert_eq!(state["bad"], serde_json::json!({}), "{state}");
    break_live_app(&s, "plain");
    wait_for("v2.0.0 served again", Duration::from_secs(90), || {
        served(s.port, "v2.0.0")
    });
    let pid = app_pid(s.port);
    d.terminate(Duration::from_secs(30));
    assert!(!alive(pid));
}

/// The example app (`examples/hello_server.rs`), built by `cargo test` next to the test binaries.
fn example_app() -> Option<Vec<u8>> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples/hello_server");
    std::fs::read(path).ok()
}

#[test]
fn the_example_app_is_deployed_and_auto_readiness_learns_notify() {
    let Some(bin) = example_app() else {
        eprintln!("examples/hello_server not built; skipping");
        return;
    };
    let s = setup();
    let publish_example = |v: &str| {
        let archive = tar_gz(&[("hello_server", 0o755, &bin), ("VERSION", 0o644, v.as_bytes())]);
        let tmp = s.registry.join(format!(".tmp-{v}"));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("app.tar.gz"), archive).unwrap();
        std::fs::rename(&tmp, s.registry.join(v)).unwrap();
    };
    publish_example("v1.0.0");
    let mut d = start_with(&s, &["--drain-time", "5"], "./current/hello_server");
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0\n"));
    wait_for("v1.0.0 ready", LONG, || {
        d.log().contains("Server started for v1.0.0").then_some(())
    });
    assert!(s.root.join(".dewy/app-sends-ready").exists(), "{}", d.log());
    publish_example("v2.0.0");
    wait_for("v2.0.0 served", LONG, || served(s.port, "v2.0.0\n"));
    wait_for("v2.0.0 ready", LONG, || {
        d.log().contains("Server restarted for v2.0.0").then_some(())
    });
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("version=v2.0.0 readiness=Notify")),
        "{log}"
    );
    d.terminate(Duration::from_secs(30));
    assert!(get(s.port, "/").is_err());
}

#[test]
fn an_app_left_by_a_killed_deployer_is_replaced_on_restart() {
    let s = setup();
    publish(&s.registry, "v1.0.0", "notify");
    let mut d = start(&s, &["--drain-time", "2"]);
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    let orphan = app_pid(s.port);
    d.kill9();
    assert!(alive(orphan), "the app should outlive a SIGKILLed deployer");
    let mut d = start(&s, &["--drain-time", "2"]);
    let pid = wait_for("a new generation", LONG, || {
        try_app_pid(s.port).filter(|p| *p != orphan)
    });
    assert!(!alive(orphan), "the orphaned app still runs");
    assert!(d.log().contains("still running; stopping them"), "{}", d.log());
    d.terminate(Duration::from_secs(30));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(!alive(pid), "app {pid} still there ({stat}):\n{}", d.log());
}

#[test]
fn sigusr1_restarts_the_app_and_no_port_runs_a_job_worker() {
    let s = setup();
    publish(&s.registry, "v1.0.0", "notify");
    let mut d = start(&s, &["--readiness", "notify", "--drain-time", "2"]);
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    let first = app_pid(s.port);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let second = wait_for("a new generation", LONG, || {
        try_app_pid(s.port).filter(|p| *p != first)
    });
    wait_for("the old generation to stop", LONG, || {
        (!alive(first)).then_some(())
    });
    // The line comes right after the old generation is reaped: wait for it rather than race it.
    wait_for("the restart logged", LONG, || {
        d.log().contains("Server restarted for v1.0.0").then_some(())
    });
    d.terminate(Duration::from_secs(30));
    assert!(!alive(second));

    // No port: the app runs without sockets (a job worker).
    let w = setup();
    let script =
        "#!/bin/sh\necho \"$$ ${LISTEN_FDS:-none} $(cat current/VERSION)\" > worker.out\nexec sleep 600\n";
    let archive = tar_gz(&[("app", 0o755, script.as_bytes()), ("VERSION", 0o644, b"v1.0.0")]);
    std::fs::create_dir_all(w.registry.join("v1.0.0")).unwrap();
    std::fs::write(w.registry.join("v1.0.0/app.tar.gz"), archive).unwrap();
    let url = format!("file://{}?artifact=app.tar.gz", w.registry.display());
    let mut d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &[
            "server",
            "--registry",
            &url,
            "--bus",
            "none",
            "--alive-delay",
            "200ms",
            "--drain-time",
            "1",
            "--",
            "./current/app",
        ],
        &[],
        &w.root,
        &w.root.join("../dewy.log"),
    );
    let out = wait_for("the worker", LONG, || {
        std::fs::read_to_string(w.root.join("worker.out"))
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[1..], ["none", "v1.0.0"], "{out}");
    let pid: i32 = fields[0].parse().unwrap();
    wait_for("worker started", LONG, || {
        d.log().contains("Server started for v1.0.0").then_some(())
    });
    d.terminate(Duration::from_secs(30));
    assert!(!alive(pid), "the worker outlived dewy");
}

#[test]
fn dewy_restart_and_rollback_over_the_bus_start_a_new_generation() {
    let bus = support::dbus::PrivateBus::start();
    let s = setup();
    publish(&s.registry, "v1.0.0", "notify");
    let url = format!("file://{}?artifact=app.tar.gz", s.registry.display());
    let port = format!("127.0.0.1:{}", s.port);
    let mut d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &[
            "server",
            "--registry",
            &url,
            "--name",
            "web",
            "--bus",
            &bus.address,
            "--port",
            &port,
            "--readiness",
            "notify",
            "--drain-time",
            "2",
            "--",
            "./current/app",
        ],
        &[],
        &s.root,
        &s.root.join("../dewy.log"),
    );
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    let first = app_pid(s.port);
    let (code, out, err) = support::proc::dewy(&["restart", "web", "--bus", &bus.address], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web restarted"), "{out}");
    let second = wait_for("a new generation", LONG, || {
        try_app_pid(s.port).filter(|p| *p != first)
    });
    wait_for("the old generation to stop", LONG, || {
        (!alive(first)).then_some(())
    });

    // `dewy rollback` makes the previous release serve again: its app is started.
    publish(&s.registry, "v2.0.0", "notify");
    wait_for("v2.0.0 served", LONG, || served(s.port, "v2.0.0"));
    wait_for("the v1.0.0 generation to stop", LONG, || {
        (!alive(second)).then_some(())
    });
    let (code, out, err) = support::proc::dewy(&["rollback", "web", "--bus", &bus.address], &[]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("v1.0.0 served again after the rollback", LONG, || {
        served(s.port, "v1.0.0")
    });
    let back = app_pid(s.port);
    d.terminate(Duration::from_secs(30));
    assert!(!alive(back));

    // In assets mode there is no app to restart: a clear error.
    let a = setup();
    publish(&a.registry, "v1.0.0", "notify");
    let url = format!("file://{}?artifact=app.tar.gz", a.registry.display());
    let mut d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &[
            "assets",
            "--registry",
            &url,
            "--name",
            "files",
            "--bus",
            &bus.address,
        ],
        &[],
        &a.root,
        &a.root.join("../dewy.log"),
    );
    wait_for("deployed", LONG, || current_file(&a.root, "VERSION"));
    let (code, _, err) = support::proc::dewy(&["restart", "files", "--bus", &bus.address], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no app to restart in assets mode"), "{err}");
    d.terminate(Duration::from_secs(30));
}
