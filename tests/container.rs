//! Container mode against a real Docker engine and a private registry: first deploy, rolling
//! update under load, rollback on a failed health check, pull and auth failures, adoption after
//! a restart of the deployer, several ports, image clean-up and refused run options.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dewy::config::{self, Layer};
use dewy::deploy::DeployResult;
use dewy::registry::Release;
use support::container::{get, open, release, settings, start_proxy, unique, Cleanup};
use support::docker::{self, app_containers, Registry, TestImage};
use support::free_port;
use support::proc::Daemon;

fn inspect(id: &str, format: &str) -> String {
    docker::docker(&["inspect", "--format", format, id])
}

/// `dewy container` in the foreground for `app`, 2 replicas watching `reg` every second and
/// serving on 127.0.0.1:`port`, root and log in `dir`; `extra` flags and `env` on top.
fn watch_registry(
    reg: &Registry,
    app: &str,
    dir: &std::path::Path,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Daemon {
    let registry = format!("img://{}/{app}", reg.host);
    let root = dir.display().to_string();
    let listen = format!("127.0.0.1:{port}:8080");
    let mut args = vec![
        "container",
        "--name",
        app,
        "--registry",
        &registry,
        "--root",
        &root,
        "--port",
        &listen,
        "--replicas",
        "2",
        "--health-path",
        "/health",
        "--interval",
        "1s",
        "--bus",
        "none",
    ];
    args.extend_from_slice(extra);
    Daemon::start(env!("CARGO_BIN_EXE_dewy"), &args, env, dir, &dir.join("dewy.log"))
}

fn deployed(r: &DeployResult) -> bool {
    matches!(r, DeployResult::Deployed { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_deploy_runs_replicas_with_labels_loopback_ports_and_user() {
    let reg = Registry::start();
    let app = unique("first");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    // No container port: it comes from the image's EXPOSE.
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}")], |f| {
        f.replicas = Some(3);
        f.run_options = Some(
            [
                "-e",
                "GREETING=hi",
                "--memory",
                "64m",
                "-l",
                "team=web",
                "--restart",
                "on-failure:2",
            ]
            .map(String::from)
            .to_vec(),
        );
    });
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    d.start_app().await;
    let r = d.offer(release("v1.0.0", &v1)).await;
    assert!(deployed(&r), "{r:?}");
    let ids = app_containers(&app);
    assert_eq!(ids.len(), 3, "{ids:?}");
    let mut replicas: Vec<String> = Vec::new();
    for id in &ids {
        assert_eq!(inspect(id, "{{index .Config.Labels \"dewy.managed\"}}"), "true");
        assert_eq!(inspect(id, "{{index .Config.Labels \"dewy.app\"}}"), app);
        assert_eq!(inspect(id, "{{index .Config.Labels \"dewy.version\"}}"), "v1.0.0");
        assert!(!inspect(id, "{{index .Config.Labels \"dewy.deployed_at\"}}").is_empty());
        replicas.push(inspect(id, "{{index .Config.Labels \"dewy.replica\"}}"));
        assert_eq!(inspect(id, "{{index .Config.Labels \"team\"}}"), "web");
        assert!(inspect(id, "{{json .Config.Env}}").contains("GREETING=hi"));
        assert_eq!(inspect(id, "{{.HostConfig.Memory}}"), (64 << 20).to_string());
        assert_eq!(
            inspect(
                id,
                "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
            ),
            "on-failure:2"
        );
        let bindings = inspect(id, "{{json .HostConfig.PortBindings}}");
        assert!(
            bindings.contains("\"8080/tcp\"") && bindings.contains("\"HostIp\":\"127.0.0.1\""),
            "{bindings}"
        );
        let published = inspect(id, "{{json .NetworkSettings.Ports}}");
        assert!(
            !published.contains("0.0.0.0"),
            "published beyond loopback: {published}"
        );
        assert_eq!(
            inspect(id, "{{.Config.User}}"),
            format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid())
        );
    }
    replicas.sort();
    assert_eq!(replicas, ["1", "2", "3"]);
    assert_eq!(proxy.backends()[&port].len(), 3);
    for _ in 0..6 {
        assert_eq!(get(port, "/").unwrap(), "v1.0.0");
    }
    let status = d.status();
    assert_eq!(status.replicas.len(), 3);
    assert_eq!(status.live.as_ref().map(|l| l.version.as_str()), Some("v1.0.0"));
    // The same release again is skipped while its replicas run.
    let again = d.offer(release("v1.0.0", &v1)).await;
    assert_eq!(again.kind(), "skipped", "{again:?}");
    let listed = d.containers().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .all(|(_, upstream, _, v)| upstream.starts_with("127.0.0.1:") && v == "v1.0.0"));
    d.stop_app().await;
    assert!(
        app_containers(&app).is_empty(),
        "on-stop = remove left containers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_through_the_proxy_drops_no_request() {
    let reg = Registry::start();
    let app = unique("rolling");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let v2 = reg.push(&app, &TestImage::new("v2.0.0"));
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |f| {
        f.replicas = Some(3)
    });
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    assert!(deployed(&d.offer(release("v1.0.0", &v1)).await));
    let old = app_containers(&app);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new((0usize, 0usize, 0usize, Vec::<String>::new())));
    let mut clients = Vec::new();
    for n in 0..3 {
        let (stop, seen) = (stop.clone(), seen.clone());
        clients.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let path = if n == 0 { "/slow" } else { "/" };
                let r = get(port, path);
                let mut s = seen.lock().unwrap();
                match r {
                    Ok(v) if v == "v1.0.0" => s.0 += 1,
                    Ok(v) if v == "v2.0.0" => s.1 += 1,
                    Ok(v) => s.3.push(format!("unexpected {v}")),
                    Err(e) => {
                        s.2 += 1;
                        s.3.push(e)
                    }
                }
            }
        }));
    }
    support::wait_for("traffic on v1", Duration::from_secs(30), || {
        (seen.lock().unwrap().0 > 20).then_some(())
    });
    let started = Instant::now();
    let r = d.offer(release("v2.0.0", &v2)).await;
    let took = started.elapsed();
    assert!(deployed(&r), "{r:?}");
    let after = seen.lock().unwrap().1;
    support::wait_for("traffic on v2", Duration::from_secs(30), || {
        (seen.lock().unwrap().1 > after + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let s = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "rolling update of 3 replicas: {took:?}; requests v1={} v2={} failed={}",
        s.0, s.1, s.2
    );
    assert_eq!(
        s.2,
        0,
        "failed requests during the rolling update: {:?}",
        &s.3[..s.3.len().min(5)]
    );
    assert!(s.3.is_empty(), "{:?}", s.3);
    let errors: u64 = proxy.status().iter().map(|p| p.errors).sum();
    assert_eq!(errors, 0, "the proxy saw failed requests");
    let now = app_containers(&app);
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now.iter().all(|id| !old.contains(id)), "old containers left");
    assert!(now
        .iter()
        .all(|id| inspect(id, "{{index .Config.Labels \"dewy.version\"}}") == "v2.0.0"));
    assert_eq!(d.status().previous.map(|p| p.version), Some("v1.0.0".into()));

    // `dewy rollback`: v1 comes back the same rolling way and v2 is marked bad, with the
    // registry gone (the engine still has v1's image).
    drop(reg);
    let r = d.rollback().await;
    assert!(deployed(&r), "{r:?}");
    assert_eq!(get(port, "/").unwrap(), "v1.0.0");
    let now = app_containers(&app);
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now
        .iter()
        .all(|id| inspect(id, "{{index .Config.Labels \"dewy.version\"}}") == "v1.0.0"));
    let status = d.status();
    assert_eq!(status.live.map(|l| l.version), Some("v1.0.0".into()));
    assert!(
        status.bad.iter().any(|b| b.version == "v2.0.0"),
        "{:?}",
        status.bad
    );
}

/// Keep-alive clients (a pool of 8 persistent connections) through the proxy across 20 rolling
/// updates: every request is answered, none fails because a replica left the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_rolling_updates_under_keep_alive_load_drop_no_request() {
    let reg = Registry::start();
    let app = unique("keepalive");
    let _c = Cleanup::new(&app);
    let images = [
        reg.push(&app, &TestImage::new("v1.0.0")),
        reg.push(&app, &TestImage::new("v2.0.0")),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |f| {
        f.replicas = Some(2)
    });
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    assert!(deployed(&d.offer(release("v1.0.0", &images[0])).await));
    let pool = support::load::KeepAlive::start(port, 8);
    let updates = 20;
    let started = Instant::now();
    for i in 0..updates {
        let (version, refs) = if i % 2 == 0 {
            ("v2.0.0", &images[1])
        } else {
            ("v1.0.0", &images[0])
        };
        let r = d.offer(release(version, refs)).await;
        assert!(deployed(&r), "update {i} to {version}: {r:?}");
        tokio::task::block_in_place(|| pool.wait_answered(50));
    }
    let took = started.elapsed();
    let stats = tokio::task::block_in_place(|| pool.finish());
    let errors: u64 = proxy.status().iter().map(|p| p.errors).sum();
    eprintln!(
        "{updates} rolling updates of 2 replicas under keep-alive load in {took:?}: {} answered, {} failed, proxy errors {errors}",
        stats.answered,
        stats.failed.len()
    );
    assert!(
        stats.failed.is_empty(),
        "failed: {:?}",
        &stats.failed[..stats.failed.len().min(5)]
    );
    assert_eq!(errors, 0, "the proxy saw failed requests");
}

/// The deploy steps a deployer reports (what the OpenTelemetry export makes spans of).
#[derive(Default)]
struct Steps(Mutex<Vec<dewy::notify::Step>>);

impl dewy::notify::EventSink for Steps {
    fn emit(&self, _event: dewy::notify::Event) {}

    fn step(&self, step: &dewy::notify::Step) {
        self.0.lock().unwrap().push(step.clone());
    }
}

impl Steps {
    /// (version, step, failed) in order, taken out.
    fn take(&self) -> Vec<(String, &'static str, bool)> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .map(|s| {
                assert!(s.end >= s.start, "{s:?}");
                (s.version, s.name, s.error.is_some())
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_deploys_report_pull_hooks_rollout_and_clean_up_steps() {
    let reg = Registry::start();
    let app = unique("steps");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let mut broken = TestImage::new("v1.1.0");
    broken.healthy = false;
    let v11 = reg.push(&app, &broken);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |f| {
        f.before_deploy_hook = Some("true".into());
        f.after_deploy_hook = Some("true".into());
        f.health_timeout = Some("3s".parse().unwrap());
    });
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    let steps = Arc::new(Steps::default());
    d.set_events(steps.clone());
    assert!(deployed(&d.offer(release("v1.0.0", &v1)).await));
    let v = |name: &'static str, failed: bool| ("v1.0.0".to_string(), name, failed);
    assert_eq!(
        steps.take(),
        [
            v("pull", false),
            v("hook.before", false),
            v("rollout", false),
            v("hook.after", false),
            v("clean-up", false)
        ]
    );
    // A rollout that fails is the last step, and failed.
    let r = d.offer(release("v1.1.0", &v11)).await;
    assert!(matches!(r, DeployResult::Failed { .. }), "{r:?}");
    let v = |name: &'static str, failed: bool| ("v1.1.0".to_string(), name, failed);
    assert_eq!(
        steps.take(),
        [v("pull", false), v("hook.before", false), v("rollout", true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_health_check_rolls_back_and_marks_the_version_bad() {
    let reg = Registry::start();
    let app = unique("health");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let mut broken = TestImage::new("v1.1.0");
    broken.healthy = false;
    let v11 = reg.push(&app, &broken);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |f| {
        f.replicas = Some(2);
        f.health_timeout = Some("8s".parse().unwrap());
    });
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    assert!(deployed(&d.offer(release("v1.0.0", &v1)).await));
    let mut old = app_containers(&app);
    old.sort();
    let backends = proxy.backends();
    let started = Instant::now();
    let r = d.offer(release("v1.1.0", &v11)).await;
    let took = started.elapsed();
    // health-timeout = 8s is honoured: the first replica is given that long, no more.
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(40),
        "{took:?}"
    );
    let DeployResult::Failed { error, .. } = &r else {
        panic!("{r:?}")
    };
    assert!(
        error.contains("health check") && error.contains("status 500"),
        "{error}"
    );
    let mut now = app_containers(&app);
    now.sort();
    assert_eq!(
        now, old,
        "the old replicas must be untouched and the new ones gone"
    );
    assert_eq!(proxy.backends(), backends);
    assert_eq!(get(port, "/").unwrap(), "v1.0.0");
    let status = d.status();
    assert_eq!(status.live.map(|l| l.version), Some("v1.0.0".into()));
    assert!(
        status.bad.iter().any(|b| b.version == "v1.1.0"),
        "{:?}",
        status.bad
    );
    // The watcher does not offer it again.
    assert_eq!(d.offer(release("v1.1.0", &v11)).await.kind(), "skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_auth_failures_are_clear_and_change_nothing() {
    let reg = Registry::start_authenticated();
    let app = unique("pull");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let v2 = reg.push(&app, &TestImage::new("v2.0.0"));
    // Pushed from a private client config: the engine has them locally; drop v2 so a pull
    // must reach the registry.
    docker::docker(&["rmi", "-f", &v2.0]);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |_| {});
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    // The login comes from the Docker client config (DOCKER_CONFIG/config.json auths).
    std::env::set_var("DOCKER_CONFIG", reg.client_config.as_ref().unwrap());
    let r = d.offer(release("v1.0.0", &v1)).await;
    std::env::remove_var("DOCKER_CONFIG");
    assert!(deployed(&r), "{r:?}");
    let before = app_containers(&app);

    // A tag that does not exist.
    let missing = (
        format!("{}/{app}:v9.9.9", reg.host),
        format!("{}/{app}:v9.9.9", reg.host),
    );
    let r = d.offer(release("v9.9.9", &missing)).await;
    let DeployResult::Failed { error, .. } = &r else {
        panic!("{r:?}")
    };
    assert!(error.contains("pulling") && error.contains("v9.9.9"), "{error}");

    // No credentials for a registry that wants them.
    let r = d.offer(release("v2.0.0", &v2)).await;
    let DeployResult::Failed { error, .. } = &r else {
        panic!("{r:?}")
    };
    assert!(
        error.contains("no basic auth credentials")
            || error.contains("unauthorized")
            || error.contains("authentication required"),
        "{error}"
    );
    assert_eq!(app_containers(&app), before);
    let status = d.status();
    assert_eq!(status.live.map(|l| l.version), Some("v1.0.0".into()));
    assert!(
        status.bad.is_empty(),
        "a pull failure must not mark versions bad: {:?}",
        status.bad
    );
    assert_eq!(get(port, "/").unwrap(), "v1.0.0");

    // With the client config's login (DOCKER_CONFIG) the same release deploys.
    std::env::set_var("DOCKER_CONFIG", reg.client_config.as_ref().unwrap());
    let r = d.offer(release("v2.0.0", &v2)).await;
    std::env::remove_var("DOCKER_CONFIG");
    assert!(deployed(&r), "{r:?}");
    assert_eq!(get(port, "/").unwrap(), "v2.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_deployer_adopts_the_running_replicas() {
    let reg = Registry::start();
    let app = unique("adopt");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let keep = |f: &mut Layer| {
        f.replicas = Some(2);
        f.on_stop = Some(config::container::OnStop::Keep);
    };
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], keep);
    let (proxy, server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    assert!(deployed(&d.offer(release("v1.0.0", &v1)).await));
    let mut before = app_containers(&app);
    before.sort();
    // The deployer goes away without cleaning up (as after SIGKILL); a stray container of
    // another version (an interrupted deploy) is left too.
    drop(d);
    server.shutdown(Duration::from_secs(1)).await;
    docker::docker(&[
        "run",
        "-d",
        "--label",
        "dewy.managed=true",
        "--label",
        &format!("dewy.app={app}"),
        "--label",
        "dewy.version=v0.9.0",
        &v1.0,
    ]);
    // A new proxy (no backends) and a new deployer on the same root.
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], keep);
    let (proxy, _server) = start_proxy(&s).await;
    assert!(proxy.backends()[&port].is_empty());
    let d = open(s, &proxy);
    d.start_app().await;
    let mut after = app_containers(&app);
    after.sort();
    assert_eq!(
        after, before,
        "adopted exactly the live replicas, no duplicates, no stray"
    );
    assert_eq!(proxy.backends()[&port].len(), 2);
    assert_eq!(get(port, "/").unwrap(), "v1.0.0");
    assert_eq!(d.status().replicas.len(), 2);
    assert_eq!(d.offer(release("v1.0.0", &v1)).await.kind(), "skipped");
    // on-stop = keep: they outlive this deployer too.
    d.stop_app().await;
    assert_eq!(app_containers(&app).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_proxy_ports_reach_their_container_ports() {
    let reg = Registry::start();
    let app = unique("ports");
    let _c = Cleanup::new(&app);
    let mut img = TestImage::new("v1.0.0");
    img.expose = vec![8080, 9090];
    let v1 = reg.push(&app, &img);
    let tmp = tempfile::tempdir().unwrap();
    let (web, admin) = (free_port(), free_port());
    let s = settings(
        &app,
        tmp.path(),
        &[format!("127.0.0.1:{web}:8080"), format!("127.0.0.1:{admin}:9090")],
        |f| {
            f.replicas = Some(2);
            // No health path: the health check is a TCP connection to the first port.
            f.health_path = None;
        },
    );
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    assert!(deployed(&d.offer(release("v1.0.0", &v1)).await));
    assert_eq!(get(web, "/").unwrap(), "v1.0.0");
    assert_eq!(get(admin, "/").unwrap(), "admin v1.0.0");
    let b = proxy.backends();
    assert_eq!((b[&web].len(), b[&admin].len()), (2, 2));

    // A port given without a container port is ambiguous with two EXPOSEs.
    let tmp2 = tempfile::tempdir().unwrap();
    let p2 = free_port();
    let app2 = format!("{app}-b");
    let _c2 = Cleanup::new(&app2);
    let s2 = settings(&app2, tmp2.path(), &[format!("127.0.0.1:{p2}")], |_| {});
    let (proxy2, _server2) = start_proxy(&s2).await;
    let d2 = open(s2, &proxy2);
    let r = d2.offer(release("v1.0.0", &v1)).await;
    let DeployResult::Failed { error, .. } = &r else {
        panic!("{r:?}")
    };
    assert!(error.contains("exposes several ports"), "{error}");
    assert!(app_containers(&app2).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_health_check_fails_when_nothing_listens_on_the_port() {
    let reg = Registry::start();
    let app = unique("tcp");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    // The app listens on 9999 instead of the published 8080: the engine's port forwarder
    // still accepts connections on the host port, and closes them at once.
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |f| {
        f.health_path = None;
        f.health_timeout = Some("4s".parse().unwrap());
        f.run_options = Some(vec!["-e".into(), "PORT=9999".into()]);
    });
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    let r = d.offer(release("v1.0.0", &v1)).await;
    let DeployResult::Failed { error, .. } = &r else {
        panic!("{r:?}")
    };
    assert!(error.contains("health check of tcp://127.0.0.1:"), "{error}");
    assert!(app_containers(&app).is_empty(), "the failed replica was left");
    assert!(proxy.backends()[&port].is_empty());
    assert!(d.status().live.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_error_is_retried_not_marked_bad() {
    let reg = Registry::start();
    let app = unique("engine");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |f| {
        f.run_options = Some(vec!["--network".into(), format!("{app}-no-such-network")]);
    });
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    let r = d.offer(release("v1.0.0", &v1)).await;
    let DeployResult::Failed { error, .. } = &r else {
        panic!("{r:?}")
    };
    assert!(error.contains("no-such-network"), "{error}");
    assert!(app_containers(&app).is_empty(), "the failed replica was left");
    let status = d.status();
    assert!(
        status.bad.is_empty(),
        "an engine error must not mark the version bad: {:?}",
        status.bad
    );
    // Offered again, it is tried again (not skipped as bad).
    assert_eq!(d.offer(release("v1.0.0", &v1)).await.kind(), "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_cleanup_keeps_the_newest_images() {
    let reg = Registry::start();
    let app = unique("images");
    let _c = Cleanup::new(&app);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |f| {
        f.keep_images = Some(2)
    });
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    let versions = ["v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0"];
    let mut exited = String::new();
    for v in versions {
        let refs = reg.push(&app, &TestImage::new(v));
        // Created times have a one-second resolution: keep the images apart.
        std::thread::sleep(Duration::from_millis(1100));
        if v == "v1.3.0" {
            // A managed container of the app that exited (its port cannot be bound): reaped.
            exited = docker::docker(&[
                "run",
                "-d",
                "--label",
                "dewy.managed=true",
                "--label",
                &format!("dewy.app={app}"),
                "--label",
                "dewy.version=v1.2.0",
                "-e",
                "PORT=not-a-port",
                &refs.0,
            ]);
            support::wait_for("the container to exit", Duration::from_secs(30), || {
                (inspect(&exited, "{{.State.Status}}") == "exited").then_some(())
            });
        }
        assert!(deployed(&d.offer(release(v, &refs)).await), "{v}");
    }
    assert!(
        !app_containers(&app).contains(&exited),
        "the exited container was not reaped"
    );
    let tags = docker::docker(&["images", "--format", "{{.Tag}}", &format!("{}/{app}", reg.host)]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["v1.2.0", "v1.3.0"]);
    assert_eq!(get(port, "/").unwrap(), "v1.3.0");
}

#[test]
fn dangerous_run_options_are_refused_when_the_config_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("web.toml");
    std::fs::write(
        &cfg,
        "registry = \"file:///srv/releases\"\nmode = \"container\"\nport = [\"8000:8080\"]\nrun-options = [\"--privileged\"]\n",
    )
    .unwrap();
    let (code, _out, err) = support::proc::dewy(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("--privileged") && err.contains("full access to the host"),
        "{err}"
    );
    let (code, _out, err) = support::proc::dewy(
        &[
            "container",
            "--registry",
            "file:///srv/releases",
            "--port",
            "8000:8080",
            "--bus",
            "none",
            "--",
            "--cap-add",
            "SYS_ADMIN",
        ],
        &[],
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("--cap-add") && err.contains("capabilities"), "{err}");
    let (code, _out, err) = support::proc::dewy(
        &[
            "container",
            "--registry",
            "file:///srv/releases",
            "--port",
            "8000:8080",
            "--",
            "-p",
            "80:80",
        ],
        &[],
    );
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("127.0.0.1 only"), "{err}");
}

/// `dewy container` as a process: the proxy runs inside it, releases are offered over D-Bus,
/// `dewy container list` and `dewy status` show the replicas; after SIGKILL a new run adopts
/// the running replicas; SIGTERM of a foreground run removes them.
#[test]
fn foreground_run_lists_replicas_and_adopts_them_after_sigkill() {
    use support::dbus::PrivateBus;
    use support::proc::dewy;
    const LONG: Duration = Duration::from_secs(90);
    let reg = Registry::start();
    let app = unique("fg");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let bus = PrivateBus::start();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    // The deployer resolves what it is offered in its own source: the registry holding v1.0.0.
    let registry = format!("img://{}/{app}", reg.host);
    let root = tmp.path().display().to_string();
    let listen = format!("127.0.0.1:{port}:8080");
    let args = |on_stop: &'static str| -> Vec<String> {
        [
            "container",
            "--name",
            &app,
            "--registry",
            &registry,
            "--root",
            &root,
            "--port",
            &listen,
            "--replicas",
            "2",
            "--health-path",
            "/health",
            "--health-timeout",
            "30s",
            "--interval",
            "1h",
            "--bus",
            &bus.address,
            "--on-stop",
            on_stop,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let start = |on_stop: &'static str, log: &str| {
        let a = args(on_stop);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Daemon::start(
            env!("CARGO_BIN_EXE_dewy"),
            &a,
            &[],
            tmp.path(),
            &tmp.path().join(log),
        )
    };
    let bus_env = [("DEWY_BUS", bus.address.as_str())];
    let status = |d: &Daemon| {
        wait_for_ok(LONG, d, || {
            let (code, out, _) = dewy(&["status", &app], &bus_env);
            (code == 0).then_some(out)
        })
    };
    let mut d = start("keep", "run1.log");
    status(&d);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let client = dewy::bus::client::DeployerClient::new(&conn, &app).await.unwrap();
        dewy::watch::DeployTarget::offer(&client, release("v1.0.0", &v1)).await
    });
    // The run's own watcher checks at start too: whichever comes first deploys, the other skips.
    assert!(
        matches!(
            r,
            Ok(DeployResult::Deployed { .. } | DeployResult::Skipped { .. })
        ),
        "{r:?}\n{}",
        d.log()
    );
    assert_eq!(get(port, "/").unwrap(), "v1.0.0");
    let log = d.log();
    for line in [
        "Reverse proxy started successfully",
        "Pulling new image",
        "Image pull complete",
        "Container added to load balancer",
        "Container deployment completed",
    ] {
        assert!(log.contains(line), "{line:?} missing from the log:\n{log}");
    }
    let pulled = log
        .lines()
        .find(|l| l.contains("Image pull complete"))
        .unwrap_or_default();
    assert!(pulled.contains("sha256:"), "{pulled}");
    let (code, out, err) = dewy(&["container", "list", &app], &bus_env);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("UPSTREAM") && lines[0].contains("DEPLOY TIME") && lines[0].ends_with("NAME"),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with("127.0.0.1:") && lines[1].contains(&app),
        "{out}"
    );
    let out = status(&d);
    assert!(
        out.contains("replicas:") && out.matches("v1.0.0").count() >= 3,
        "{out}"
    );
    let sock = tmp.path().join(".dewy/metrics.sock");
    let metrics = support::wait_for("the replica gauges", LONG, || {
        support::scrape_metrics(&sock)
            .filter(|t| t.contains("dewy_container_replicas{state=\"running\"} 2\n"))
    });
    assert!(
        metrics.contains("dewy_container_desired_replicas 2\n"),
        "{metrics}"
    );
    let mut before = app_containers(&app);
    before.sort();

    d.kill9();
    assert_eq!(app_containers(&app).len(), 2, "replicas outlive a killed dewy");
    let mut d = start("remove", "run2.log");
    status(&d);
    support::wait_for("the adopted replicas to serve", LONG, || {
        get(port, "/").ok().filter(|v| v == "v1.0.0")
    });
    let mut after = app_containers(&app);
    after.sort();
    assert_eq!(after, before, "adopted, not duplicated\n{}", d.log());
    assert!(d.log().contains("Adopted running container"), "{}", d.log());

    let st = d.terminate(LONG);
    assert!(st.success(), "{st:?}\n{}", d.log());
    assert!(
        app_containers(&app).is_empty(),
        "on-stop = remove left containers\n{}",
        d.log()
    );
    assert!(d.log().contains("Cleanup completed"), "{}", d.log());
}

/// Poll `f` while `d` runs; panics with its log if it exits or time runs out.
fn wait_for_ok<T>(timeout: Duration, d: &Daemon, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The split daemons: `dewy-deployer` drives `dewy-proxy` over D-Bus; after a SIGKILL of the
/// deployer the proxy keeps serving, the next deployer adopts the replicas, and the next
/// rolling update replaces exactly them.
#[test]
fn split_daemons_adopt_replicas_after_a_deployer_sigkill() {
    use support::dbus::PrivateBus;
    use support::proc::dewy;
    const LONG: Duration = Duration::from_secs(90);
    let reg = Registry::start();
    let app = unique("split");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let v2 = reg.push(&app, &TestImage::new("v2.0.0"));
    let bus = PrivateBus::start();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = tmp.path().join(format!("{app}.toml"));
    // Offers name a version only; the deployer resolves it in this registry.
    std::fs::write(
        &config,
        format!(
            "mode = \"container\"\nregistry = \"img://{reg}/{app}\"\nroot = \"{root}\"\nport = [\"127.0.0.1:{port}:8080\"]\n\
             replicas = 2\nhealth-path = \"/health\"\ndrain-time = \"5s\"\non-stop = \"keep\"\n",
            reg = reg.host,
            root = tmp.path().join("root").display(),
        ),
    )
    .unwrap();
    let cfg = config.display().to_string();
    let args = [
        app.as_str(),
        "--config",
        cfg.as_str(),
        "--bus",
        bus.address.as_str(),
    ];
    let proxy_state = tmp.path().join("proxy-state").display().to_string();
    let _proxy = Daemon::start(
        env!("CARGO_BIN_EXE_dewy-proxy"),
        &args,
        &[("STATE_DIRECTORY", proxy_state.as_str())],
        tmp.path(),
        &tmp.path().join("proxy.log"),
    );
    let deployer = |log: &str| {
        Daemon::start(
            env!("CARGO_BIN_EXE_dewy-deployer"),
            &args,
            &[],
            tmp.path(),
            &tmp.path().join(log),
        )
    };
    let bus_env = [("DEWY_BUS", bus.address.as_str())];
    let ready = |d: &Daemon| {
        wait_for_ok(LONG, d, || {
            let (code, out, _) = dewy(&["status", &app], &bus_env);
            (code == 0).then_some(out)
        })
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let offer = |r: Release| {
        rt.block_on(async {
            let conn = zbus::connection::Builder::address(bus.address.as_str())
                .unwrap()
                .build()
                .await
                .unwrap();
            let client = dewy::bus::client::DeployerClient::new(&conn, &app).await.unwrap();
            dewy::watch::DeployTarget::offer(&client, r).await
        })
    };

    let mut d = deployer("deployer1.log");
    ready(&d);
    let r = offer(release("v1.0.0", &v1));
    assert!(
        matches!(r, Ok(DeployResult::Deployed { .. })),
        "{r:?}\n{}",
        d.log()
    );
    assert_eq!(get(port, "/").unwrap(), "v1.0.0");
    let mut before = app_containers(&app);
    before.sort();
    assert_eq!(before.len(), 2);

    d.kill9();
    // The proxy keeps its table: the replicas still serve without a deployer.
    for _ in 0..4 {
        assert_eq!(get(port, "/").unwrap(), "v1.0.0");
    }
    let d = deployer("deployer2.log");
    ready(&d);
    support::wait_for("adoption", LONG, || {
        (d.log().matches("Adopted running container").count() == 2).then_some(())
    });
    let mut after = app_containers(&app);
    after.sort();
    assert_eq!(after, before, "adopted, not duplicated\n{}", d.log());

    let r = offer(release("v2.0.0", &v2));
    assert!(
        matches!(r, Ok(DeployResult::Deployed { .. })),
        "{r:?}\n{}",
        d.log()
    );
    assert_eq!(get(port, "/").unwrap(), "v2.0.0");
    let now = app_containers(&app);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(
        now.iter().all(|id| !before.contains(id)),
        "the adopted replicas were replaced"
    );
}

/// The whole pipeline: `dewy container --registry img://…` finds the newest tag in a real
/// registry, deploys it, and rolls the next tag in while a client keeps calling the proxy.
#[test]
fn img_registry_to_containers_end_to_end() {
    const LONG: Duration = Duration::from_secs(90);
    let reg = Registry::start();
    let app = unique("e2e");
    let _c = Cleanup::new(&app);
    reg.push(&app, &TestImage::new("v1.0.0"));
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut d = watch_registry(
        &reg,
        &app,
        tmp.path(),
        port,
        &["--drain-time", "5s", "--log-level", "info"],
        &[],
    );
    wait_for_ok(LONG, &d, || get(port, "/").ok().filter(|v| v == "v1.0.0"));

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new((0usize, 0usize, Vec::<String>::new())));
    let client = {
        let (stop, tally) = (stop.clone(), tally.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = get(port, "/");
                let mut t = tally.lock().unwrap();
                match r {
                    Ok(_) => t.0 += 1,
                    Err(e) => {
                        t.1 += 1;
                        t.2.push(e)
                    }
                }
            }
        })
    };
    reg.push(&app, &TestImage::new("v1.1.0"));
    wait_for_ok(LONG, &d, || get(port, "/").ok().filter(|v| v == "v1.1.0"));
    wait_for_ok(LONG, &d, || {
        (d.log().matches("Container deployment completed").count() >= 2).then_some(())
    });
    wait_for_ok(LONG, &d, || (app_containers(&app).len() == 2).then_some(()));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let t = tally.lock().unwrap();
    eprintln!("img:// end to end: {} requests, {} failed", t.0, t.1);
    assert_eq!(t.1, 0, "{:?}\n{}", &t.2[..t.2.len().min(5)], d.log());
    let log = d.log();
    for line in [
        "Pulling new image",
        "Image pull complete",
        "Container deployment completed",
        "Keep images",
    ] {
        assert!(log.contains(line), "{line:?} missing:\n{log}");
    }
    let st = d.terminate(LONG);
    assert!(st.success(), "{st:?}");
    assert!(
        app_containers(&app).is_empty(),
        "a foreground run removes its containers on stop"
    );
}

/// Podman's Docker-compatible socket through the same code (`DOCKER_HOST`): `dewy container`
/// deploys from the registry, rolls the next tag in, and removes its replicas when it stops.
#[test]
fn podman_socket_runs_the_same_deploys() {
    const LONG: Duration = Duration::from_secs(120);
    let podman = docker::Podman::start();
    let reg = Registry::start();
    let app = unique("podman");
    let _c = Cleanup::new(&app);
    reg.push(&app, &TestImage::new("v1.0.0"));
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = [("DOCKER_HOST", podman.host.as_str())];
    let mut d = watch_registry(&reg, &app, tmp.path(), port, &["--drain-time", "2s"], &env);
    let served = |v: &'static str, d: &Daemon| {
        let start = Instant::now();
        while get(port, "/").ok().as_deref() != Some(v) {
            assert!(
                start.elapsed() < LONG,
                "{v} not served\n{}\n{}",
                d.log(),
                podman.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    served("v1.0.0", &d);
    assert_eq!(podman.app_containers(&app).len(), 2, "{}", d.log());
    assert!(
        app_containers(&app).is_empty(),
        "the replicas must run in Podman, not dockerd"
    );
    reg.push(&app, &TestImage::new("v1.1.0"));
    served("v1.1.0", &d);
    assert!(d.terminate(LONG).success());
    assert!(podman.app_containers(&app).is_empty(), "replicas left after stop");
}

/// `--runtime podman` without `DOCKER_HOST`: dewy finds Podman's rootful socket
/// (`/run/podman/podman.sock`, as root) by itself, and the replicas run there, not in dockerd;
/// `--runtime` with another value is a config error.
#[test]
fn runtime_podman_uses_the_rootful_podman_socket() {
    const LONG: Duration = Duration::from_secs(120);
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs as root, as the deployer does"
    );
    let sock = std::path::Path::new("/run/podman/podman.sock");
    if sock.exists() {
        assert!(
            std::os::unix::net::UnixStream::connect(sock).is_err(),
            "a Podman service already serves {}; stop it (systemctl stop podman.socket podman.service) for this test",
            sock.display()
        );
        std::fs::remove_file(sock).expect("removing a stale Podman socket");
    }
    let podman = docker::Podman::start_at(sock);
    let reg = Registry::start();
    let app = unique("runtime");
    let _c = Cleanup::new(&app);
    reg.push(&app, &TestImage::new("v1.0.0"));
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let (registry, root, listen) = (
        format!("img://{}/{app}", reg.host),
        tmp.path().display().to_string(),
        format!("127.0.0.1:{port}:8080"),
    );
    let run = |runtime: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dewy"));
        cmd.args([
            "container",
            "--name",
            &app,
            "--registry",
            &registry,
            "--root",
            &root,
        ])
        .args(["--port", &listen, "--health-path", "/health", "--interval", "1s"])
        .args(["--bus", "none", "--runtime", runtime])
        .env_remove("DOCKER_HOST")
        .current_dir(tmp.path());
        cmd
    };
    let out = run("lxc").output().expect("dewy");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("use docker or podman"),
        "{out:?}"
    );

    let mut d = Daemon::spawn(run("podman"), &[], &tmp.path().join("dewy.log"));
    let start = Instant::now();
    while get(port, "/").ok().as_deref() != Some("v1.0.0") {
        assert!(
            start.elapsed() < LONG,
            "v1.0.0 not served\n{}\n{}",
            d.log(),
            podman.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(podman.app_containers(&app).len(), 1, "{}", d.log());
    assert!(
        app_containers(&app).is_empty(),
        "the replica must run in Podman, not dockerd"
    );
    assert!(d.terminate(LONG).success());
    assert!(podman.app_containers(&app).is_empty(), "replicas left after stop");
}

/// With `verify` set, an image goes live only with a cosign signature by a trusted key over its
/// own digest, checked before the pull; an unsigned image and a replayed signature are refused,
/// marked bad with the reason, and the running replicas stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_images_signed_by_a_trusted_key_are_run() {
    use support::cosign::{payload, push_signature, SigningKey};
    let reg = Registry::start();
    let app = unique("signed");
    let _c = Cleanup::new(&app);
    let v1 = reg.push(&app, &TestImage::new("v1.0.0"));
    let v2 = reg.push(&app, &TestImage::new("v2.0.0"));
    let v3 = reg.push(&app, &TestImage::new("v3.0.0"));
    let key = SigningKey::generate();
    let image = format!("{}/{app}", reg.host);
    let digest = |refs: &(String, String)| refs.1.rsplit_once('@').expect("digest").1.to_string();
    let p1 = payload(&image, &digest(&v1));
    let signed = (p1.clone(), key.sign(p1.as_bytes()));
    push_signature(&reg.server, &app, &digest(&v1), std::slice::from_ref(&signed)).await;
    // v3 carries v1's genuine signature: a replay onto another digest.
    push_signature(&reg.server, &app, &digest(&v3), &[signed]).await;

    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(&app, tmp.path(), &[format!("127.0.0.1:{port}:8080")], |f| {
        f.registry = Some(format!("img://{image}"));
        f.verify = Some(vec![key.spec()]);
    });
    let (proxy, _server) = start_proxy(&s).await;
    let d = open(s, &proxy);
    let r = d.offer(release("v1.0.0", &v1)).await;
    assert!(deployed(&r), "{r:?}");
    assert_eq!(get(port, "/").unwrap(), "v1.0.0");
    let running = app_containers(&app);

    for (version, refs, why) in [("v2.0.0", &v2, "no signature"), ("v3.0.0", &v3, "replay")] {
        let r = d.offer(release(version, refs)).await;
        let DeployResult::Failed { error, .. } = &r else {
            panic!("{version}: {r:?}")
        };
        assert!(error.contains(why), "{version}: {error}");
        let status = d.status();
        assert_eq!(status.live.map(|l| l.version), Some("v1.0.0".into()));
        let bad = status.bad.iter().find(|b| b.version == version);
        assert!(
            bad.is_some_and(|b| b.reason.contains(why)),
            "{version}: {:?}",
            status.bad
        );
        assert_eq!(app_containers(&app), running, "{version} touched the replicas");
        assert_eq!(get(port, "/").unwrap(), "v1.0.0");
    }
}
