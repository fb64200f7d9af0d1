//! `dewy-deployer` and `dewy-watcher` as separate processes on a private `dbus-daemon`, deploying
//! from the GitHub-compatible test server; operator commands over the bus; SIGKILL mid-download.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::dbus::PrivateBus;
use support::github::{AssetBody, GithubFake, ReleaseSpec};
use support::proc::{dewy, Daemon};
use support::{current_file, tar_gz, wait_for};

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "ghp_test_token";

fn app_tar(version: &str) -> Vec<u8> {
    tar_gz(&[
        ("VERSION", 0o644, version.as_bytes()),
        ("bin/app", 0o755, b"#!/bin/sh\n"),
    ])
}

fn release(version: &str) -> ReleaseSpec {
    let body = AssetBody::from(app_tar(version));
    let sums = format!("{}  app.tar.gz\n", body.sha256_hex());
    ReleaseSpec::new(version)
        .with_asset("app.tar.gz", body)
        .with_asset("checksums.txt", sums)
}

struct World {
    tmp: tempfile::TempDir,
    bus: PrivateBus,
    fake: GithubFake,
    config: PathBuf,
    root: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let bus = PrivateBus::start();
        let fake = GithubFake::start_blocking();
        fake.set_token(Some(TOKEN.to_string()));
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let config = tmp.path().join("app.toml");
        let hook = format!(
            "echo \"$DEWY_PREVIOUS_VERSION -> $DEWY_VERSION\" >> {}/hooks.log",
            tmp.path().display()
        );
        std::fs::write(
            &config,
            format!(
                "registry = \"{}?artifact=app.tar.gz\"\ninterval = 1\nroot = \"{}\"\nlog-level = \"debug\"\nafter-deploy-hook = '{}'\n",
                fake.registry_url(),
                root.display(),
                hook
            ),
        )
        .unwrap();
        World {
            tmp,
            bus,
            fake,
            config,
            root,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GITHUB_API_URL", self.fake.api_url()),
            ("GH_TOKEN", TOKEN.to_string()),
            ("DEWY_BUS", self.bus.address.clone()),
        ]
    }

    fn start(&self, bin: &str, name: &str) -> Daemon {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Daemon::start(
            bin,
            &["app", "--config", self.config.to_str().unwrap()],
            &env,
            self.tmp.path(),
            &self.tmp.path().join(format!("{name}.log")),
        )
    }

    fn deployer(&self) -> Daemon {
        self.start(env!("CARGO_BIN_EXE_dewy-deployer"), "deployer")
    }

    fn watcher(&self) -> Daemon {
        self.start(env!("CARGO_BIN_EXE_dewy-watcher"), "watcher")
    }

    /// Run an operator command against this world's bus.
    fn dewy(&self, args: &[&str]) -> (i32, String, String) {
        dewy(args, &[("DEWY_BUS", self.bus.address.as_str())])
    }

    fn wait_live(&self, version: &str) {
        wait_for(&format!("{version} live"), LONG, || {
            (current_file(&self.root, "VERSION").as_deref() == Some(version)).then_some(())
        });
    }

    /// The `n`th shipping report uploaded to the fake.
    fn wait_report(&self, n: usize) -> support::github::app::Upload {
        wait_for(&format!("shipping report {n}"), LONG, || {
            self.fake.uploads().get(n - 1).cloned()
        })
    }

    /// A daemon's log so far.
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn wait_ready(&self, d: &Daemon) {
        wait_for("deployer on the bus", LONG, || {
            let (code, _, _) = self.dewy(&["status", "app"]);
            (code == 0).then_some(())
        });
        assert!(d.log().contains("Deployer ready"), "{}", d.log());
    }
}

fn part_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".part"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn daemons_deploy_from_github_and_answer_operator_commands() {
    let w = World::new();
    w.fake.add_release(release("v1.0.0"));
    let mut deployer = w.deployer();
    w.wait_ready(&deployer);
    // `dewy status --follow --json` shows every deploy as the deployer announces it.
    let bus_env = [("DEWY_BUS", w.bus.address.as_str())];
    let follower = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &["status", "app", "--follow", "--json"],
        &bus_env,
        w.tmp.path(),
        &w.tmp.path().join("follow.log"),
    );
    wait_for("the follower's status", LONG, || {
        follower.log().contains("\"deployer\"").then_some(())
    });
    let mut watcher = w.watcher();
    w.wait_live("v1.0.0");

    // The deployer (not the watcher) leaves the shipping report on the release, with its token.
    let report = w.wait_report(1);
    assert!(report.name.contains("_assets_at_"), "{}", report.name);
    assert_eq!(report.authorization, format!("Bearer {TOKEN}"));
    assert!(w.log("deployer").contains("Report shipping"));
    assert!(!w.log("watcher").contains("Report shipping"));

    // Unchanged polls are answered 304: only the first listing of the watcher and the first of
    // the deployer (which resolves each nominated version in its own client), and the first of
    // each after the report changed the release, counted against the rate limit.
    let polls_before = w.fake.list_requests_304();
    wait_for("three conditional polls", LONG, || {
        (w.fake.list_requests_304() >= polls_before + 3).then_some(())
    });
    assert_eq!(w.fake.list_requests_200(), 4);

    // A new release is deployed within an interval or two (a new list for each client, then the
    // report's change once more).
    w.fake.add_release(release("v1.1.0"));
    w.wait_live("v1.1.0");
    w.wait_report(2);
    let polls_before = w.fake.list_requests_304();
    wait_for("three conditional polls", LONG, || {
        (w.fake.list_requests_304() >= polls_before + 3).then_some(())
    });
    assert_eq!(w.fake.list_requests_200(), 8);
    // The after-deploy hook runs once `current` has switched: wait for its line.
    let hooks = wait_for("the after-deploy hook of v1.1.0", LONG, || {
        std::fs::read_to_string(w.tmp.path().join("hooks.log"))
            .ok()
            .filter(|h| h.lines().count() >= 2)
    });
    assert_eq!(hooks, " -> v1.0.0\nv1.0.0 -> v1.1.0\n");

    let (code, out, err) = w.dewy(&["status", "app"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("live:      v1.1.0"), "{out}");
    assert!(out.contains("previous:  v1.0.0"), "{out}");
    let (code, out, _) = w.dewy(&["status"]);
    assert_eq!(code, 0, "the only app is picked: {out}");

    // Rollback: v1.0.0 back, v1.1.0 marked bad and not redeployed by the watcher.
    let (code, out, err) = w.dewy(&["rollback", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    w.wait_live("v1.0.0");
    let checks = w.fake.list_requests_304();
    wait_for("two more polls", LONG, || {
        (w.fake.list_requests_304() >= checks + 2).then_some(())
    });
    assert_eq!(current_file(&w.root, "VERSION").as_deref(), Some("v1.0.0"));
    let (_, out, _) = w.dewy(&["status", "app", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["deployer"]["bad"][0]["version"], "v1.1.0", "{out}");
    assert_eq!(status["watcher"]["last"]["outcome"], "skipped", "{out}");

    // check-now answers at once with the skip.
    let (code, out, _) = w.dewy(&["check-now", "app"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("skipped v1.1.0"), "{out}");

    // An operator may deploy a bad version on purpose; forget-bad of an unknown version is harmless.
    let (code, out, err) = w.dewy(&["deploy", "v1.1.0", "--app", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    w.wait_live("v1.1.0");
    let (code, out, _) = w.dewy(&["forget-bad", "v9.9.9", "--app", "app"]);
    assert_eq!(code, 0);
    assert!(out.contains("was not marked bad"), "{out}");

    // A version the source does not have: refused, announced as a failed deploy.
    let (code, _, err) = w.dewy(&["deploy", "v9.9.9", "--app", "app"]);
    assert_eq!(code, 1, "{err}");
    let followed = wait_for("the failure on the follower", LONG, || {
        let log = follower.log();
        log.contains("\"event\":\"failed\"").then_some(log)
    });
    let events: Vec<serde_json::Value> = followed
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in\n{followed}")))
        .collect();
    let has =
        |event: &str, key: &str, value: &str| events.iter().any(|e| e["event"] == event && e[key] == value);
    assert!(has("deployed", "version", "v1.0.0"), "{followed}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "deployed" && e["version"] == "v1.1.0" && e["previous"] == "v1.0.0"),
        "{followed}"
    );
    assert!(has("activity", "activity", "deploying v1.1.0"), "{followed}");
    assert!(has("live", "version", "v1.1.0"), "{followed}");
    assert!(has("rolled-back", "from", "v1.1.0"), "{followed}");
    assert!(has("failed", "version", "v9.9.9"), "{followed}");
    drop(follower);

    let (code, out, _) = w.dewy(&["history", "app"]);
    assert_eq!(code, 0);
    for want in [
        "- -> v1.0.0",
        "v1.0.0 -> v1.1.0",
        "v1.1.0 -> v1.0.0",
        "rolled-back",
        "operator",
    ] {
        assert!(out.contains(want), "missing {want:?} in history:\n{out}");
    }

    // Clean stop.
    assert!(watcher.terminate(Duration::from_secs(20)).success());
    assert!(deployer.terminate(Duration::from_secs(20)).success());
    let log = deployer.log();
    for msg in [
        "Cached artifact",
        "Extract archive",
        "Create symlink",
        "Rolled back",
        "Shutting down gracefully",
    ] {
        assert!(log.contains(msg), "missing {msg:?} in deployer log:\n{log}");
    }
}

/// The deployer's metrics (on its socket in the state directory, outside systemd).
fn deployer_metrics(w: &World) -> Option<String> {
    support::scrape_metrics(&w.root.join(".dewy/metrics.sock"))
}

#[test]
fn a_paused_deployer_holds_releases_across_a_restart_until_resumed() {
    let w = World::new();
    let rx = support::receiver::Receiver::start();
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.push_str(&format!("notifier = [\"webhook+{}/hook\"]\n", rx.base()));
    std::fs::write(&w.config, config).unwrap();
    w.fake.add_release(release("v1.0.0"));
    let mut deployer = w.deployer();
    w.wait_ready(&deployer);
    let mut watcher = w.watcher();
    w.wait_live("v1.0.0");
    let metrics = wait_for("the deployer's metrics", LONG, || deployer_metrics(&w));
    assert!(metrics.contains("\ndewy_paused 0\n"), "{metrics}");

    let (code, out, err) = w.dewy(&["pause", "app", "--reason", "incident 42"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("app paused since "), "{out}");
    let (code, out, _) = w.dewy(&["pause", "app"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("was already paused since") && out.contains("incident 42"),
        "{out}"
    );
    let (code, _, err) = w.dewy(&["pause", "app", "--reason", "a\u{1b}[2Jb"]);
    assert_eq!(code, 1, "a control character is refused: {err}");
    assert!(err.contains("control character"), "{err}");
    let paused = wait_for("the paused webhook", LONG, || {
        rx.to("/hook")
            .into_iter()
            .map(|r| r.json())
            .find(|b| b["event"] == "paused")
    });
    assert!(
        paused["message"].as_str().unwrap().contains("incident 42"),
        "{paused}"
    );
    assert!(deployer_metrics(&w).unwrap().contains("\ndewy_paused 1\n"));

    // A new release is held back, check after check, and status says why.
    w.fake.add_release(release("v1.1.0"));
    let status = wait_for("v1.1.0 held back", LONG, || {
        let (_, out, _) = w.dewy(&["status", "app", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let held = v["watcher"]["last"]["detail"]
            .as_str()?
            .starts_with("v1.1.0 held back: paused");
        held.then_some(v)
    });
    assert_eq!(status["deployer"]["paused"]["reason"], "incident 42", "{status}");
    let checks = w.fake.list_requests_304();
    wait_for("three more polls", LONG, || {
        (w.fake.list_requests_304() >= checks + 3).then_some(())
    });
    assert_eq!(current_file(&w.root, "VERSION").as_deref(), Some("v1.0.0"));
    let (_, out, _) = w.dewy(&["status", "app"]);
    assert!(
        out.contains("\npaused:    since ") && out.contains(": incident 42\n"),
        "{out}"
    );
    assert!(
        out.contains("\nwaiting:   v1.1.0 held back: paused since "),
        "{out}"
    );

    // An operator's deploy is refused while paused, unless it says --ignore-pause.
    let (code, _, err) = w.dewy(&["deploy", "v1.1.0", "--app", "app"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--ignore-pause"), "{err}");
    assert_eq!(current_file(&w.root, "VERSION").as_deref(), Some("v1.0.0"));

    // The pause outlives a restart of the deployer.
    assert!(deployer.terminate(Duration::from_secs(20)).success());
    let mut deployer = w.deployer();
    w.wait_ready(&deployer);
    let checks = w.fake.list_requests_304();
    wait_for("three more polls", LONG, || {
        (w.fake.list_requests_304() >= checks + 3).then_some(())
    });
    assert_eq!(current_file(&w.root, "VERSION").as_deref(), Some("v1.0.0"));
    let (_, out, _) = w.dewy(&["status", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deployer"]["paused"]["reason"], "incident 42", "{out}");
    let metrics = wait_for("the restarted deployer's metrics", LONG, || deployer_metrics(&w));
    assert!(metrics.contains("\ndewy_paused 1\n"), "{metrics}");

    let (code, out, err) = w.dewy(&["resume", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("app resumed (paused since "), "{out}");
    w.wait_live("v1.1.0");
    let (_, out, _) = w.dewy(&["resume", "app"]);
    assert!(out.contains("app was not paused"), "{out}");
    assert!(deployer_metrics(&w).unwrap().contains("\ndewy_paused 0\n"));
    wait_for("the resumed webhook", LONG, || {
        rx.to("/hook")
            .iter()
            .any(|r| r.json()["event"] == "resumed")
            .then_some(())
    });
    let (_, out, _) = w.dewy(&["status", "app", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["deployer"].get("paused").is_none(), "{out}");
    assert!(watcher.terminate(Duration::from_secs(20)).success());
    assert!(deployer.terminate(Duration::from_secs(20)).success());
}

#[test]
fn outside_its_deploy_window_a_release_waits_until_the_window_opens() {
    let w = World::new();
    // A window (UTC) on today's day from the next whole minute at least 45 s away: time enough
    // for the checks before it opens on a busy machine.
    let now = chrono::Utc::now();
    let start = chrono::DateTime::from_timestamp(((now.timestamp() + 45) / 60 + 1) * 60, 0).unwrap();
    let opens = start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.push_str(&format!(
        "\n[[window]]\ndays = [\"{}\"]\nstart = \"{}\"\nlength = \"30m\"\n",
        start.format("%A"),
        start.format("%H:%M")
    ));
    std::fs::write(&w.config, config).unwrap();
    w.fake.add_release(release("v1.0.0"));
    let mut deployer = w.deployer();
    w.wait_ready(&deployer);
    let mut watcher = w.watcher();
    let (code, out, err) = w.dewy(&["status", "app"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("\nwindow:    closed until {opens}\n")),
        "{out}"
    );
    let waiting = format!("waiting for a deploy window until {opens}");
    let out = wait_for("the release waiting for its window", LONG, || {
        let (_, out, _) = w.dewy(&["status", "app"]);
        let v: serde_json::Value = serde_json::from_str(&w.dewy(&["status", "app", "--json"]).1).ok()?;
        let told = v["watcher"]["last"]["detail"] == waiting.as_str();
        (told && out.contains(&format!("\nwaiting:   {waiting}\n"))).then_some(out)
    });
    assert!(out.contains("live:      nothing deployed yet"), "{out}");
    // Refused outside the window without --ignore-window (checked before anything is fetched).
    let (code, _, err) = w.dewy(&["deploy", "v1.0.0", "--app", "app"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--ignore-window"), "{err}");
    assert!(
        chrono::Utc::now() < start,
        "the test machine is too slow for this window"
    );
    assert_eq!(current_file(&w.root, "VERSION"), None);

    wait_for(
        "v1.0.0 live once the window opened",
        Duration::from_secs(300),
        || (current_file(&w.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(()),
    );
    assert!(chrono::Utc::now() >= start, "deployed before the window opened");
    let (_, out, _) = w.dewy(&["status", "app"]);
    assert!(out.contains("\nwindow:    open until "), "{out}");
    assert!(!out.contains("\nwaiting:"), "{out}");
    assert!(watcher.terminate(Duration::from_secs(20)).success());
    assert!(deployer.terminate(Duration::from_secs(20)).success());
}

/// The `dewy.process` resource attribute of each export of `signal`.
fn exporters(rx: &support::otlp::OtlpReceiver, signal: &str, outer: &str) -> Vec<String> {
    rx.requests(signal)
        .iter()
        .filter_map(|r| support::otlp::attr(&r[outer][0]["resource"]["attributes"], "dewy.process"))
        .collect()
}

#[test]
fn each_daemon_exports_its_telemetry_under_its_own_name() {
    let w = World::new();
    let rx = support::otlp::OtlpReceiver::start(&w.tmp.path().join("otlp"), None);
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.push_str(&format!(
        "otlp-endpoint = \"{}\"\notlp-insecure = true\n",
        rx.endpoint()
    ));
    std::fs::write(&w.config, config).unwrap();
    w.fake.add_release(release("v1.0.0"));
    let mut env = w.env();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "300".to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let start = |bin: &str, name: &str| {
        Daemon::start(
            bin,
            &["app", "--config", w.config.to_str().unwrap()],
            &env,
            w.tmp.path(),
            &w.tmp.path().join(format!("{name}.log")),
        )
    };
    let mut deployer = start(env!("CARGO_BIN_EXE_dewy-deployer"), "deployer");
    w.wait_ready(&deployer);
    let mut watcher = start(env!("CARGO_BIN_EXE_dewy-watcher"), "watcher");
    w.wait_live("v1.0.0");
    wait_for("metrics from both daemons", LONG, || {
        let names = exporters(&rx, "metrics", "resource_metrics");
        (names.iter().any(|n| n == "dewy-deployer") && names.iter().any(|n| n == "dewy-watcher"))
            .then_some(())
    });
    assert!(
        watcher.terminate(Duration::from_secs(20)).success(),
        "{}",
        watcher.log()
    );
    assert!(
        deployer.terminate(Duration::from_secs(20)).success(),
        "{}",
        deployer.log()
    );

    // The deploy is the deployer's: one trace with its steps, exported by the deployer only.
    assert_eq!(
        exporters(&rx, "traces", "resource_spans"),
        vec!["dewy-deployer".to_string(); rx.requests("traces").len()]
    );
    let spans = rx.spans();
    let root = spans
        .iter()
        .find(|s| s["name"] == "dewy.deploy")
        .expect("a deploy span");
    assert_eq!(
        support::otlp::attr(&root["attributes"], "dewy.version").as_deref(),
        Some("v1.0.0")
    );
    let mut steps: Vec<&str> = spans
        .iter()
        .filter(|s| s["parent_span_id"] == root["span_id"])
        .filter_map(|s| s["name"].as_str())
        .collect();
    steps.sort();
    assert_eq!(
        steps,
        ["clean-up", "download", "extract", "hook.after", "switch"],
        "{spans:#?}"
    );
    // The checks are the watcher's.
    let checks = rx
        .requests("metrics")
        .into_iter()
        .filter(|r| {
            support::otlp::attr(
                &r["resource_metrics"][0]["resource"]["attributes"],
                "dewy.process",
            )
            .as_deref()
                == Some("dewy-watcher")
        })
        .flat_map(|r| {
            r["resource_metrics"][0]["scope_metrics"][0]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|m| m["name"] == "dewy.registry.checks.total")
        .filter_map(|m| {
            m["sum"]["data_points"][0]["as_int"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .max();
    assert!(checks.is_some_and(|n| n >= 1), "{checks:?}");
}

#[test]
fn sigkill_during_download_leaves_no_cache_entry_and_recovers() {
    let w = World::new();
    w.fake.add_release(release("v1.0.0"));
    let mut deployer = w.deployer();
    w.wait_ready(&deployer);
    let _watcher = w.watcher();
    w.wait_live("v1.0.0");

    // v2's download stalls after 1 MiB of 64 MiB.
    w.fake.set_cdn_stall(Some(1 << 20));
    w.fake
        .add_release(ReleaseSpec::new("v2.0.0").with_asset("app.tar.gz", AssetBody::generated(64 << 20, 7)));
    let cache = w.root.join(".dewy/cache");
    wait_for("download of v2 in progress", LONG, || {
        (!part_files(&cache).is_empty()).then_some(())
    });
    deployer.kill9();
    assert!(!cache.join("v2.0.0--app.tar.gz").exists());
    assert_eq!(current_file(&w.root, "VERSION").as_deref(), Some("v1.0.0"));

    // Restart without the stall: the leftover is cleaned; v2 downloads, and (being random bytes,
    // not an archive) is refused while v1 keeps serving.
    w.fake.set_cdn_stall(None);
    let deployer = w.deployer();
    wait_for("v2 refused after restart", LONG, || {
        deployer.log().contains("Deploy failed").then_some(())
    });
    assert_eq!(current_file(&w.root, "VERSION").as_deref(), Some("v1.0.0"));
    assert!(part_files(&cache).is_empty(), "{:?}", part_files(&cache));
    assert!(
        cache.join("v2.0.0--app.tar.gz").exists(),
        "the complete download is cached"
    );
}

#[test]
fn daemon_with_bad_config_exits_78() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("app.toml");
    std::fs::write(&cfg, "registry = \"file:///x\"\nintervall = 5\n").unwrap();
    for bin in [
        env!("CARGO_BIN_EXE_dewy-deployer"),
        env!("CARGO_BIN_EXE_dewy-watcher"),
    ] {
        let out = std::process::Command::new(bin)
            .args(["app", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{bin}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(":2:1") && err.contains("intervall"), "{err}");
    }
}

#[test]
fn proxy_starts_owns_its_name_and_stops() {
    let bus = PrivateBus::start();
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = tmp.path().join("web.toml");
    std::fs::write(&config, format!("mode = \"container\"\nport = [\"{port}\"]\n")).unwrap();
    let state = tmp.path().join("state");
    let mut proxy = Daemon::start(
        env!("CARGO_BIN_EXE_dewy-proxy"),
        &["web", "--config", config.to_str().unwrap(), "--bus", &bus.address],
        &[("STATE_DIRECTORY", state.to_str().unwrap())],
        tmp.path(),
        &tmp.path().join("proxy.log"),
    );
    wait_for("proxy ready", LONG, || {
        proxy.log().contains("Proxy ready").then_some(())
    });
    let out = std::process::Command::new("busctl")
        .args([
            "--address",
            &bus.address,
            "call",
            "io.dewy.Proxy.web",
            "/io/dewy/Proxy1",
            "io.dewy.Proxy1",
            "Status",
        ])
        .output();
    if let Ok(out) = out {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("backends"),
            "{out:?}"
        );
    }
    assert!(proxy.terminate(Duration::from_secs(10)).success());
}

#[test]
fn foreground_run_publishes_the_same_interfaces() {
    let w = World::new();
    w.fake.add_release(release("v1.0.0"));
    let env = w.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &["assets", "--config", w.config.to_str().unwrap(), "--name", "app"],
        &env,
        w.tmp.path(),
        &w.tmp.path().join("dewy.log"),
    );
    w.wait_live("v1.0.0");
    let (code, out, err) = w.dewy(&["status", "app"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("live:      v1.0.0"), "{out}");
    let (code, out, _) = w.dewy(&["check-now", "app"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("skipped v1.0.0"), "{out}");
    assert!(d.terminate(Duration::from_secs(20)).success());
}
