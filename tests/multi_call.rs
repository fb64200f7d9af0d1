//! The packages install one binary, `dewy`, and the daemons' names as symlinks to it: started
//! under `dewy-deployer`, `dewy-watcher` or `dewy-proxy` it runs that daemon (same arguments,
//! `--help`, `--version`, errors and exit status as the daemon's own executable), and under any
//! other name the `dewy` command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const DEWY: &str = env!("CARGO_BIN_EXE_dewy");
const DAEMONS: [(&str, &str); 3] = [
    ("dewy-deployer", env!("CARGO_BIN_EXE_dewy-deployer")),
    ("dewy-watcher", env!("CARGO_BIN_EXE_dewy-watcher")),
    ("dewy-proxy", env!("CARGO_BIN_EXE_dewy-proxy")),
];

/// A symlink `dir/name` to the `dewy` binary, as the packages install it.
fn link(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::os::unix::fs::symlink(DEWY, &path).expect("symlink");
    path
}

/// Run `bin` with `args`, no systemd environment and its directories under `dir`:
/// (exit status, stdout, the stderr lines that are not log records).
fn run(bin: &Path, args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("INVOCATION_ID")
        .env_remove("LISTEN_FDS")
        .env_remove("DEWY_CONFIG")
        .env_remove("DEWY_BUS")
        .env("STATE_DIRECTORY", dir.join("state"))
        .env("CACHE_DIRECTORY", dir.join("cache"))
        .env("RUNTIME_DIRECTORY", dir.join("run"))
        .stdin(Stdio::null())
        .output()
        .expect("running the binary");
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("time="))
        .collect::<Vec<_>>()
        .join("\n");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[test]
fn the_daemons_names_run_the_daemons() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let assets = dir.join("assets.toml");
    std::fs::create_dir(dir.join("releases")).unwrap();
    let registry = format!("file://{}", dir.join("releases").display());
    std::fs::write(&assets, format!("registry = \"{registry}\"\n")).unwrap();
    let assets = assets.to_str().unwrap();
    // No bus listens here: each daemon fails at its own first use of the bus.
    let bus = format!("unix:path={}", dir.join("no-bus").display());
    for (name, own) in DAEMONS {
        let linked = link(dir, name);
        let cases: [&[&str]; 5] = [
            &["--version"],
            &["--help"],
            &[],
            &["app", "--config", "/nonexistent/app.toml"],
            &["app", "--config", assets, "--bus", &bus],
        ];
        for args in cases {
            let by_link = run(&linked, args, dir);
            assert_eq!(
                by_link,
                run(Path::new(own), args, dir),
                "{name} {args:?}: the link and the daemon's executable differ"
            );
            if args.is_empty() {
                assert_eq!(by_link.0, Some(2), "{name} without APP: {by_link:?}");
                assert!(by_link.2.contains(&format!("Usage: {name} ")), "{by_link:?}");
            }
        }
        // What only this daemon does with an assets-mode config and no bus.
        let (code, _, err) = run(&linked, &["app", "--config", assets, "--bus", &bus], dir);
        assert_eq!(
            code,
            Some(if name == "dewy-proxy" { 78 } else { 1 }),
            "{name}: {err}"
        );
        let expected = match name {
            "dewy-deployer" => "Error: publishing io.dewy.Deployer.app on the",
            "dewy-watcher" => "Error: connecting to the",
            _ => "Error: bad configuration: dewy-proxy serves container mode",
        };
        assert!(err.contains(expected), "{name}: {expected:?} not in {err}");
    }
}

#[test]
fn any_other_name_runs_the_dewy_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    for bin in [PathBuf::from(DEWY), link(tmp.path(), "dewy-1")] {
        let (code, out, err) = run(&bin, &["--version"], tmp.path());
        assert_eq!(code, Some(0), "{}: {err}", bin.display());
        assert_eq!(out.trim(), format!("dewy {}", env!("CARGO_PKG_VERSION")));
        let (code, out, err) = run(&bin, &["--help"], tmp.path());
        assert_eq!(code, Some(0), "{}: {err}", bin.display());
        for sub in ["status", "rollback", "server", "config"] {
            assert!(out.contains(sub), "{}: no {sub:?} in {out}", bin.display());
        }
    }
}
