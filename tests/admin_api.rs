//! The admin API of a foreground `dewy assets --admin-port P` as Go Dewy's tools see it: the first
//! free port of ten, `/api/status`, `/api/containers`, `/metrics`, 405 for other methods, and
//! `dewy container list --admin-port` finding the instance past a busy port.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::proc::{dewy, Daemon};
use support::{current_file, tar_gz, wait_for, Workspace};

const LONG: Duration = Duration::from_secs(60);

/// One HTTP/1.1 exchange: (status, headers, body).
fn http(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin API");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// Two consecutive free ports, the first held by a listener that never answers.
fn busy_then_free() -> (TcpListener, u16) {
    for _ in 0..50 {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        if port < 65535 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return (busy, port);
        }
    }
    panic!("no two consecutive free ports");
}

#[test]
fn status_containers_and_metrics_on_the_first_free_port() {
    let s = Workspace::new();
    s.publish(
        "v1.0.0",
        &tar_gz(&[("VERSION", 0o644, b"v1.0.0"), ("index.html", 0o644, b"hi\n")]),
    );
    let (busy, port) = busy_then_free();
    let first = port.to_string();
    let url = s.registry_url();
    let args = [
        "assets",
        "--registry",
        &url,
        "--interval",
        "1",
        "--bus",
        "none",
        "--admin-port",
        &first,
    ];
    let log = s.root.join("../dewy.log");
    let mut d = Daemon::start(env!("CARGO_BIN_EXE_dewy"), &args, &[], &s.root, &log);
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    let served = port + 1;
    wait_for("the admin API", LONG, || {
        TcpStream::connect(("127.0.0.1", served)).ok().map(|_| ())
    });

    let (code, head, body) = http(served, "GET", "/api/status");
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON status");
    assert_eq!(v["command"], 1, "Go Dewy's code of assets: {v}");
    assert_eq!(v["mode"], "assets");
    assert_eq!(v["current_version"], "v1.0.0");
    assert_eq!(v["proxy_backends"], 0);
    assert_eq!(v["is_running"], false);
    assert_eq!(v["registry"], url.as_str());
    assert!(v["name"].as_str().is_some_and(|n| !n.is_empty()), "{v}");
    assert!(v["dewy_version"].is_string() && v["activity"].is_string(), "{v}");

    let (code, _, body) = http(served, "GET", "/api/containers");
    assert_eq!((code, body.trim()), (200, r#"{"containers":null}"#));

    let (code, head, body) = http(served, "GET", "/metrics");
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(
        body.contains("dewy_deployments_total{command=\"assets\"} 1"),
        "{body}"
    );

    let (code, head, _) = http(served, "POST", "/api/status");
    assert_eq!(code, 405);
    assert!(head.contains("allow: get, head"), "{head}");
    assert_eq!(http(served, "GET", "/api/nothing").0, 404);

    // Go Dewy's client: the held port never answers, the next one does.
    let (code, out, err) = dewy(&["container", "list", "--admin-port", &first], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("Connected to admin API on port {served}")),
        "{out}"
    );
    assert!(out.contains("No containers found."), "{out}");
    drop(busy);
    d.kill9();
    assert!(
        d.log().contains("Admin API port bound successfully"),
        "{}",
        d.log()
    );
}
