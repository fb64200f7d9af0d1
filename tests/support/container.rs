//! Container mode in a test or benchmark process: settings for an app, dewy's proxy in-process,
//! a deployer wired to it, releases of pushed images, and clean-up of the app's containers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dewy::config::{self, Layer, Mode, Settings, Sources};
use dewy::deploy::Deployer;
use dewy::proxy::{PortSpec, ProxyHandle, Server};
use dewy::registry::Release;

use super::docker;

/// Removes the app's containers and images (its repository is named after it) when a test
/// ends, passed or not.
pub struct Cleanup {
    app: String,
}

impl Cleanup {
    pub fn new(app: &str) -> Self {
        Cleanup { app: app.to_string() }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        docker::remove_app_containers(&self.app);
        let ids = std::process::Command::new("docker")
            .args(["images", "-q", "--filter", &format!("reference=*/{}", self.app)])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut ids: Vec<&str> = ids.lines().collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "-f", id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

pub fn unique(name: &str) -> String {
    format!("dt-{name}-{}", std::process::id())
}

pub fn settings(app: &str, root: &Path, ports: &[String], tune: impl FnOnce(&mut Layer)) -> Settings {
    std::fs::create_dir_all(root.join("registry")).unwrap();
    let mut sources = Sources::default();
    let f = &mut sources.flags;
    f.mode = Some(Mode::Container);
    f.registry = Some(format!("file://{}", root.join("registry").display()));
    f.root = Some(root.to_path_buf());
    f.port = Some(ports.to_vec());
    f.health_path = Some("/health".into());
    f.health_timeout = Some("20s".parse().unwrap());
    f.drain_time = Some("5s".parse().unwrap());
    f.on_stop = Some(config::container::OnStop::Remove);
    tune(f);
    config::load(app, &sources).unwrap_or_else(|e| panic!("settings: {e}"))
}

/// dewy's proxy, in this process, on the settings' ports.
pub async fn start_proxy(settings: &Settings) -> (ProxyHandle, Server) {
    let container = settings.container.as_ref().expect("container settings");
    let specs: Vec<PortSpec> = container.ports.clone();
    let listeners = specs
        .iter()
        .map(|s| std::net::TcpListener::bind(s.listen).expect("proxy port"))
        .collect();
    dewy::proxy::start(specs, listeners, None, container.proxy_idle_timeout)
        .await
        .expect("proxy")
}

pub fn open(settings: Settings, proxy: &ProxyHandle) -> Arc<Deployer> {
    let registry = dewy::registry::open(&settings.registry, &Default::default()).expect("registry");
    let d = Deployer::open(settings, registry).expect("deployer");
    d.set_proxy(Arc::new(proxy.clone()));
    d
}

pub fn release(version: &str, refs: &(String, String)) -> Release {
    Release {
        version: version.into(),
        artifact: refs.0.clone(),
        artifact_url: refs.1.clone(),
        checksum_url: None,
        published_at: None,
        signatures: Vec::new(),
    }
}

/// One HTTP GET through 127.0.0.1:port; the body on a 200.
pub fn get(port: u16, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| format!("read: {e}"))?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.trim().to_string()),
        _ => Err(format!("bad answer {out:?}")),
    }
}
