//! OpenTelemetry export against an OTLP/gRPC receiver built on the official protobuf
//! definitions (Python `opentelemetry-proto` + `grpcio`): the Prometheus metrics with the same
//! values, one span tree per deploy with a span per step (a signed release in assets mode, two
//! deploys in server mode), the events as log records linked to the deploy's trace, plaintext
//! (`--otlp-insecure`) and TLS (a test CA through `SSL_CERT_FILE`), and an untrusted or dead
//! collector that neither blocks the deploy nor the shutdown.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::otlp::{attr, OtlpReceiver};
use support::proc::Daemon;
use support::tls::TestCa;
use support::{current_file, scrape_metrics, tar_gz, wait_for, Workspace};

const LONG: Duration = Duration::from_secs(60);

fn site(version: &str) -> Vec<u8> {
    tar_gz(&[("VERSION", 0o644, version.as_bytes())])
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (the test needs minisign)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Publish `version` signed with a fresh minisign key; the `--verify` value that trusts it.
fn publish_signed(ws: &Workspace, version: &str) -> String {
    let dir = ws.root.join("../keys");
    std::fs::create_dir_all(&dir).expect("keys dir");
    let (public, secret) = (dir.join("k.pub"), dir.join("k.key"));
    run(Command::new("minisign")
        .arg("-G")
        .arg("-W")
        .arg("-p")
        .arg(&public)
        .arg("-s")
        .arg(&secret));
    let staged = ws.root.join("../staged");
    std::fs::create_dir_all(&staged).expect("staging dir");
    let artifact = staged.join("site.tar.gz");
    std::fs::write(&artifact, site(version)).expect("artifact");
    run(Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&secret)
        .arg("-m")
        .arg(&artifact)
        .arg("-x")
        .arg(staged.join("site.tar.gz.minisig")));
    std::fs::rename(&staged, ws.registry.join(version)).expect("publish");
    format!("minisign-file:{}", public.display())
}

/// `dewy assets` on `ws` exporting to `endpoint`, with both hooks.
fn start(ws: &Workspace, endpoint: &str, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
    let url = ws.registry_url();
    let mut args = vec![
        "assets",
        "--registry",
        &url,
        "--interval",
        "1",
        "--bus",
        "none",
        "--before-deploy-hook",
        "sleep 0.2",
        "--after-deploy-hook",
        "true",
        "--otlp-endpoint",
        endpoint,
    ];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "300"));
    Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &args,
        &env,
        &ws.root,
        &ws.root.join("../dewy.log"),
    )
}

/// The data points of metric `name` in the receiver's exports so far (the newest last).
fn points(rx: &OtlpReceiver, name: &str) -> Vec<Value> {
    rx.metrics()
        .into_iter()
        .filter(|m| m["name"] == name)
        .flat_map(|m| {
            ["sum", "gauge", "histogram"]
                .iter()
                .filter_map(|k| m[*k]["data_points"].as_array().cloned())
                .flatten()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn int_of(point: &Value) -> i64 {
    point["as_int"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1)
}

#[test]
fn insecure_export_of_metrics_deploy_traces_and_event_logs() {
    let ws = Workspace::new();
    let key = publish_signed(&ws, "v1.0.0");
    let rx = OtlpReceiver::start(&ws.root.join("../otlp"), None);
    let started = Instant::now();
    let mut d = start(&ws, &rx.endpoint(), &["--otlp-insecure", "--verify", &key], &[]);
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&ws.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    // The periodic export brings the deploy counter with the Prometheus endpoint's value.
    wait_for("dewy.deployments.total = 1 exported", LONG, || {
        points(&rx, "dewy.deployments.total")
            .last()
            .filter(|p| int_of(p) == 1)
            .map(|_| ())
    });
    let prom = scrape_metrics(&ws.root.join(".dewy/metrics.sock")).expect("prometheus endpoint");
    assert!(
        prom.contains("dewy_deployments_total{command=\"assets\"} 1\n"),
        "{prom}"
    );
    let status = d.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", d.log());

    let deployed = points(&rx, "dewy.deployments.total");
    let last = deployed.last().expect("point");
    assert_eq!(attr(&last["attributes"], "command").as_deref(), Some("assets"));
    let checks = points(&rx, "dewy.registry.checks.total");
    assert!(checks.last().is_some_and(|p| int_of(p) >= 1), "{checks:?}");
    assert_eq!(
        points(&rx, "dewy.deployment.errors.total").last().map(int_of),
        Some(0)
    );
    assert_eq!(points(&rx, "dewy.info").last().map(int_of), Some(1));
    assert_eq!(points(&rx, "dewy.paused").last().map(int_of), Some(0));
    let hist = points(&rx, "dewy.deployment.duration");
    let h = hist.last().expect("histogram point");
    assert_eq!(h["count"].as_str(), Some("1"), "{h}");
    assert_eq!(
        h["explicit_bounds"],
        serde_json::json!([1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0])
    );
    let metrics = rx.metrics();
    let duration = metrics
        .iter()
        .find(|m| m["name"] == "dewy.deployment.duration")
        .expect("duration metric");
    assert_eq!(duration["unit"], "s");
    let sum = metrics
        .iter()
        .find(|m| m["name"] == "dewy.deployments.total")
        .expect("counter");
    assert_eq!(sum["sum"]["is_monotonic"], true);
    assert_eq!(
        sum["sum"]["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    let resource = rx.resource("metrics", "resource_metrics");
    assert!(
        resource.contains(&("service.name".into(), "dewy".into())),
        "{resource:?}"
    );
    assert!(
        resource.contains(&("dewy.process".into(), "dewy".into())),
        "{resource:?}"
    );

    // One deploy, one trace: a root and its steps, all in the root's trace.
    let spans = rx.spans();
    let roots: Vec<&Value> = spans.iter().filter(|s| s["name"] == "dewy.deploy").collect();
    assert_eq!(roots.len(), 1, "{spans:#?}");
    let root = roots[0];
    assert!(root.get("parent_span_id").is_none(), "{root}");
    assert_eq!(
        attr(&root["attributes"], "dewy.version").as_deref(),
        Some("v1.0.0")
    );
    assert_eq!(root["status"]["code"], "STATUS_CODE_OK");
    let mut names: Vec<&str> = spans
        .iter()
        .filter(|s| s["parent_span_id"] == root["span_id"])
        .map(|s| {
            assert_eq!(s["trace_id"], root["trace_id"]);
            s["name"].as_str().unwrap_or_default()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "clean-up",
            "download",
            "extract",
            "hook.after",
            "hook.before",
            "switch",
            "verify"
        ],
        "{spans:#?}"
    );
    assert_eq!(spans.len(), 8, "{spans:#?}");
    let span_at = |name: &str, key: &str| {
        let s = spans.iter().find(|s| s["name"] == name).expect(name);
        s[key].as_str().and_then(|v| v.parse::<u64>().ok()).expect("time")
    };
    // The steps in the pipeline's order, inside the root.
    let order = [
        "download",
        "verify",
        "extract",
        "hook.before",
        "switch",
        "hook.after",
        "clean-up",
    ];
    for pair in order.windows(2) {
        assert!(
            span_at(pair[0], "end_time_unix_nano") <= span_at(pair[1], "start_time_unix_nano"),
            "{pair:?}: {spans:#?}"
        );
    }
    let root_start = root["start_time_unix_nano"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok());
    assert!(root_start.is_some_and(|t| t <= span_at("download", "start_time_unix_nano")));
    let span_ms = |s: &Value| {
        let t = |k: &str| s[k].as_str().and_then(|v| v.parse::<u64>().ok()).expect("time");
        (t("end_time_unix_nano") - t("start_time_unix_nano")) / 1_000_000
    };
    let before = spans
        .iter()
        .find(|s| s["name"] == "hook.before")
        .expect("hook span");
    assert!(span_ms(before) >= 200, "the before hook sleeps 0.2 s: {before}");
    assert!(span_ms(root) >= span_ms(before), "{root}");

    // The events as log records; the deploy's own are in its trace.
    let logs = rx.log_records();
    let by_event = |name: &str| logs.iter().find(|l| l["event_name"] == name);
    for name in [
        "started",
        "release-found",
        "downloaded",
        "deploy-started",
        "hook",
        "deployed",
        "stopped",
    ] {
        assert!(by_event(name).is_some(), "no {name} record in {logs:#?}");
    }
    let done = by_event("deployed").expect("deployed");
    assert!(
        done["body"]["string_value"]
            .as_str()
            .is_some_and(|b| b.starts_with("Deployed v1.0.0 in")),
        "{done}"
    );
    assert_eq!(done["severity_text"], "INFO");
    assert_eq!(done["trace_id"], root["trace_id"]);
    assert_eq!(done["span_id"], root["span_id"]);
    assert_eq!(
        attr(&done["attributes"], "dewy.version").as_deref(),
        Some("v1.0.0")
    );
    assert!(by_event("started").expect("started").get("trace_id").is_none());
    assert!(!logs.iter().any(|l| l["event_name"] == "check-succeeded"));
    eprintln!("insecure export test: {:?}", started.elapsed());
}

#[test]
fn tls_export_with_a_private_ca_and_a_dead_collector() {
    let ws = Workspace::new();
    ws.publish("v2.0.0", &site("v2.0.0"));
    let ca = TestCa::create(&ws.root.join("../tls"));
    let rx = OtlpReceiver::start(&ws.root.join("../otlp"), Some((&ca.cert, &ca.key)));
    let ca_file = ca.ca.display().to_string();
    let mut d = start(&ws, &rx.endpoint(), &[], &[("SSL_CERT_FILE", &ca_file)]);
    wait_for("v2.0.0 live", LONG, || {
        (current_file(&ws.root, "VERSION").as_deref() == Some("v2.0.0")).then_some(())
    });
    wait_for("metrics over TLS", LONG, || {
        points(&rx, "dewy.deployments.total")
            .last()
            .filter(|p| int_of(p) == 1)
            .map(|_| ())
    });
    assert!(d.terminate(Duration::from_secs(20)).success(), "{}", d.log());
    assert_eq!(
        rx.spans().iter().filter(|s| s["name"] == "dewy.deploy").count(),
        1
    );

    // The system roots do not trust the test CA: nothing is exported, the deploy goes on.
    let ws2 = Workspace::new();
    ws2.publish("v2.0.0", &site("v2.0.0"));
    let rx2 = OtlpReceiver::start(&ws2.root.join("../otlp"), Some((&ca.cert, &ca.key)));
    let mut d = start(&ws2, &rx2.endpoint(), &[], &[]);
    wait_for("v2.0.0 live without a trusted collector", LONG, || {
        (current_file(&ws2.root, "VERSION").as_deref() == Some("v2.0.0")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(800));
    assert!(d.terminate(Duration::from_secs(20)).success(), "{}", d.log());
    assert!(
        rx2.requests("metrics").is_empty(),
        "an untrusted collector got metrics"
    );

    // Nobody listens: the deploy is not held up and the stop stays bounded.
    let ws3 = Workspace::new();
    ws3.publish("v2.0.0", &site("v2.0.0"));
    let closed = support::free_port();
    let t0 = Instant::now();
    let mut d = start(&ws3, &format!("127.0.0.1:{closed}"), &["--otlp-insecure"], &[]);
    wait_for("v2.0.0 live with a dead collector", LONG, || {
        (current_file(&ws3.root, "VERSION").as_deref() == Some("v2.0.0")).then_some(())
    });
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    let t1 = Instant::now();
    assert!(d.terminate(Duration::from_secs(20)).success(), "{}", d.log());
    assert!(
        t1.elapsed() < Duration::from_secs(12),
        "stop took {:?}",
        t1.elapsed()
    );
}

/// (name, start ns, end ns) of the children of `root`, in start order.
fn steps_of(spans: &[Value], root: &Value) -> Vec<(String, u64, u64)> {
    let t = |s: &Value, k: &str| s[k].as_str().and_then(|v| v.parse::<u64>().ok()).expect("time");
    let mut out: Vec<_> = spans
        .iter()
        .filter(|s| s["parent_span_id"] == root["span_id"])
        .map(|s| {
            assert_eq!(s["trace_id"], root["trace_id"], "{s}");
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                t(s, "start_time_unix_nano"),
                t(s, "end_time_unix_nano"),
            )
        })
        .collect();
    out.sort_by_key(|c| c.1);
    out
}

#[test]
fn server_mode_traces_the_switch_and_the_restart_of_each_deploy() {
    use support::server::{publish, served, setup, start_env};
    let s = setup();
    publish(&s.registry, "v1.0.0", "plain");
    let rx = OtlpReceiver::start(&s.root.join("../otlp"), None);
    let endpoint = rx.endpoint();
    let mut d = start_env(
        &s,
        &[
            "--alive-delay",
            "1s",
            "--drain-time",
            "1",
            "--otlp-endpoint",
            &endpoint,
            "--otlp-insecure",
        ],
        "./current/app",
        &[("OTEL_METRIC_EXPORT_INTERVAL", "300")],
    );
    wait_for("v1.0.0 served", LONG, || served(s.port, "v1.0.0"));
    publish(&s.registry, "v1.1.0", "plain");
    wait_for("v1.1.0 served", LONG, || served(s.port, "v1.1.0"));
    wait_for("two deploys exported", LONG, || {
        points(&rx, "dewy.deployments.total")
            .last()
            .filter(|p| int_of(p) == 2)
            .map(|_| ())
    });
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());

    let restarts = points(&rx, "dewy.app.restarts.total");
    assert!(
        restarts
            .iter()
            .any(|p| attr(&p["attributes"], "reason").as_deref() == Some("deploy") && int_of(p) == 1),
        "{restarts:#?}"
    );
    let spans = rx.spans();
    let mut roots: Vec<&Value> = spans.iter().filter(|s| s["name"] == "dewy.deploy").collect();
    roots.sort_by_key(|r| r["start_time_unix_nano"].as_str().unwrap_or_default().to_string());
    assert_eq!(roots.len(), 2, "{spans:#?}");
    assert_ne!(roots[0]["trace_id"], roots[1]["trace_id"]);
    for (root, version) in roots.iter().zip(["v1.0.0", "v1.1.0"]) {
        assert_eq!(
            attr(&root["attributes"], "dewy.version").as_deref(),
            Some(version)
        );
        assert_eq!(root["status"]["code"], "STATUS_CODE_OK", "{root}");
        let steps = steps_of(&spans, root);
        let names: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            ["download", "extract", "switch", "restart", "clean-up"],
            "{version}: {steps:?}"
        );
        // Alive readiness: the new generation counts as ready after 1 s.
        let restart = &steps[3];
        assert!(restart.2 - restart.1 >= 1_000_000_000, "{version}: {restart:?}");
        for pair in steps.windows(2) {
            assert!(pair[0].2 <= pair[1].1, "{version}: {steps:?}");
        }
    }
    assert_eq!(
        attr(&roots[1]["attributes"], "dewy.previous").as_deref(),
        Some("v1.0.0")
    );
    // The server's own events are in the deploy's trace.
    let started = rx
        .log_records()
        .into_iter()
        .find(|l| l["event_name"] == "server-restarted")
        .expect("server-restarted record");
    assert_eq!(started["trace_id"], roots[1]["trace_id"], "{started}");
}
