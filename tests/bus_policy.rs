//! The trust boundary on a real `dbus-daemon`: a bus with the system bus's default policy and the
//! shipped `packaging/dbus-1/system.d/io.dewy.conf`, the deployer running as root, and every
//! method called as the `dewy` user (watcher, proxy) and as another unprivileged user through
//! `dbus-send` under `setpriv`. A second bus that lets everyone call everything shows the
//! deployer's own uid check. Needs root (to change uid); creates the `dewy` system user if missing.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::proc::{dewy, Daemon};
use support::{current_file, tar_gz, wait_for};

const LONG: Duration = Duration::from_secs(60);
const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/dbus-1/system.d/io.dewy.conf"
);
const DEPLOYER: &str = "io.dewy.Deployer.app";
const DEPLOYER_PATH: &str = "/io/dewy/Deployer1";

/// The system bus's default: everyone connects, nobody owns a name or calls a method unless a
/// rule opens it; replies and signals flow; the bus daemon itself is reachable.
const SYSTEM_DEFAULTS: &str = r#"
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>"#;

/// A bus that opens everything to everyone: only the daemons' own checks remain.
const OPEN_TO_ALL: &str = r#"
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow send_type="signal"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>"#;

/// A user to call as.
#[derive(Clone, Copy, Debug)]
struct User {
    uid: u32,
    gid: u32,
}

fn id_of(name: &str) -> Option<User> {
    let user = nix::unistd::User::from_name(name).ok().flatten()?;
    Some(User {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// The `dewy` system user (created as `packaging/sysusers.d/dewy.conf` would) and `nobody`;
/// `None` when the test does not run as root.
fn users() -> Option<(User, User)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: changing uid needs root");
        return None;
    }
    // One test at a time: useradd writes /etc/passwd before /etc/group, and a bus that sees the
    // user half-made refuses its connections.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    if id_of("dewy").is_none() {
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--home-dir", "/var/lib/dewy"])
            .args(["--shell", "/usr/sbin/nologin", "dewy"])
            .output()
            .expect("useradd");
        // Another test binary may have created it at the same time.
        assert!(
            out.status.success() || id_of("dewy").is_some(),
            "useradd dewy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dewy = id_of("dewy").expect("the dewy user");
    let nobody = id_of("nobody").expect("the nobody user");
    assert_ne!(dewy.uid, 0);
    Some((dewy, nobody))
}

/// A `dbus-daemon` with a given policy, listening in a directory every user can reach.
struct Bus {
    child: Child,
    address: String,
}

impl Bus {
    fn start(dir: &Path, policy: &str) -> Bus {
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={}</listen>
{policy}
</busconfig>
"#,
                dir.join("bus.sock").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is needed for this test: apt-get install dbus-daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.trim().is_empty(), "dbus-daemon printed no address");
        Bus {
            child,
            address: line.trim().to_string(),
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory tree every user may read: the releases, the config, the bus socket.
struct World {
    tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

fn app_tar(version: &str) -> Vec<u8> {
    tar_gz(&[("VERSION", 0o644, version.as_bytes())])
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let releases = tmp.path().join("releases");
        std::fs::create_dir_all(&releases).unwrap();
        let config = tmp.path().join("app.toml");
        std::fs::write(
            &config,
            format!(
                "registry = \"file://{}?artifact=app.tar.gz\"\ninterval = \"1h\"\nroot = \"{}\"\n",
                releases.display(),
                root.display()
            ),
        )
        .unwrap();
        World { tmp, root, config }
    }

    fn publish(&self, version: &str) {
        let dir = self.tmp.path().join("releases").join(version);
        std::fs::create_dir_all(&dir).unwrap();
        let body = app_tar(version);
        std::fs::write(dir.join("app.tar.gz"), &body).unwrap();
        let sum = sha256_hex(&body);
        std::fs::write(dir.join("checksums.txt"), format!("{sum}  app.tar.gz\n")).unwrap();
    }

    fn deployer(&self, bus: &Bus, log: &str) -> Daemon {
        let d = Daemon::start(
            env!("CARGO_BIN_EXE_dewy-deployer"),
            &["app", "--config", self.config.to_str().unwrap()],
            &[("DEWY_BUS", bus.address.as_str())],
            self.tmp.path(),
            &self.tmp.path().join(log),
        );
        wait_for("the deployer on the bus", LONG, || {
            let (code, _, _) = dewy(&["status", "app"], &[("DEWY_BUS", bus.address.as_str())]);
            (code == 0).then_some(())
        });
        d
    }

    fn live(&self) -> Option<String> {
        current_file(&self.root, "VERSION")
    }

    fn state(&self) -> String {
        std::fs::read_to_string(self.root.join(".dewy/state.json")).unwrap_or_default()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The answer of one `dbus-send` call made as `user` (root when `None`): (success, output).
fn call(
    bus: &Bus,
    user: Option<User>,
    dest: &str,
    path: &str,
    method: &str,
    args: &[&str],
) -> (bool, String) {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", u.uid))
                .arg(format!("--regid={}", u.gid))
                .arg("--clear-groups")
                .arg("dbus-send");
            c
        }
        None => Command::new("dbus-send"),
    };
    cmd.arg(format!("--bus={}", bus.address))
        .args(["--print-reply", "--reply-timeout=120000"])
        .arg(format!("--dest={dest}"))
        .arg(path)
        .arg(method)
        .args(args)
        .stdin(Stdio::null());
    let out = cmd.output().expect("dbus-send (apt-get install dbus-bin)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn deployer_call(bus: &Bus, user: Option<User>, method: &str, args: &[&str]) -> (bool, String) {
    call(
        bus,
        user,
        DEPLOYER,
        DEPLOYER_PATH,
        &format!("io.dewy.Deployer1.{method}"),
        args,
    )
}

#[track_caller]
fn assert_denied((ok, out): (bool, String), what: &str) {
    assert!(!ok, "{what} was allowed: {out}");
    assert!(out.contains("AccessDenied"), "{what}: {out}");
}

#[track_caller]
fn assert_allowed((ok, out): (bool, String), what: &str) -> String {
    assert!(ok, "{what} was refused: {out}");
    out
}

/// The `(sss)` reply of Offer/Deploy: its first string (`deployed`, `skipped`, `failed`).
fn result_kind(out: &str) -> &str {
    for kind in ["deployed", "skipped", "failed"] {
        if out.contains(&format!("string \"{kind}\"")) {
            return kind;
        }
    }
    ""
}

#[test]
fn shipped_policy_lets_the_dewy_user_only_nominate_versions() {
    let Some((dewy_user, nobody)) = users() else {
        return;
    };
    let w = World::new();
    w.publish("v1.0.0");
    w.publish("v1.1.0");
    w.publish("v2.0.0-rc.1");
    let bus_dir = w.tmp.path().join("bus");
    std::fs::create_dir_all(&bus_dir).unwrap();
    std::fs::set_permissions(&bus_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bus = Bus::start(
        &bus_dir,
        &format!("{SYSTEM_DEFAULTS}\n  <include>{POLICY}</include>"),
    );
    let mut deployer = w.deployer(&bus, "deployer.log");

    // Any local user: status, history and properties; nothing that changes anything.
    for (method, args) in [("Status", &[][..]), ("History", &["uint32:5"][..])] {
        assert_allowed(deployer_call(&bus, Some(nobody), method, args), method);
    }
    assert_allowed(
        call(
            &bus,
            Some(nobody),
            DEPLOYER,
            DEPLOYER_PATH,
            "org.freedesktop.DBus.Properties.Get",
            &["string:io.dewy.Deployer1", "string:LiveVersion"],
        ),
        "Properties.Get",
    );
    for user in [nobody, dewy_user] {
        for (method, args) in [
            ("Deploy", &["string:v1.0.0"][..]),
            ("Rollback", &[][..]),
            ("Restart", &[][..]),
            ("ForgetBad", &["string:v1.0.0"][..]),
            ("DeployWith", &["string:v1.0.0", "array:string:pause"][..]),
            ("Pause", &["string:sabotage"][..]),
            ("Resume", &[][..]),
        ] {
            assert_denied(
                deployer_call(&bus, Some(user), method, args),
                &format!("{method} as {user:?}"),
            );
        }
        assert_denied(
            call(
                &bus,
                Some(user),
                DEPLOYER,
                DEPLOYER_PATH,
                "org.freedesktop.DBus.Properties.Set",
                &[
                    "string:io.dewy.Deployer1",
                    "string:LiveVersion",
                    "variant:string:v6.6.6",
                ],
            ),
            "Properties.Set",
        );
        // Nobody but root owns a deployer's name: no one can stand in for it.
        assert_denied(
            call(
                &bus,
                Some(user),
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.RequestName",
                &["string:io.dewy.Deployer.other", "uint32:0"],
            ),
            "owning a deployer name",
        );
    }
    assert_denied(
        deployer_call(&bus, Some(nobody), "Offer", &["string:v1.0.0"]),
        "Offer as nobody",
    );
    assert_denied(
        call(
            &bus,
            Some(nobody),
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.RequestName",
            &["string:io.dewy.Watcher.app", "uint32:0"],
        ),
        "owning a watcher name as nobody",
    );
    assert_eq!(w.live(), None, "nothing was deployed by the refused calls");
    assert!(!w.state().contains("paused"), "nothing was paused: {}", w.state());
    // Root pauses and resumes.
    let out = assert_allowed(
        deployer_call(&bus, None, "Pause", &["string:maintenance"]),
        "Pause",
    );
    assert!(out.contains("boolean true"), "{out}");
    assert!(w.state().contains("\"reason\": \"maintenance\""), "{}", w.state());
    assert_allowed(deployer_call(&bus, None, "Resume", &[]), "Resume");
    assert!(!w.state().contains("paused"), "{}", w.state());

    // The dewy user nominates; what is not a version of the source is refused before any
    // download, and nothing of it is recorded.
    let hostile = [
        (
            "v1.0.0\u{1b}]0;owned\u{7}\nDEWY_VERSION=x",
            "control or whitespace",
        ),
        ("file:///etc/passwd", "is not a SemVer version"),
        ("https://evil.example/app.tar.gz", "is not a SemVer version"),
        ("../../../../etc", "is not a SemVer version"),
    ];
    for (text, why) in hostile {
        let arg = format!("string:{text}");
        let out = assert_allowed(deployer_call(&bus, Some(dewy_user), "Offer", &[&arg]), "Offer");
        assert_eq!(result_kind(&out), "failed", "{text:?}: {out}");
        assert!(out.contains(why), "{text:?}: {out}");
    }
    let long = format!("string:1.0.0-{}", "a".repeat(200));
    let out = assert_allowed(deployer_call(&bus, Some(dewy_user), "Offer", &[&long]), "Offer");
    assert_eq!(result_kind(&out), "failed", "{out}");
    assert!(out.contains("at most 128"), "{out}");
    let out = assert_allowed(
        deployer_call(&bus, Some(dewy_user), "Offer", &["string:v9.9.9"]),
        "Offer",
    );
    assert_eq!(result_kind(&out), "failed", "{out}");
    assert!(out.contains("has no release directory v9.9.9"), "{out}");
    assert_eq!(w.live(), None);

    // A version the source has is resolved by the deployer itself and deployed.
    let out = assert_allowed(
        deployer_call(&bus, Some(dewy_user), "Offer", &["string:v1.1.0"]),
        "Offer",
    );
    assert_eq!(result_kind(&out), "deployed", "{out}\n{}", deployer.log());
    assert_eq!(w.live().as_deref(), Some("v1.1.0"));
    // The source's rules hold: pre-releases are not opted into.
    let out = assert_allowed(
        deployer_call(&bus, Some(dewy_user), "Offer", &["string:v2.0.0-rc.1"]),
        "Offer",
    );
    assert_eq!(result_kind(&out), "failed", "{out}");
    assert!(out.contains("does not pass the source's version rules"), "{out}");
    assert_eq!(w.live().as_deref(), Some("v1.1.0"));
    // An older one is refused while the source's newest is newer: no downgrade by nomination.
    let out = assert_allowed(
        deployer_call(&bus, Some(dewy_user), "Offer", &["string:v1.0.0"]),
        "Offer",
    );
    assert_eq!(result_kind(&out), "failed", "{out}");
    assert!(out.contains("older than the live"), "{out}");
    assert_eq!(w.live().as_deref(), Some("v1.1.0"));
    let state = w.state();
    assert!(state.contains("v1.1.0"), "{state}");
    for (text, _) in hostile {
        assert!(!state.contains(text), "{text:?} reached the state: {state}");
    }
    assert!(!state.contains("owned") && !state.contains("evil"), "{state}");
    let log = deployer.log();
    assert!(!log.contains('\u{1b}'), "an escape code reached the log:\n{log}");

    // The old call that carried URLs no longer exists.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let old = rt.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        conn.call_method(
            Some(DEPLOYER),
            DEPLOYER_PATH,
            Some("io.dewy.Deployer1"),
            "Offer",
            &(("v1.0.0", "x.tar.gz", "https://evil.example/x.tar.gz", "", 0i64),),
        )
        .await
    });
    let err = old.expect_err("Offer((ssssx))").to_string();
    assert!(
        err.contains("InvalidArgs") || err.contains("Signature mismatch"),
        "{err}"
    );
    assert_eq!(w.live().as_deref(), Some("v1.1.0"));

    // The watcher, run as dewy, owns its name and nominates the newest version; only root may
    // make it check now.
    let watcher_log = w.tmp.path().join("watcher.log");
    std::fs::write(&watcher_log, "").unwrap();
    std::fs::set_permissions(&watcher_log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", dewy_user.uid))
        .arg(format!("--regid={}", dewy_user.gid))
        .arg("--clear-groups")
        .arg(env!("CARGO_BIN_EXE_dewy-watcher"))
        .args(["app", "--config", w.config.to_str().unwrap()])
        .current_dir(w.tmp.path());
    let mut watcher = Daemon::spawn(cmd, &[("DEWY_BUS", bus.address.as_str())], &watcher_log);
    let bus_env = [("DEWY_BUS", bus.address.as_str())];
    let status = wait_for("the watcher's first check", LONG, || {
        let (code, out, _) = dewy(&["status", "app", "--json"], &bus_env);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        (code == 0 && v["watcher"]["last"]["outcome"].is_string()).then_some(v)
    });
    assert_eq!(status["watcher"]["last"]["outcome"], "skipped", "{status}");
    assert_eq!(status["watcher"]["last"]["version"], "v1.1.0", "{status}");
    for user in [nobody, dewy_user] {
        assert_denied(
            call(
                &bus,
                Some(user),
                "io.dewy.Watcher.app",
                "/io/dewy/Watcher1",
                "io.dewy.Watcher1.CheckNow",
                &[],
            ),
            "CheckNow",
        );
    }
    let (code, out, err) = dewy(&["check-now", "app"], &bus_env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("skipped v1.1.0"), "{out}");
    assert!(watcher.terminate(Duration::from_secs(20)).success());

    // The proxy, run as dewy: its backends are set by root (the deployer) only.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let web = w.tmp.path().join("web.toml");
    std::fs::write(&web, format!("mode = \"container\"\nport = [\"{port}\"]\n")).unwrap();
    let proxy_state = w.tmp.path().join("proxy-state");
    std::fs::create_dir_all(&proxy_state).unwrap();
    nix::unistd::chown(
        &proxy_state,
        Some(nix::unistd::Uid::from_raw(dewy_user.uid)),
        Some(nix::unistd::Gid::from_raw(dewy_user.gid)),
    )
    .unwrap();
    let proxy_log = w.tmp.path().join("proxy.log");
    std::fs::write(&proxy_log, "").unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", dewy_user.uid))
        .arg(format!("--regid={}", dewy_user.gid))
        .arg("--clear-groups")
        .arg(env!("CARGO_BIN_EXE_dewy-proxy"))
        .args(["web", "--config", web.to_str().unwrap(), "--bus", &bus.address])
        .current_dir(w.tmp.path());
    let mut proxy = Daemon::spawn(
        cmd,
        &[("STATE_DIRECTORY", proxy_state.to_str().unwrap())],
        &proxy_log,
    );
    wait_for("the proxy ready", LONG, || {
        proxy.log().contains("Proxy ready").then_some(())
    });
    let proxy_call = |user: Option<User>, method: &str, args: &[&str]| {
        call(
            &bus,
            user,
            "io.dewy.Proxy.web",
            "/io/dewy/Proxy1",
            &format!("io.dewy.Proxy1.{method}"),
            args,
        )
    };
    let port_arg = format!("uint16:{}", port.port());
    for user in [nobody, dewy_user] {
        assert_denied(
            proxy_call(
                Some(user),
                "SetBackends",
                &[&port_arg, "array:string:10.0.0.1:80"],
            ),
            "SetBackends",
        );
        assert_denied(
            proxy_call(Some(user), "Drain", &["string:127.0.0.1:1", "uint64:0"]),
            "Drain",
        );
        assert_allowed(proxy_call(Some(user), "Status", &[]), "proxy Status");
        assert_allowed(proxy_call(Some(user), "Backends", &[]), "proxy Backends");
    }
    assert_allowed(
        proxy_call(None, "SetBackends", &[&port_arg, "array:string:127.0.0.1:9"]),
        "SetBackends as root",
    );
    let backends = assert_allowed(proxy_call(Some(nobody), "Backends", &[]), "Backends");
    assert!(backends.contains("127.0.0.1:9"), "{backends}");
    assert!(!backends.contains("10.0.0.1"), "{backends}");
    assert!(proxy.terminate(Duration::from_secs(20)).success());

    // Root may do what operators do.
    let out = assert_allowed(deployer_call(&bus, None, "Deploy", &["string:v1.0.0"]), "Deploy");
    assert_eq!(result_kind(&out), "deployed", "{out}");
    assert_eq!(w.live().as_deref(), Some("v1.0.0"));
    assert!(deployer.terminate(Duration::from_secs(20)).success());
}

#[test]
fn daemons_check_the_caller_even_when_the_bus_lets_everyone_through() {
    let Some((dewy_user, nobody)) = users() else {
        return;
    };
    let w = World::new();
    w.publish("v1.0.0");
    let bus_dir = w.tmp.path().join("bus");
    std::fs::create_dir_all(&bus_dir).unwrap();
    std::fs::set_permissions(&bus_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bus = Bus::start(&bus_dir, OPEN_TO_ALL);
    let mut deployer = w.deployer(&bus, "deployer.log");
    for (method, args) in [
        ("Offer", &["string:v1.0.0"][..]),
        ("Deploy", &["string:v1.0.0"][..]),
        ("Rollback", &[][..]),
        ("ForgetBad", &["string:v1.0.0"][..]),
        ("DeployWith", &["string:v1.0.0", "array:string:pause"][..]),
        ("Pause", &["string:sabotage"][..]),
        ("Resume", &[][..]),
    ] {
        let (ok, out) = deployer_call(&bus, Some(nobody), method, args);
        assert!(!ok, "{method} as nobody: {out}");
        assert!(
            // The daemon's own refusal, by its stable name (the bus policy's would be
            // org.freedesktop.DBus.Error.AccessDenied).
            out.contains("io.dewy.Error.AccessDenied")
                && out.contains(&format!("not allowed for uid {}", nobody.uid)),
            "{method}: {out}"
        );
    }
    for (method, args) in [
        ("Deploy", &["string:v1.0.0"][..]),
        ("Rollback", &[][..]),
        ("Pause", &["string:sabotage"][..]),
        ("Resume", &[][..]),
    ] {
        let (ok, out) = deployer_call(&bus, Some(dewy_user), method, args);
        assert!(
            !ok && out.contains("not allowed for uid"),
            "{method} as dewy: {out}"
        );
    }
    assert_eq!(w.live(), None);
    assert!(!w.state().contains("paused"), "{}", w.state());
    assert_allowed(deployer_call(&bus, Some(nobody), "Status", &[]), "Status");
    let out = assert_allowed(
        deployer_call(&bus, Some(dewy_user), "Offer", &["string:v1.0.0"]),
        "Offer as dewy",
    );
    assert_eq!(result_kind(&out), "deployed", "{out}\n{}", deployer.log());
    assert_eq!(w.live().as_deref(), Some("v1.0.0"));
    assert!(
        deployer.log().contains("D-Bus call refused"),
        "{}",
        deployer.log()
    );
    assert!(deployer.terminate(Duration::from_secs(20)).success());
}
