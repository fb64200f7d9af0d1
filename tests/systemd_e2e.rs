//! The .deb in a booted systemd (Debian bookworm under systemd-nspawn): install, enable an app
//! in server mode, deploy and restart under load with no failed request, the journal, the D-Bus
//! policy, stop and purge. One case takes its releases from a `file://` directory with the ports
//! bound by dewy (kept in the fd store), the other from the GitHub test server with the ports
//! owned by `dewy@app.socket`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::github::{GithubFake, ReleaseSpec};
use support::load::Load;
use support::nspawn::{self, Bind, Machine};
use support::packages::{deb, hello_server, release};
use support::server::get;
use support::{free_port, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// Boot a machine with the .deb and `releases` bound in, and install the package.
fn boot_and_install(tmp: &Path, releases: &Path) -> Machine {
    let deb = deb();
    let debdir = tmp.join("deb");
    std::fs::create_dir_all(&debdir).unwrap();
    std::fs::copy(&deb, debdir.join("dewy.deb")).unwrap();
    let rootfs = nspawn::rootfs();
    let m = Machine::boot(
        &rootfs,
        &[
            Bind {
                host: &debdir,
                guest: "/mnt/deb",
                read_only: true,
            },
            Bind {
                host: releases,
                guest: "/srv/releases",
                read_only: true,
            },
        ],
        &tmp.join("nspawn.log"),
    );
    eprintln!("booted to a running systemd in {:?}", m.boot_time);
    let start = Instant::now();
    m.ok("dpkg -i /mnt/deb/dewy.deb");
    eprintln!("dpkg -i took {:?}", start.elapsed());
    // Installing starts nothing.
    let active = m.sh("systemctl list-units --no-legend 'dewy*'");
    assert!(String::from_utf8_lossy(&active.stdout).trim().is_empty());
    m
}

/// The exposure scores docs/security.md gives, by template (`dewy@.service` → 2.7).
fn documented_scores() -> Vec<(String, f64)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/security.md")).unwrap();
    doc.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let unit = cells.get(1)?.split('`').nth(1)?;
            Some((unit.to_string(), cells.get(2)?.parse().ok()?))
        })
        .collect()
}

/// Every installed unit passes `systemd-analyze verify` where the binaries are installed, and no
/// service's exposure score is worse than docs/security.md says.
fn verify_units(m: &Machine) {
    let mut units: Vec<String> = std::fs::read_dir(m.path("/usr/lib/systemd/system"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("dewy") && n.contains("@."))
        .collect();
    units.sort();
    assert!(units.len() >= 4, "units installed: {units:?}");
    // dewy@.socket and dewy-proxy@.socket take their addresses from a drop-in.
    for socket in ["dewy", "dewy-proxy"] {
        m.write(
            &format!("/etc/systemd/system/{socket}@verify.socket.d/listen.conf"),
            "[Socket]\nListenStream=127.0.0.1:1\n",
        );
    }
    m.ok("systemctl daemon-reload");
    let instances: Vec<String> = units.iter().map(|u| u.replace("@.", "@verify.")).collect();
    let out = m.sh(&format!(
        "systemd-analyze verify --man=no {} 2>&1",
        instances.join(" ")
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "verify {instances:?}: {text}"
    );
    for socket in ["dewy", "dewy-proxy"] {
        std::fs::remove_dir_all(m.path(&format!("/etc/systemd/system/{socket}@verify.socket.d"))).unwrap();
    }
    let documented = documented_scores();
    assert!(
        documented.len() >= 3,
        "no scores found in docs/security.md: {documented:?}"
    );
    for unit in units.iter().filter(|u| u.ends_with(".service")) {
        let out = m.ok(&format!(
            "systemd-analyze security --offline=true --no-pager {} | tail -1",
            unit.replace("@.", "@app.")
        ));
        eprintln!("{unit}: {}", out.trim());
        let score: f64 = out
            .split(':')
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no score in {out:?}"));
        if let Some((_, doc)) = documented.iter().find(|(u, _)| u == unit) {
            assert!(
                score <= *doc,
                "{unit} scores {score}, docs/security.md says {doc}"
            );
        }
    }
}

fn server_config(registry: &str, port_line: &str) -> String {
    format!(
        "registry = \"{registry}\"\nmode = \"server\"\ninterval = \"1s\"\n{port_line}\n\
         command = [\"./current/hello_server\"]\ndrain-time = \"10s\"\n"
    )
}

fn main_pid(m: &Machine, unit: &str) -> String {
    m.ok(&format!("systemctl show -p MainPID --value {unit}"))
        .trim()
        .to_string()
}

/// What `dewy status app` says serves: (live version, "pid N (generation G)").
fn serving(m: &Machine) -> (String, String) {
    let out = m.ok("dewy status app");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name:?} in:\n{out}"))
    };
    let live = field("live:");
    let version = live.split_whitespace().next().unwrap_or_default().to_string();
    (version, field("serving:"))
}

/// Run `script` (which restarts the deployer) under load: no request fails, the deployer is a
/// new process, and the app is the same process (in its own unit), still serving `version` as
/// the same generation.
fn restart_under_load(m: &Machine, port: u16, version: &str, script: &str) {
    let before = main_pid(m, "dewy@app.service");
    let load = Load::start(port);
    load.wait_served(version, 20);
    let app_before = serving(m);
    assert_eq!(app_before.0, version);
    let start = Instant::now();
    m.ok(script);
    let took = start.elapsed();
    // The new deployer answers once it has adopted the app.
    let app_after = wait_for("the new deployer's status", LONG, || {
        let now = main_pid(m, "dewy@app.service");
        if now == before || now == "0" {
            return None;
        }
        let o = m.sh("dewy status app");
        o.status.success().then(|| serving(m))
    });
    load.wait_served(version, 50);
    let (n, failed) = load.finish();
    eprintln!(
        "`{script}` took {took:?}; {n} requests during it, {} failed; app {} before, {} after",
        failed.len(),
        app_before.1,
        app_after.1
    );
    assert!(
        failed.is_empty(),
        "{} of {n} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(app_after, app_before, "the app was restarted by `{script}`");
}

/// Publish the next version under load: no request fails, and it gets served.
fn deploy_under_load(port: u16, from: &str, to: &str, publish: impl FnOnce()) {
    let load = Load::start(port);
    load.wait_served(from, 20);
    publish();
    load.wait_served(to, 50);
    let (n, failed) = load.finish();
    eprintln!("deploy {from} -> {to}: {n} requests, {} failed", failed.len());
    assert!(
        failed.is_empty(),
        "{} of {n} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}

fn no_process_left(m: &Machine) {
    wait_for("no dewy or app process", LONG, || {
        // The machine has no procps: read the process names from /proc.
        let o = m.sh("grep -E '^(dewy|hello_server)' /proc/[0-9]*/comm");
        (!o.status.success() && o.stdout.is_empty()).then_some(())
    });
}

fn skip() -> bool {
    if let Some(why) = nspawn::unavailable() {
        eprintln!("\n!!!!! SKIPPED: {why}; the systemd end-to-end tests did not run !!!!!\n");
        return true;
    }
    false
}

#[test]
fn deb_in_booted_systemd_file_registry_fd_store() {
    if skip() {
        return;
    }
    let _one = nspawn::ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let releases = tmp.path().join("releases");
    std::fs::create_dir_all(&releases).unwrap();
    let app = hello_server();
    let publish = |v: &str| {
        let t = releases.join(format!(".tmp-{v}"));
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("app.tar.gz"), release(&app, v)).unwrap();
        std::fs::rename(&t, releases.join(v)).unwrap();
    };
    publish("v1.0.0");
    let m = boot_and_install(tmp.path(), &releases);
    verify_units(&m);
    let port = free_port();
    let limits = "\n[app-properties]\nMemoryMax = \"256M\"\nTasksMax = 200\n";
    m.write(
        "/etc/dewy/app.toml",
        &(server_config(
            "file:///srv/releases?artifact=app.tar.gz",
            &format!("port = [\"127.0.0.1:{port}\"]"),
        ) + limits),
    );

    // (1) enable --now: v1 deployed and serving.
    let start = Instant::now();
    m.ok("systemctl enable --now dewy@app");
    wait_for("v1.0.0 served", LONG, || {
        (get(port, "/").ok()?.trim() == "v1.0.0").then_some(())
    });
    eprintln!("enable --now to serving v1.0.0: {:?}", start.elapsed());
    assert!(m.ok("systemctl is-active dewy-watcher@app").contains("active"));

    // (2) v2 published while clients keep asking.
    deploy_under_load(port, "v1.0.0", "v2.0.0", || publish("v2.0.0"));

    // The app runs in its own unit, which systemctl shows.
    let (_, serving_now) = serving(&m);
    let generation = serving_now
        .split("generation ")
        .nth(1)
        .and_then(|g| g.split(')').next())
        .unwrap_or_else(|| panic!("no generation in {serving_now:?}"))
        .to_string();
    let unit = format!("dewy-app-app-{generation}.scope");
    let st = m.sh(&format!("systemctl status --no-pager {unit}"));
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.contains("hello_server") && st.contains("active (running)"),
        "{unit}: {st}\n{}",
        String::from_utf8_lossy(
            &m.sh("journalctl -u dewy@app.service -p warning -o cat --output-fields=MESSAGE,ERROR --no-pager; systemctl list-units --all 'dewy-app-*'")
                .stdout
        )
    );
    // [app-properties] reached the unit.
    let limits = m.ok(&format!(
        "systemctl show -p MemoryMax -p TasksMax -p KillSignal {unit}"
    ));
    for want in ["MemoryMax=268435456", "TasksMax=200", "KillSignal=15"] {
        assert!(limits.lines().any(|l| l == want), "{want} not in:\n{limits}");
    }

    // (3) the deployer restarts, is killed outright, is upgraded: the app is neither stopped nor
    // restarted (it runs in its own unit, outside the deployer's cgroup) and the next deployer
    // adopts it; the ports stay open (fd store).
    restart_under_load(&m, port, "v2.0.0", "systemctl restart dewy@app.service");
    // Killed outright: systemd starts the deployer again (Restart=on-failure).
    restart_under_load(
        &m,
        port,
        "v2.0.0",
        "systemctl kill --kill-whom=main --signal=SIGKILL dewy@app.service",
    );
    // A second build of the package with a higher version: its postinst try-restarts the
    // running daemons.
    m.ok(
        "rm -rf /tmp/upgrade && dpkg-deb -R /mnt/deb/dewy.deb /tmp/upgrade && \
         sed -i 's/^Version: .*/Version: 99.0.0-1/' /tmp/upgrade/DEBIAN/control && \
         dpkg-deb -b /tmp/upgrade /tmp/dewy-upgrade.deb >/dev/null",
    );
    restart_under_load(
        &m,
        port,
        "v2.0.0",
        "apt-get install -y -q /tmp/dewy-upgrade.deb >/dev/null 2>&1",
    );
    assert!(m.ok("dpkg-query -W -f '${Version}' dewy").contains("99.0.0-1"));
    // After all that, a deploy still overlaps generations with no failed request.
    deploy_under_load(port, "v2.0.0", "v3.0.0", || publish("v3.0.0"));

    // A port moved in the config: after a restart the new one serves, and the old one's stored
    // socket is dropped from the fd store (it stays closed across a further restart).
    let old_port = port;
    let port = free_port();
    m.write(
        "/etc/dewy/app.toml",
        &server_config(
            "file:///srv/releases?artifact=app.tar.gz",
            &format!("port = [\"127.0.0.1:{port}\"]"),
        ),
    );
    m.ok("systemctl restart dewy@app.service");
    wait_for("v3.0.0 served on the new port", LONG, || {
        (get(port, "/").ok()?.trim() == "v3.0.0").then_some(())
    });
    m.ok("systemctl restart dewy@app.service");
    assert_eq!(get(port, "/").expect("the new port").trim(), "v3.0.0");
    let refused = std::net::TcpStream::connect(("127.0.0.1", old_port)).map_err(|e| e.kind());
    assert_eq!(
        refused.err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "the old port is still open"
    );

    // (4) the journal: deploy events with their fields, the app's own output; the STATUS= line.
    let entries = m.journal("dewy@app.service");
    let deployed = entries
        .iter()
        .find(|e| e["MESSAGE"] == "Deploy completed" && e["DEWY_VERSION"] == "v2.0.0")
        .unwrap_or_else(|| panic!("no `Deploy completed` for v2.0.0 in {} entries", entries.len()));
    assert_eq!(deployed["MESSAGE_ID"], "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e62");
    assert_eq!(deployed["DEWY_APP"], "app");
    assert_eq!(deployed["SYSLOG_IDENTIFIER"], "dewy-deployer");
    assert!(entries
        .iter()
        .any(|e| e["MESSAGE"] == "Cached artifact" && e["MESSAGE_ID"] == "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e61"));
    // The app's output is filed under its own unit (systemd-cat connects from inside it).
    let app_entries = m.journal(&unit);
    assert!(
        app_entries.iter().any(|e| e["SYSLOG_IDENTIFIER"] == "app"
            && e["MESSAGE"]
                .as_str()
                .is_some_and(|s| s.contains("hello_server v2.0.0 serving"))),
        "no output of the app (SYSLOG_IDENTIFIER=app) under {unit}: {} entries",
        app_entries.len()
    );
    assert!(
        entries
            .iter()
            .any(|e| e["MESSAGE"] == "Using the listening sockets passed by systemd"),
        "the restarted deployer did not get its sockets back from the fd store"
    );
    let status = m.sh("systemctl status --no-pager dewy@app");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("Status: \"v3.0.0 live; idle; pid "), "{status}");

    // (5) the D-Bus policy: an unprivileged user may read status but not deploy.
    m.ok("useradd --no-create-home tester");
    let denied = m.sh(
        "runuser -u tester -- busctl --system call io.dewy.Deployer.app /io/dewy/Deployer1 \
         io.dewy.Deployer1 Deploy s v1.0.0 2>&1",
    );
    let text = String::from_utf8_lossy(&denied.stdout);
    assert!(
        !denied.status.success() && text.contains("ccess denied"),
        "{text}"
    );
    let st = m.ok("runuser -u tester -- dewy status app");
    assert!(st.contains("v3.0.0"), "{st}");
    assert_eq!(get(port, "/").unwrap().trim(), "v3.0.0");

    // (6) stop leaves nothing running; purge removes all but the administrator's config.
    m.ok("systemctl stop dewy@app");
    no_process_left(&m);
    assert!(get(port, "/").is_err(), "the port is still open after stop");
    m.ok("dpkg --purge dewy");
    for gone in [
        "/usr/bin/dewy",
        "/usr/bin/dewy-deployer",
        "/usr/lib/systemd/system/dewy@.service",
        "/usr/share/dbus-1/system.d/io.dewy.conf",
        "/var/lib/dewy",
        "/var/cache/dewy",
        "/etc/systemd/system/multi-user.target.wants/dewy@app.service",
    ] {
        assert!(
            !m.path(gone).exists() && m.path(gone).symlink_metadata().is_err(),
            "{gone} is left after purge"
        );
    }
    assert!(
        m.path("/etc/dewy/app.toml").exists(),
        "the administrator's config was removed"
    );
}

#[test]
fn deb_in_booted_systemd_github_socket_unit() {
    if skip() {
        return;
    }
    let _one = nspawn::ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("none");
    std::fs::create_dir_all(&empty).unwrap();
    let app = hello_server();
    let gh = GithubFake::start_blocking();
    gh.add_release(ReleaseSpec::new("v1.0.0").with_asset("app.tar.gz", release(&app, "v1.0.0")));
    let m = boot_and_install(tmp.path(), &empty);
    let port = free_port();
    m.write(
        "/etc/dewy/app.toml",
        &server_config(&format!("{}?artifact=app.tar.gz", gh.registry_url()), ""),
    );
    let env = format!("[Service]\nEnvironment=GITHUB_API_URL={}\n", gh.api_url());
    m.write("/etc/systemd/system/dewy@app.service.d/github.conf", &env);
    m.write("/etc/systemd/system/dewy-watcher@app.service.d/github.conf", &env);
    m.write(
        "/etc/systemd/system/dewy@app.socket.d/listen.conf",
        &format!("[Socket]\nListenStream=127.0.0.1:{port}\n"),
    );
    m.ok("systemctl daemon-reload");
    let start = Instant::now();
    m.ok("systemctl enable --now dewy@app.socket dewy@app.service");
    wait_for("v1.0.0 served", LONG, || {
        (get(port, "/").ok()?.trim() == "v1.0.0").then_some(())
    });
    eprintln!(
        "enable --now (socket unit) to serving v1.0.0: {:?}",
        start.elapsed()
    );

    deploy_under_load(port, "v1.0.0", "v2.0.0", || {
        gh.add_release(ReleaseSpec::new("v2.0.0").with_asset("app.tar.gz", release(&app, "v2.0.0")))
    });
    restart_under_load(&m, port, "v2.0.0", "systemctl restart dewy@app.service");
    let entries = m.journal("dewy@app.service");
    assert!(
        entries.iter().any(
            |e| e["MESSAGE"] == "Using the listening sockets passed by systemd"
                && e["NAMES"].as_str().is_some_and(|n| n.contains("dewy@app.socket"))
        ),
        "the deployer did not take the socket unit's socket"
    );

    // Stopped deployer: the socket unit keeps the port, and a connection starts it again.
    m.ok("systemctl stop dewy@app.service");
    no_process_left(&m);
    assert_eq!(
        get(port, "/").expect("served through socket activation").trim(),
        "v2.0.0"
    );
    m.ok("systemctl stop dewy@app.socket dewy@app.service");
    no_process_left(&m);
    m.ok("dpkg --purge dewy");
    assert!(!m.path("/usr/lib/systemd/system/dewy@.socket").exists());
}

/// `wrk` running against `port` until [`Wrk::finish`].
struct Wrk(std::process::Child);

impl Wrk {
    fn start(port: u16, connections: u32) -> Wrk {
        assert!(
            support::have("wrk"),
            "wrk is missing: apt-get install wrk (.ci/run does)"
        );
        let child = std::process::Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{connections}"),
                "-d600s",
                "--timeout",
                "20s",
                &format!("http://127.0.0.1:{port}/"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting wrk");
        Wrk(child)
    }

    /// Stop wrk (SIGINT prints its summary); (requests, socket errors line, non-2xx count).
    fn finish(self) -> (u64, String, u64) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let out = self.0.wait_with_output().expect("wrk output");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            text.contains(" requests in"),
            "no request count in wrk's output: {text}"
        );
        let w = support::load::parse_wrk(&text);
        let (requests, errors, non_2xx) = (w.requests, w.socket_errors_line, w.non_2xx);
        (requests, errors, non_2xx)
    }
}

/// The drain summaries `dewy-proxy@web` logged: (after a response, idle at the grace, cut).
fn drain_ends(m: &Machine) -> Vec<(u64, u64, u64)> {
    m.journal("dewy-proxy@web.service")
        .iter()
        .filter(|e| {
            e["MESSAGE"]
                .as_str()
                .is_some_and(|s| s.starts_with("Drain finished"))
        })
        .map(|e| {
            let n = |k: &str| e[k].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
            (
                n("CLOSED_AFTER_RESPONSE"),
                n("CLOSED_IDLE"),
                n("CUT_AT_DRAIN_TIME"),
            )
        })
        .collect()
}

#[test]
fn deb_in_booted_systemd_proxy_restarts_keep_alive_clients_lose_nothing() {
    if skip() {
        return;
    }
    let _one = nspawn::ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let releases = tmp.path().join("releases");
    std::fs::create_dir_all(&releases).unwrap();
    // The backend runs on the host (the machine shares its network): a keep-alive HTTP/1.1
    // server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = rt.block_on(support::backend::http("a"));
    let m = boot_and_install(tmp.path(), &releases);
    let port = free_port();
    m.write(
        "/etc/dewy/web.toml",
        &format!(
            "mode = \"container\"\nregistry = \"img://127.0.0.1:1/none\"\n\
             port = [\"127.0.0.1:{port}:80\"]\ndrain-time = \"20s\"\n"
        ),
    );
    m.write(
        "/etc/systemd/system/dewy-proxy@web.socket.d/ports.conf",
        &format!("[Socket]\nListenStream=127.0.0.1:{port}\n"),
    );
    m.ok("systemctl daemon-reload && systemctl enable --now dewy-proxy@web.socket dewy-proxy@web.service");
    wait_for("dewy-proxy@web active", LONG, || {
        m.sh("systemctl is-active --quiet dewy-proxy@web.service")
            .status
            .success()
            .then_some(())
    });
    m.ok(&format!(
        "busctl call io.dewy.Proxy.web /io/dewy/Proxy1 io.dewy.Proxy1 SetBackends qas {port} 1 {}",
        backend.addr
    ));
    wait_for("the backend answers through the proxy", LONG, || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        (out.starts_with("HTTP/1.1 200") && out.contains("\"id\":\"a\"")).then_some(())
    });

    let pool = support::load::KeepAlive::start(port, 8);
    let wrk = Wrk::start(port, 16);
    pool.wait_answered(200);
    let restarts = 20;
    let started = Instant::now();
    for i in 0..restarts {
        // systemd allows 5 starts in 10 s (StartLimitBurst): one restart every 2.5 s at most.
        let this = Instant::now();
        let before = main_pid(&m, "dewy-proxy@web.service");
        m.ok("systemctl restart dewy-proxy@web.service");
        assert_ne!(main_pid(&m, "dewy-proxy@web.service"), before, "restart {i}");
        pool.wait_answered(100);
        std::thread::sleep(Duration::from_millis(2500).saturating_sub(this.elapsed()));
    }
    eprintln!(
        "{restarts} proxy restarts under keep-alive load in {:?}",
        started.elapsed()
    );
    // A package upgrade (the same .deb again) restarts the proxy the same way.
    let before = main_pid(&m, "dewy-proxy@web.service");
    m.ok("dpkg -i /mnt/deb/dewy.deb");
    assert_ne!(
        main_pid(&m, "dewy-proxy@web.service"),
        before,
        "the upgrade restarted the proxy"
    );
    pool.wait_answered(100);
    let stats = pool.finish();
    let (wrk_requests, wrk_errors, non_2xx) = wrk.finish();
    let ends = drain_ends(&m);
    let sum = ends
        .iter()
        .fold((0, 0, 0), |a, e| (a.0 + e.0, a.1 + e.1, a.2 + e.2));
    eprintln!(
        "keep-alive pool (8 connections): {} answered, {} failed, {} told to close; \
         wrk (16 connections): {wrk_requests} requests, {non_2xx} non-2xx, {wrk_errors:?}; \
         {} drains: {} closed after a response, {} closed idle, {} cut",
        stats.answered,
        stats.failed.len(),
        stats.told_to_close,
        ends.len(),
        sum.0,
        sum.1,
        sum.2
    );
    assert!(
        stats.failed.is_empty(),
        "keep-alive requests failed: {:?}",
        stats.failed
    );
    assert!(
        stats.told_to_close >= restarts,
        "the clients were told to close only {} times in {restarts} restarts",
        stats.told_to_close
    );
    assert!(
        wrk_errors.is_empty(),
        "wrk saw socket errors across the restarts: {wrk_errors}"
    );
    assert_eq!(non_2xx, 0, "wrk got non-2xx answers");
    assert!(ends.len() > restarts, "drain summaries logged: {ends:?}");
    assert_eq!(sum.2, 0, "connections cut at drain-time: {ends:?}");
    m.ok("systemctl disable --now dewy-proxy@web.socket dewy-proxy@web.service");
    drop(rt);
}
