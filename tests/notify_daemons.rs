//! Notifications and metrics of the split daemons: `dewy-deployer` and `dewy-watcher` on a private
//! bus, configured by file (`notifier`, `metrics-listen`), under a `RUNTIME_DIRECTORY`.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use support::dbus::PrivateBus;
use support::proc::Daemon;
use support::receiver::Receiver;
use support::{current_file, tar_gz, wait_for};

const LONG: Duration = Duration::from_secs(60);

fn http_get(stream: &mut impl ReadWrite) -> String {
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("writing the request");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("reading the answer");
    out
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn scrape_unix(sock: &Path) -> Option<String> {
    let mut c = std::os::unix::net::UnixStream::connect(sock).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(http_get(&mut c))
}

#[test]
fn daemons_notify_and_serve_metrics_on_their_sockets_and_metrics_listen() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start();
    let rx = Receiver::start();
    let registry = tmp.path().join("registry");
    let root = tmp.path().join("root");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(registry.join("v1.0.0")).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        registry.join("v1.0.0/site.tar.gz"),
        tar_gz(&[("VERSION", 0o644, b"v1.0.0")]),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let config = tmp.path().join("app.toml");
    std::fs::write(
        &config,
        format!(
            "registry = \"file://{}?artifact=site.tar.gz\"\ninterval = 1\nroot = \"{}\"\n\
             notifier = [\"webhook+{}/hook\"]\nmetrics-listen = \"127.0.0.1:{port}\"\n",
            registry.display(),
            root.display(),
            rx.base()
        ),
    )
    .unwrap();
    let env = [
        ("DEWY_BUS", bus.address.as_str()),
        ("RUNTIME_DIRECTORY", run.to_str().unwrap()),
    ];
    let args = ["app", "--config", config.to_str().unwrap()];
    let start = |bin: &str, name: &str| {
        Daemon::start(
            bin,
            &args,
            &env,
            tmp.path(),
            &tmp.path().join(format!("{name}.log")),
        )
    };
    let mut deployer = start(env!("CARGO_BIN_EXE_dewy-deployer"), "deployer");
    wait_for("the deployer's metrics socket", LONG, || {
        scrape_unix(&run.join("metrics.sock"))
    });
    let mut watcher = start(env!("CARGO_BIN_EXE_dewy-watcher"), "watcher");
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    wait_for("the deployed webhook", LONG, || {
        rx.to("/hook")
            .iter()
            .any(|r| r.json()["event"] == "deployed")
            .then_some(())
    });

    let deployer_metrics = scrape_unix(&run.join("metrics.sock")).unwrap();
    assert!(
        deployer_metrics.contains("dewy_deployments_total{command=\"assets\"} 1\n"),
        "{deployer_metrics}"
    );
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics-listen");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let over_tcp = http_get(&mut tcp);
    assert!(
        over_tcp.contains("dewy_deployments_total{command=\"assets\"} 1\n"),
        "{over_tcp}"
    );
    let watcher_metrics = wait_for("checks in the watcher's metrics", LONG, || {
        let t = scrape_unix(&run.join("watcher-metrics.sock"))?;
        (!t.contains("dewy_registry_checks_total 0\n")).then_some(t)
    });
    assert!(
        watcher_metrics.contains("dewy_registry_check_errors_total 0\n"),
        "{watcher_metrics}"
    );

    assert!(watcher.terminate(LONG).success());
    assert!(deployer.terminate(LONG).success());
    let kinds: Vec<String> = rx
        .to("/hook")
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or_default().to_string())
        .collect();
    // Start and stop come from the deployer only, once each.
    assert_eq!(kinds.iter().filter(|k| *k == "started").count(), 1, "{kinds:?}");
    assert_eq!(kinds.first().map(String::as_str), Some("started"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("stopped"), "{kinds:?}");
    assert!(
        kinds.iter().any(|k| k == "release-found") && kinds.iter().any(|k| k == "downloaded"),
        "{kinds:?}"
    );
}
