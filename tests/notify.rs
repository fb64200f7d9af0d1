//! Notifications and metrics of a real `dewy assets` run against local receivers: Slack's API
//! (token, threading), webhooks (JSON body), mail through aiosmtpd, a receiver that hangs,
//! rate-limited repeated failures with `quiet=true`, and metrics over the unix socket.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::proc::Daemon;
use support::receiver::{Received, Receiver};
use support::{current_file, tar_gz, wait_for, Workspace};

const LONG: Duration = Duration::from_secs(60);

fn publish(s: &Workspace, version: &str) {
    s.publish(version, &tar_gz(&[("VERSION", 0o644, version.as_bytes())]));
}

fn start(s: &Workspace, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
    let url = s.registry_url();
    let mut args = vec!["assets", "--registry", &url, "--interval", "1", "--bus", "none"];
    args.extend_from_slice(extra);
    Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &args,
        env,
        &s.root,
        &s.root.join("../dewy.log"),
    )
}

fn events(reqs: &[Received]) -> Vec<String> {
    reqs.iter()
        .map(|r| r.json()["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn wait_event(rx: &Receiver, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, LONG, || {
        rx.to(path).iter().map(|r| r.json()).find(|j| pred(j))
    })
}

#[test]
fn slack_threads_one_deploy_and_webhook_gets_the_json_body() {
    let s = Workspace::new();
    let rx = Receiver::start();
    publish(&s, "v1.0.0");
    let api = format!("{}/api", rx.base());
    let webhook = format!("webhook+{}/hook", rx.base());
    let mut d = start(
        &s,
        &[
            "--notifier",
            "slack://deploys?thread=true&title=web",
            "--notifier",
            &webhook,
            "--after-deploy-hook",
            "echo hook-out",
        ],
        &[("SLACK_TOKEN", "xoxb-test-token"), ("SLACK_API_URL", &api)],
    );
    wait_event(&rx, "/hook", "deployed v1.0.0", |j| {
        j["event"] == "deployed" && j["version"] == "v1.0.0"
    });
    publish(&s, "v1.1.0");
    let deployed = wait_event(&rx, "/hook", "deployed v1.1.0", |j| {
        j["event"] == "deployed" && j["version"] == "v1.1.0"
    });
    assert_eq!(deployed["app"], "registry");
    assert_eq!(deployed["previous_version"], "v1.0.0");
    assert_eq!(deployed["result"], "deployed");
    assert!(deployed["error"].is_null(), "{deployed}");
    assert!(deployed["duration_ms"].as_u64().is_some(), "{deployed}");
    assert!(!deployed["host"].as_str().unwrap_or_default().is_empty());
    assert!(deployed["time"].as_str().unwrap_or_default().ends_with('Z'));
    assert!(deployed["message"]
        .as_str()
        .unwrap()
        .starts_with("Deployed v1.1.0 in "));
    let status = d.terminate(LONG);
    assert!(status.success(), "{}", d.log());

    let hooks = rx.to("/hook");
    assert!(hooks
        .iter()
        .all(|r| r.method == "POST" && r.header("content-type") == Some("application/json")));
    let kinds = events(&hooks);
    assert_eq!(kinds.first().map(String::as_str), Some("started"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("stopped"), "{kinds:?}");

    let slack = rx.to("/api/chat.postMessage");
    assert!(!slack.is_empty());
    for r in &slack {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("authorization"), Some("Bearer xoxb-test-token"));
        assert_eq!(r.json()["channel"], "deploys");
    }
    let msgs: Vec<Value> = slack.iter().map(Received::json).collect();
    let text = |j: &Value| j["text"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        text(&msgs[0]),
        format!(
            "Automatic shipping started by Dewy (v{}: assets)",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(msgs[0].get("thread_ts").is_none());
    assert_eq!(
        msgs.last().map(text).as_deref(),
        Some("Stop receiving by SIGTERM signal")
    );
    // The v1.1.0 deploy: its first message opens the thread, the rest reply in it.
    let first = msgs
        .iter()
        .position(|j| text(j) == "New release v1.1.0 found (v1.0.0 is live)")
        .unwrap_or_else(|| panic!("no release-found message in {msgs:#?}"));
    assert!(msgs[first].get("thread_ts").is_none());
    let parent = format!("1700000000.{:06}", first + 1);
    let thread: Vec<String> = msgs[first + 1..]
        .iter()
        .filter(|j| j["thread_ts"] == parent.as_str())
        .map(text)
        .collect();
    assert_eq!(thread[0], "Downloaded artifact for v1.1.0");
    assert_eq!(thread[1], "Deploying v1.1.0 (replacing v1.0.0)");
    assert!(
        thread[2].starts_with("After deploy hook succeeded in ")
            && thread[2].contains("`echo hook-out`")
            && thread[2].contains("hook-out\n"),
        "{thread:?}"
    );
    assert!(thread[3].starts_with("Deployed v1.1.0 in "), "{thread:?}");
    assert_eq!(thread.len(), 4, "{thread:?}");
    let footer = msgs[first]["attachments"][0]["footer"]
        .as_str()
        .unwrap_or_default();
    assert!(footer.starts_with("registry · web/"), "{footer}");
}

#[test]
fn hanging_receiver_does_not_slow_the_deploy_and_others_still_get_messages() {
    let s = Workspace::new();
    let rx = Receiver::start();
    publish(&s, "v1.0.0");
    let hang = format!("webhook+{}/hang?timeout=1s", rx.base());
    let ok = format!("webhook+{}/ok", rx.base());
    let started = Instant::now();
    let mut d = start(&s, &["--notifier", &hang, "--notifier", &ok], &[]);
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "deploy took {took:?}");
    wait_event(&rx, "/ok", "deployed on the working receiver", |j| {
        j["event"] == "deployed"
    });
    wait_for("a send timed out", LONG, || {
        d.log().contains("Notification timed out").then_some(())
    });
    let stop = Instant::now();
    assert!(d.terminate(LONG).success());
    assert!(
        stop.elapsed() < Duration::from_secs(8),
        "stopping waited {:?} for the hanging receiver",
        stop.elapsed()
    );
}

#[test]
fn repeated_failures_are_rate_limited_then_recovery_is_sent_and_quiet_gets_only_alerts() {
    let s = Workspace::new();
    let rx = Receiver::start();
    let all = format!("webhook+{}/all", rx.base());
    let quiet = format!("webhook+{}/quiet?quiet=true", rx.base());
    // An empty registry: every check fails the same way.
    let mut d = start(&s, &["--notifier", &all, "--notifier", &quiet], &[]);
    wait_for("three held-back repeats", LONG, || {
        (d.log().matches("notification held back").count() >= 3).then_some(())
    });
    publish(&s, "v1.0.0");
    wait_event(&rx, "/all", "deployed v1.0.0", |j| j["event"] == "deployed");
    wait_event(&rx, "/quiet", "recovered on the quiet receiver", |j| {
        j["event"] == "recovered"
    });
    assert!(d.terminate(LONG).success());

    let kinds = events(&rx.to("/all"));
    assert_eq!(
        kinds,
        [
            "started",
            "failed",
            "failure-digest",
            "recovered",
            "release-found",
            "downloaded",
            "deploy-started",
            "deployed",
            "stopped"
        ],
        "{kinds:?}"
    );
    let all = rx.to("/all");
    let failed = all[1].json();
    assert_eq!(failed["result"], "failed");
    let msg = failed["message"].as_str().unwrap();
    assert!(msg.starts_with("Registry check failed: "), "{msg}");
    assert!(msg.contains("\nNext step: dewy retries at every check"), "{msg}");
    let digest = all[2].json();
    assert!(
        digest["message"]
            .as_str()
            .unwrap()
            .starts_with("The same failure happened "),
        "{digest}"
    );
    assert_eq!(
        events(&rx.to("/quiet")),
        ["failed", "failure-digest", "recovered"]
    );
}

#[test]
fn metrics_are_served_on_the_unix_socket_after_a_deploy() {
    let s = Workspace::new();
    publish(&s, "v1.0.0");
    let mut d = start(&s, &[], &[]);
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    let sock = s.root.join(".dewy/metrics.sock");
    let text = wait_for("two checks counted", LONG, || {
        let t = support::scrape_metrics(&sock)?;
        t.contains("dewy_registry_checks_total 2\n").then_some(t)
    });
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("content-type: text/plain; version=0.0.4"), "{text}");
    for line in [
        "dewy_deployments_total{command=\"assets\"} 1\n",
        "dewy_deployment_errors_total{command=\"assets\"} 0\n",
        "dewy_registry_check_errors_total 0\n",
        "dewy_rollbacks_total{command=\"assets\"} 0\n",
        "dewy_deployment_duration_seconds_count{command=\"assets\"} 1\n",
        "dewy_deployment_duration_seconds_bucket{command=\"assets\",le=\"+Inf\"} 1\n",
        "# TYPE dewy_deployment_duration_seconds histogram\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let last = text
        .lines()
        .find_map(|l| l.strip_prefix("dewy_last_successful_check_timestamp_seconds "))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or_default();
    assert!((chrono::Utc::now().timestamp() - last).abs() < 60, "{text}");
    assert!(d.terminate(LONG).success());
}

/// aiosmtpd on a free port, storing mail in a Maildir; killed on drop.
struct Smtp {
    child: std::process::Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aiosmtpd(dir: &Path) -> Smtp {
    aiosmtpd_with(dir, "maildir", &[])
}

/// A private CA and a certificate it signed for 127.0.0.1, under `dir`: (ca, cert, key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let s = |p: PathBuf| p.to_str().expect("path").to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca, ca_key) = (s(p("ca.pem")), s(p("ca-key.pem")));
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                &ca_key,
                "-out",
                &ca,
                "-days",
                "2",
                "-subj",
                "/CN=dewy test CA",
            ],
        ]
        .concat(),
    );
    let (cert, key, csr, ext) = (
        s(p("smtp-cert.pem")),
        s(p("smtp-key.pem")),
        s(p("smtp.csr")),
        s(p("smtp.ext")),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"],
        ]
        .concat(),
    );
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").expect("ext file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    (ca.into(), cert.into(), key.into())
}

fn aiosmtpd_with(dir: &Path, name: &str, tls: &[&std::ffi::OsStr]) -> Smtp {
    let port = support::free_port();
    aiosmtpd_on(dir, name, tls, port)
}

fn aiosmtpd_on(dir: &Path, name: &str, tls: &[&std::ffi::OsStr], port: u16) -> Smtp {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "aiosmtpd is missing: run `pip install aiosmtpd` (or apt-get install python3-aiosmtpd); .ci/run installs it"
    );
    let maildir = dir.join(name);
    let child = std::process::Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(tls)
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting aiosmtpd");
    let smtp = Smtp { child, port, maildir };
    wait_for("aiosmtpd listening", LONG, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    smtp
}

fn mails(maildir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect()
}

#[test]
fn mail_is_delivered_over_plain_smtp_with_tls_false() {
    let s = Workspace::new();
    let smtp = aiosmtpd(s.root.parent().unwrap());
    publish(&s, "v1.0.0");
    let url = format!(
        "mail://127.0.0.1:{}/ops@example.com?from=dewy@example.com&subject=web%20deploys&tls=false",
        smtp.port
    );
    // The default tls=true requires STARTTLS: against this plain server it must fail, not
    // fall back to plain text.
    let strict = format!(
        "smtp://127.0.0.1:{}/strict@example.com?from=dewy@example.com&timeout=5s",
        smtp.port
    );
    let mut d = start(&s, &["--notifier", &url, "--notifier", &strict], &[]);
    let mail = wait_for("the deployed mail", LONG, || {
        mails(&smtp.maildir)
            .into_iter()
            .find(|m| m.contains("Deployed v1.0.0 in "))
    });
    wait_for("the STARTTLS notifier failing", LONG, || {
        let log = d.log();
        log.lines()
            .any(|l| {
                l.contains("Notification failure") && l.contains(&format!("mail://127.0.0.1:{}", smtp.port))
            })
            .then_some(())
    });
    assert!(d.terminate(LONG).success());
    assert!(
        !mails(&smtp.maildir)
            .iter()
            .any(|m| m.contains("strict@example.com")),
        "a mail went out without TLS"
    );
    assert!(mail.contains("From: dewy@example.com"), "{mail}");
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    assert!(mail.contains("Subject: web deploys"), "{mail}");
    assert!(mail.contains("App: registry"), "{mail}");
    assert!(mail.contains("Event: deployed"), "{mail}");
    let all = mails(&smtp.maildir);
    assert!(
        all.iter().any(|m| m.contains("Downloaded artifact for v1.0.0")),
        "{all:#?}"
    );
    assert!(
        all.iter().any(|m| m.contains("Stop receiving by SIGTERM signal")),
        "{all:#?}"
    );
}

/// STARTTLS (required by the server) and implicit TLS, with the relay's private CA given by
/// `ca-file=`; without the CA the certificate is refused and nothing is sent in clear.
#[test]
fn mail_is_delivered_over_starttls_and_implicit_tls_with_a_private_ca() {
    let s = Workspace::new();
    let dir = s.root.parent().unwrap();
    let (ca, cert, key) = certificate(dir);
    let starttls = aiosmtpd_with(
        dir,
        "starttls",
        &[
            "--tlscert".as_ref(),
            cert.as_os_str(),
            "--tlskey".as_ref(),
            key.as_os_str(),
        ],
    );
    let implicit = aiosmtpd_with(
        dir,
        "implicit",
        &[
            "--smtpscert".as_ref(),
            cert.as_os_str(),
            "--smtpskey".as_ref(),
            key.as_os_str(),
        ],
    );
    let other = aiosmtpd_with(
        dir,
        "untrusted",
        &[
            "--tlscert".as_ref(),
            cert.as_os_str(),
            "--tlskey".as_ref(),
            key.as_os_str(),
        ],
    );
    publish(&s, "v1.0.0");
    let ca = ca.display();
    let a = format!(
        "mail://127.0.0.1:{}/ops@example.com?from=dewy@example.com&ca-file={ca}",
        starttls.port
    );
    let b = format!(
        "smtp://127.0.0.1:{}/sec@example.com?from=dewy@example.com&tls=implicit&ca-file={ca}",
        implicit.port
    );
    let untrusted = format!(
        "mail://127.0.0.1:{}/nobody@example.com?from=dewy@example.com&timeout=5s",
        other.port
    );
    let mut d = start(
        &s,
        &["--notifier", &a, "--notifier", &b, "--notifier", &untrusted],
        &[],
    );
    for (smtp, to) in [(&starttls, "ops@example.com"), (&implicit, "sec@example.com")] {
        let start = Instant::now();
        let mail = loop {
            if let Some(m) = mails(&smtp.maildir)
                .into_iter()
                .find(|m| m.contains("Deployed v1.0.0 in "))
            {
                break m;
            }
            assert!(
                start.elapsed() < LONG,
                "no mail to {to} over TLS; dewy's log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(mail.contains(&format!("To: {to}")), "{mail}");
    }
    wait_for("the untrusted notifier failing", LONG, || {
        d.log()
            .lines()
            .any(|l| l.contains("Notification failure") && l.contains(&format!("127.0.0.1:{}", other.port)))
            .then_some(())
    });
    assert!(d.terminate(LONG).success());
    assert!(
        mails(&other.maildir).is_empty(),
        "a mail went to a relay whose certificate is not trusted"
    );
}

/// The events of one deploy from an empty host, then of one upgrade.
const TWO_DEPLOYS: [&str; 10] = [
    "started",
    "release-found",
    "downloaded",
    "deploy-started",
    "deployed",
    "release-found",
    "downloaded",
    "deploy-started",
    "deployed",
    "stopped",
];

fn wait_live(s: &Workspace, version: &str) {
    wait_for(&format!("{version} live"), LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some(version)).then_some(())
    });
}

/// True once `path` of `rx` accepted two `deployed` events.
fn both_deploys_arrived(rx: &Receiver, path: &str) -> bool {
    accepted(&rx.to(path)).iter().filter(|k| *k == "deployed").count() == 2
}

/// The events a receiver accepted (answered 200), and checks that none arrived twice.
fn accepted(reqs: &[Received]) -> Vec<String> {
    let ok: Vec<&Received> = reqs.iter().filter(|r| r.status == 200).collect();
    let mut bodies: Vec<&str> = ok.iter().map(|r| r.body.as_str()).collect();
    bodies.sort_unstable();
    bodies.dedup();
    assert_eq!(bodies.len(), ok.len(), "a message was accepted twice");
    events(&ok.into_iter().cloned().collect::<Vec<_>>())
}

#[test]
fn a_webhook_receiver_that_is_down_at_first_gets_every_event_once_in_order() {
    let s = Workspace::new();
    publish(&s, "v1.0.0");
    // A port nobody listens on yet: connections are refused until the receiver starts.
    let port = support::free_port();
    let hook = format!("webhook+http://127.0.0.1:{port}/hook");
    let mut d = start(&s, &["--notifier", &hook], &[]);
    // The deploy does not wait for the receiver; the messages wait for it.
    wait_live(&s, "v1.0.0");
    wait_for("a retried send", LONG, || {
        d.log().contains("Notification failure; retrying").then_some(())
    });
    let rx = Receiver::start_on(port);
    publish(&s, "v1.1.0");
    wait_live(&s, "v1.1.0");
    wait_for("both deploys on the receiver", LONG, || {
        both_deploys_arrived(&rx, "/hook").then_some(())
    });
    assert!(d.terminate(LONG).success(), "{}", d.log());

    assert_eq!(accepted(&rx.to("/hook")), TWO_DEPLOYS);
    let log = d.log();
    assert!(log.contains("Notification sent after retrying"), "{log}");
    assert!(!log.contains("message dropped"), "{log}");
}

#[test]
fn receivers_answering_503_and_429_with_retry_after_get_every_event_once_in_order() {
    let s = Workspace::new();
    let rx = Receiver::start();
    publish(&s, "v1.0.0");
    let busy = format!("webhook+{}/unavailable", rx.base());
    let limited = format!("webhook+{}/limited", rx.base());
    let mut d = start(&s, &["--notifier", &busy, "--notifier", &limited], &[]);
    wait_live(&s, "v1.0.0");
    publish(&s, "v1.1.0");
    wait_live(&s, "v1.1.0");
    wait_for("both deploys on both receivers", LONG, || {
        (both_deploys_arrived(&rx, "/unavailable") && both_deploys_arrived(&rx, "/limited")).then_some(())
    });
    assert!(d.terminate(LONG).success(), "{}", d.log());
    for (path, refused) in [("/unavailable", 3), ("/limited", 2)] {
        let reqs = rx.to(path);
        assert_eq!(accepted(&reqs), TWO_DEPLOYS, "{path}");
        // The refusals were all of the first message, retried until it went through.
        let kinds: Vec<String> = events(&reqs).into_iter().take(refused + 1).collect();
        assert_eq!(kinds, vec!["started"; refused + 1], "{path}");
        assert_eq!(reqs.iter().filter(|r| r.status != 200).count(), refused, "{path}");
    }
    let log = d.log();
    assert!(log.contains("webhook answered 503 Service Unavailable"), "{log}");
    assert!(log.contains("webhook answered 429 Too Many Requests"), "{log}");
    assert!(!log.contains("message dropped"), "{log}");
}

#[test]
fn mail_to_a_relay_that_is_down_at_first_is_retried_and_each_event_sent_once() {
    let s = Workspace::new();
    publish(&s, "v1.0.0");
    let port = support::free_port();
    let url = format!("mail://127.0.0.1:{port}/ops@example.com?from=dewy@example.com&tls=false");
    let mut d = start(&s, &["--notifier", &url], &[]);
    wait_live(&s, "v1.0.0");
    wait_for("a retried mail", LONG, || {
        d.log().contains("Notification failure; retrying").then_some(())
    });
    let smtp = aiosmtpd_on(s.root.parent().unwrap(), "maildir", &[], port);
    wait_for("the deployed mail", LONG, || {
        mails(&smtp.maildir)
            .iter()
            .any(|m| m.contains("Event: deployed"))
            .then_some(())
    });
    assert!(d.terminate(LONG).success(), "{}", d.log());
    let all = mails(&smtp.maildir);
    for kind in [
        "started",
        "release-found",
        "downloaded",
        "deploy-started",
        "deployed",
        "stopped",
    ] {
        let n = all
            .iter()
            .filter(|m| m.contains(&format!("Event: {kind}\n")))
            .count();
        assert_eq!(n, 1, "{kind}: {all:#?}");
    }
    assert_eq!(all.len(), 6, "{all:#?}");
}
