//! A real container engine and OCI registry for the container-mode tests: dockerd (started here
//! when nothing answers), a private `docker-registry` ([`OciServer`]) on a free 127.0.0.1 port
//! (optionally with htpasswd auth), and test images made with `docker import` from the `container_app` example.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::oci::{self, Auth, OciServer};
use super::wait_for;

/// Run `docker ARGS` and return stdout, panicking with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    docker_in(None, args)
}

/// `docker --config DIR ARGS` (a private client config, for logins that must not touch ~/.docker).
pub fn docker_in(config: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new("docker");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running docker {args:?}: {e} (apt-get install docker.io)"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn engine_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Make sure a container engine answers (starting dockerd when it does not); panics otherwise,
/// so that a machine without Docker fails these tests instead of skipping them.
pub fn ensure_engine() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if engine_answers() {
            return;
        }
        assert!(
            std::env::var_os("DOCKER_HOST").is_none(),
            "DOCKER_HOST is set but no engine answers there"
        );
        let log = std::env::temp_dir().join("dewy-test-dockerd.log");
        let out = std::fs::File::create(&log).expect("dockerd log");
        let err = out.try_clone().expect("dockerd log");
        // Left running for later tests (and later runs): it is the machine's engine, as if
        // .ci/run had started it.
        static DOCKERD: Mutex<Option<Child>> = Mutex::new(None);
        let child = Command::new("dockerd")
            .args(["--host", "unix:///var/run/docker.sock"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("dockerd is needed for the container tests: apt-get install docker.io containerd runc");
        *DOCKERD.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        wait_for("dockerd to answer", Duration::from_secs(60), || {
            engine_answers().then_some(())
        });
    });
}

/// A private OCI registry ([`OciServer`]) the engine pushes to; stopped on drop.
pub struct Registry {
    pub server: OciServer,
    pub host: String,
    /// Client config dir holding the login, when the registry has auth.
    pub client_config: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Without auth.
    pub fn start() -> Registry {
        Self::start_with(Auth::None)
    }

    /// With htpasswd auth for [`oci::USER`]/[`oci::PASSWORD`]; `client_config` is logged in.
    pub fn start_authenticated() -> Registry {
        Self::start_with(Auth::Basic)
    }

    fn start_with(auth: Auth) -> Registry {
        ensure_engine();
        let server = OciServer::start(auth);
        let host = server.host();
        let dir = tempfile::tempdir().expect("tempdir");
        let client_config = (auth == Auth::Basic).then(|| {
            let c = dir.path().join("client");
            std::fs::create_dir_all(&c).expect("client config dir");
            let mut login = Command::new("docker")
                .arg("--config")
                .arg(&c)
                .args(["login", &host, "-u", oci::USER, "--password-stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("docker login");
            use std::io::Write;
            login
                .stdin
                .take()
                .expect("stdin")
                .write_all(oci::PASSWORD.as_bytes())
                .expect("password");
            let out = login.wait_with_output().expect("docker login");
            assert!(
                out.status.success(),
                "docker login: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            c
        });
        Registry {
            server,
            host,
            client_config,
            _dir: dir,
        }
    }

    /// Build `repo:tag` from the test app and push it; returns (tag reference, digest reference).
    pub fn push(&self, repo: &str, image: &TestImage) -> (String, String) {
        let tagged = format!("{}/{repo}:{}", self.host, image.version);
        build_image(&tagged, image);
        docker_in(self.client_config.as_deref(), &["push", &tagged]);
        let digest = docker(&[
            "image",
            "inspect",
            "--format",
            "{{range .RepoDigests}}{{println .}}{{end}}",
            &tagged,
        ]);
        let wanted = format!("{}/{repo}@", self.host);
        let by_digest = digest
            .lines()
            .find(|l| l.starts_with(&wanted))
            .unwrap_or_else(|| panic!("no digest for {tagged} in {digest:?}"))
            .to_string();
        (tagged, by_digest)
    }
}

/// What a test image does.
#[derive(Clone)]
pub struct TestImage {
    pub version: String,
    pub healthy: bool,
    /// `EXPOSE`d ports (the app listens on the first, and on the second as its admin port).
    pub expose: Vec<u16>,
}

impl TestImage {
    pub fn new(version: &str) -> Self {
        TestImage {
            version: version.into(),
            healthy: true,
            expose: vec![8080],
        }
    }
}

/// A tar (in memory: nothing is left on disk) with the test app at `/app` and the shared
/// libraries it needs (no base image can be pulled here), made once per test binary.
fn rootfs_tar() -> &'static [u8] {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    TAR.get_or_init(|| {
        let bin = app_binary();
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(true);
        b.append_path_with_name(&bin, "app").expect("tar app");
        let ldd = Command::new("ldd").arg(&bin).output().expect("ldd");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let Some(p) = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
            else {
                continue;
            };
            let name = p.strip_prefix("/").expect("absolute");
            b.append_path_with_name(&p, name)
                .unwrap_or_else(|e| panic!("tar {}: {e}", p.display()));
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o1777);
        h.set_size(0);
        b.append_data(&mut h, "tmp/", std::io::empty()).expect("tar tmp");
        b.into_inner().expect("tar")
    })
}

/// The `container_app` example binary (built by `cargo test`; built here when missing).
fn app_binary() -> PathBuf {
    let dewy = PathBuf::from(env!("CARGO_BIN_EXE_dewy"));
    let bin = dewy.parent().expect("target dir").join("examples/container_app");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "--example", "container_app"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example container_app");
        assert!(st.success(), "building the container_app example failed");
    }
    bin
}

/// `docker import` the test app as `reference`.
pub fn build_image(reference: &str, image: &TestImage) {
    let mut args: Vec<String> = vec!["import".into()];
    let mut change = |c: String| {
        args.push("-c".into());
        args.push(c);
    };
    change("ENTRYPOINT [\"/app\"]".into());
    change(format!("ENV APP_VERSION={}", image.version));
    if !image.healthy {
        change("ENV APP_HEALTH=fail".into());
    }
    if let Some(p) = image.expose.first() {
        change(format!("ENV PORT={p}"));
    }
    if let Some(p) = image.expose.get(1) {
        change(format!("ENV ADMIN_PORT={p}"));
    }
    for p in &image.expose {
        change(format!("EXPOSE {p}"));
    }
    args.push("-".into());
    args.push(reference.to_string());
    let mut child = Command::new("docker")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker import");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(rootfs_tar()).expect("writing the image tar");
    }
    let out = child.wait_with_output().expect("docker import");
    assert!(
        out.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// IDs of the containers with label `dewy.app=APP` (all states).
pub fn app_containers(app: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=dewy.app={app}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Remove every container of `app` (test clean-up).
pub fn remove_app_containers(app: &str) {
    for id in app_containers(app) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A private Podman API service (Podman's Docker-compatible socket) with its own storage, runc as
/// the runtime and the test registries on 127.0.0.1 allowed over plain HTTP; killed on drop.
pub struct Podman {
    child: Child,
    /// `unix://…` for `DOCKER_HOST`.
    pub host: String,
    dir: tempfile::TempDir,
    /// A socket placed outside `dir` (removed on drop).
    outside: Option<PathBuf>,
}

impl Podman {
    /// Start `podman system service` on a socket in a temporary directory.
    pub fn start() -> Podman {
        Podman::start_on(None)
    }

    /// Start it on `sock` (a free path, e.g. Podman's rootful `/run/podman/podman.sock`), its
    /// storage still private; the socket file goes on drop.
    pub fn start_at(sock: &Path) -> Podman {
        Podman::start_on(Some(sock.to_path_buf()))
    }

    fn start_on(outside: Option<PathBuf>) -> Podman {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        std::fs::write(
            p("containers.conf"),
            "[engine]\nruntime = \"runc\"\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n",
        )
        .expect("containers.conf");
        std::fs::write(
            p("registries.conf"),
            "unqualified-search-registries = []\n[[registry]]\nlocation = \"127.0.0.1\"\ninsecure = true\n",
        )
        .expect("registries.conf");
        let sock = outside.clone().unwrap_or_else(|| p("podman.sock"));
        if let Some(parent) = sock.parent() {
            std::fs::create_dir_all(parent).expect("the socket's directory");
        }
        let log = std::fs::File::create(p("podman.log")).expect("log");
        let child = Command::new("podman")
            .env("CONTAINERS_CONF", p("containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", p("registries.conf"))
            .arg("--root")
            .arg(p("root"))
            .arg("--runroot")
            .arg(p("run"))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("podman is needed: apt-get install podman");
        wait_for("the Podman socket", Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        });
        Podman {
            child,
            host: format!("unix://{}", sock.display()),
            dir,
            outside,
        }
    }

    /// Ids of the running containers labelled `dewy.app=<app>`, through the Podman socket.
    pub fn app_containers(&self, app: &str) -> Vec<String> {
        let out = Command::new("podman")
            .args(["--url", &self.host, "ps", "-q", "--filter"])
            .arg(format!("label=dewy.app={app}"))
            .output()
            .expect("podman ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The service's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("podman.log")).unwrap_or_default()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["--url", &self.host, "rm", "-af"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(sock) = &self.outside {
            let _ = std::fs::remove_file(sock);
        }
    }
}
