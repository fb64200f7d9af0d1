//! Config errors through the real binaries: every duration key out of range (however large),
//! empty and repeated ports, a `file:` registry without a directory and `--config` naming a
//! directory exit with status 78 and name the key or the value, without a panic.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `bin` with `args` and no systemd environment; (exit status, stderr). Fails the test when
/// the process is still running after a minute (a bad config must stop it at once).
fn run(bin: &str, args: &[&str], cwd: &Path) -> (Option<i32>, String) {
    let log = cwd.join(format!("stderr-{}.log", std::process::id()));
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("INVOCATION_ID")
        .env_remove("STATE_DIRECTORY")
        .env_remove("CACHE_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"))
        .spawn()
        .expect("starting the binary");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} {args:?} still runs after a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    (status.code(), err)
}

fn assert_config_error(bin: &str, args: &[&str], cwd: &Path, needles: &[&str]) {
    let (code, err) = run(bin, args, cwd);
    assert_eq!(code, Some(78), "{bin} {args:?}: {err}");
    assert!(!err.contains("panicked"), "{bin} {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{bin} {args:?}: {n:?} not in {err}");
    }
}

const DEPLOYER: &str = env!("CARGO_BIN_EXE_dewy-deployer");
const WATCHER: &str = env!("CARGO_BIN_EXE_dewy-watcher");
const PROXY: &str = env!("CARGO_BIN_EXE_dewy-proxy");
const DEWY: &str = env!("CARGO_BIN_EXE_dewy");

const HUGE: [&str; 3] = [
    "\"99999999999999999999d\"",
    "\"1d99999999999h\"",
    "99999999999999999999",
];

#[test]
fn every_duration_key_out_of_range_exits_78_naming_the_key_and_range() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("app.toml");
    let cfg_s = cfg.to_str().unwrap();
    let server = "mode = \"server\"\ncommand = [\"./current/app\"]\n";
    let container = "mode = \"container\"\nport = [\"18000:80\"]\n";
    // (extra keys, duration key, its allowed range, a value below the range if there is one)
    let cases: [(&str, &str, &str, Option<&str>); 8] = [
        ("", "interval", "1s to 7d", Some("\"500ms\"")),
        ("", "grace-period", "0s to 30d", None),
        ("", "hook-timeout", "1s to 1d", Some("0")),
        (server, "health-timeout", "100ms to 1h", Some("\"10ms\"")),
        (server, "drain-time", "0s to 1h", None),
        (server, "alive-delay", "0s to 10m", None),
        (server, "blame-window", "0s to 30d", None),
        (container, "proxy-idle-timeout", "0s to 7d", None),
    ];
    for (extra, key, range, below) in cases {
        let values = HUGE.iter().copied().chain(below);
        for value in values {
            std::fs::write(
                &cfg,
                format!("registry = \"file:///srv/rel\"\n{extra}{key} = {value}\n"),
            )
            .unwrap();
            let needles: &[&str] = if value == "99999999999999999999" {
                // Too large for a TOML integer: refused by the parser, with the key and line.
                &[key]
            } else {
                &[key, range, "out of range"]
            };
            assert_config_error(DEPLOYER, &["app", "--config", cfg_s], tmp.path(), needles);
            assert_config_error(WATCHER, &["app", "--config", cfg_s], tmp.path(), needles);
            if extra == container || key == "drain-time" {
                std::fs::write(
                    &cfg,
                    format!("registry = \"file:///srv/rel\"\n{container}{key} = {value}\n"),
                )
                .unwrap();
                assert_config_error(PROXY, &["app", "--config", cfg_s], tmp.path(), needles);
            }
        }
    }
    // Durations inside URLs: a notifier's timeout and the shared cache's registry-ttl.
    for (line, needles) in [
        (
            "notifier = [\"webhook+http://127.0.0.1:9/x?timeout=99999999999999999999d\"]",
            ["notifier timeout", "100ms to 10m"],
        ),
        (
            "cache = \"s3://us-east-1/b/p?registry-ttl=1d99999999999h\"",
            ["cache registry-ttl", "0s to 1d"],
        ),
    ] {
        std::fs::write(&cfg, format!("registry = \"file:///srv/rel\"\n{line}\n")).unwrap();
        assert_config_error(DEPLOYER, &["app", "--config", cfg_s], tmp.path(), &needles);
    }
}

#[test]
fn duration_flags_out_of_range_exit_78_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (mode, flag, value, key) in [
        ("assets", "--interval", "99999999999999999999d", "interval"),
        ("assets", "--interval", "99999999999999999999", "interval"),
        ("assets", "-i", "1d99999999999h", "interval"),
        (
            "assets",
            "--grace-period",
            "99999999999999999999d",
            "grace-period",
        ),
        ("assets", "--hook-timeout", "1d99999999999h", "hook-timeout"),
        (
            "server",
            "--health-timeout",
            "99999999999999999999d",
            "health-timeout",
        ),
        ("server", "--drain-time", "99999999999999999999d", "drain-time"),
        ("server", "--alive-delay", "99999999999999999999d", "alive-delay"),
        (
            "container",
            "--proxy-idle-timeout",
            "99999999999999999999d",
            "proxy-idle-timeout",
        ),
    ] {
        let mut args = vec![
            mode,
            "--registry",
            "file:///srv/rel",
            "--bus",
            "none",
            flag,
            value,
        ];
        match mode {
            "server" => args.extend(["--", "./current/app"]),
            "container" => args.extend(["-p", "18000:80"]),
            _ => {}
        }
        assert_config_error(DEWY, &args, tmp.path(), &[key, "out of range"]);
    }
}

#[test]
fn empty_and_repeated_ports_are_config_errors_naming_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let server = |ports: &[&str]| {
        let mut args = vec!["server", "--registry", "file:///srv/rel", "--bus", "none"];
        for p in ports {
            args.extend(["-p", p]);
        }
        args.extend(["--", "./current/app"]);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    for (ports, needles) in [
        (&[""][..], &["port \"\"", "empty"][..]),
        (&[","], &["port \",\"", "empty"]),
        (&["8080,"], &["port \"8080,\"", "empty"]),
        (
            &["18000", "0.0.0.0:18000"],
            &["port 18000 is given twice: \"18000\" and \"0.0.0.0:18000\""],
        ),
        (
            &["18000", ":18000"],
            &["port 18000 is given twice: \"18000\" and \":18000\""],
        ),
        (&["127.0.0.1:18000", "18000"], &["port 18000 is given twice"]),
    ] {
        let args = server(ports);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_config_error(DEWY, &args, tmp.path(), needles);
    }
    let container = [
        "container",
        "--registry",
        "img://127.0.0.1:1/app",
        "--bus",
        "none",
        "-p",
        "18000:80",
        "-p",
        "0.0.0.0:18000:81",
    ];
    assert_config_error(
        DEWY,
        &container,
        tmp.path(),
        &["proxy port 18000 is given twice: \"18000:80\" and \"0.0.0.0:18000:81\""],
    );
    // The same in a file, for the proxy daemon too.
    let cfg = tmp.path().join("web.toml");
    std::fs::write(
        &cfg,
        "registry = \"img://127.0.0.1:1/app\"\nmode = \"container\"\nport = [\"18000:80\", \"\"]\n",
    )
    .unwrap();
    for bin in [DEPLOYER, PROXY] {
        assert_config_error(
            bin,
            &["web", "--config", cfg.to_str().unwrap()],
            tmp.path(),
            &["port \"\"", "empty"],
        );
    }
}

#[test]
fn a_file_registry_without_a_directory_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    for registry in ["file:", "file://", "file:///", "file://?artifact=app.tar.gz"] {
        assert_config_error(
            DEWY,
            &["assets", "--registry", registry, "--bus", "none"],
            tmp.path(),
            &[&format!("registry {registry:?} names no directory")],
        );
    }
    let cfg = tmp.path().join("app.toml");
    std::fs::write(&cfg, "registry = \"file://\"\n").unwrap();
    assert_config_error(
        DEPLOYER,
        &["app", "--config", cfg.to_str().unwrap()],
        tmp.path(),
        &["registry \"file://\" names no directory"],
    );
}

#[test]
fn config_naming_a_directory_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("conf.d");
    std::fs::create_dir(&dir).unwrap();
    let dir_s = dir.to_str().unwrap();
    let needles = [dir_s, "is a directory"];
    for bin in [DEPLOYER, WATCHER, PROXY] {
        assert_config_error(bin, &["app", "--config", dir_s], tmp.path(), &needles);
    }
    assert_config_error(
        DEWY,
        &["assets", "--config", dir_s, "--bus", "none"],
        tmp.path(),
        &needles,
    );
    assert_config_error(
        DEWY,
        &["config", "check", "--offline", dir_s],
        tmp.path(),
        &needles,
    );
}
