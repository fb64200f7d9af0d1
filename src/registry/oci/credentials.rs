//! Registry credentials for a host: `DOCKER_USERNAME`/`DOCKER_PASSWORD`, `GITHUB_TOKEN` for
//! ghcr.io, the systemd credential `docker-password`, then the `auths` of `docker login`'s
//! `config.json` (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use serde::Deserialize;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The `Authorization: Basic …` value.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// Credentials for `host` (the normalised registry host, e.g. `registry-1.docker.io`), looked
/// up in the environment, then in systemd credentials, then in the docker config file.
pub fn lookup(host: &str) -> anyhow::Result<Option<Credentials>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let (Some(username), Some(password)) = (env("DOCKER_USERNAME"), env("DOCKER_PASSWORD")) {
        return Ok(Some(Credentials { username, password }));
    }
    if host == "ghcr.io" || host.ends_with(".ghcr.io") {
        // The same token as the GitHub source: GH_TOKEN, GITHUB_TOKEN or `github-token`.
        if let Some(token) = crate::registry::github::token(&Default::default())? {
            return Ok(Some(Credentials {
                username: "token".into(),
                password: token,
            }));
        }
    }
    if let (Some(username), Some(password)) = (
        env("DOCKER_USERNAME"),
        crate::systemd::credential("docker-password"),
    ) {
        return Ok(Some(Credentials { username, password }));
    }
    match config_path() {
        Some(path) => from_config_file(&path, host),
        None => Ok(None),
    }
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(Path::new(&dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker/config.json"))
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The entry of `host` in a docker `config.json`; a missing file means no credentials.
pub fn from_config_file(path: &Path, host: &str) -> anyhow::Result<Option<Credentials>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config: ConfigFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {} (docker config)", path.display()))?;
    let Some(entry) = config
        .auths
        .iter()
        .find(|(key, _)| config_key_host(key) == host)
        .map(|(_, e)| e)
    else {
        return Ok(None);
    };
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .with_context(|| format!("{}: auth of {host} is not base64", path.display()))?;
    let raw =
        String::from_utf8(raw).with_context(|| format!("{}: auth of {host} is not UTF-8", path.display()))?;
    let (username, password) = raw
        .split_once(':')
        .with_context(|| format!("{}: auth of {host} is not user:password", path.display()))?;
    Ok(Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

/// The registry host a `config.json` key names: `https://index.docker.io/v1/` → Docker Hub.
fn config_key_host(key: &str) -> String {
    let key = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or_default();
    super::location::normalise_host(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        let hub = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let text = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{hub}"}},
                "127.0.0.1:5000": {{"username": "bob", "password": "pw"}},
                "bad.example": {{"auth": "***"}}}}}}"#
        );
        std::fs::write(&path, text).expect("write");
        let hub = from_config_file(&path, "registry-1.docker.io")
            .expect("read")
            .expect("hub");
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("alice", "s3cret")
        );
        let local = from_config_file(&path, "127.0.0.1:5000")
            .expect("read")
            .expect("local");
        assert_eq!(local.username, "bob");
        assert!(from_config_file(&path, "quay.io").expect("read").is_none());
        let err = from_config_file(&path, "bad.example").expect_err("bad");
        assert!(format!("{err:#}").contains("not base64"), "{err:#}");
        assert!(from_config_file(&dir.path().join("none.json"), "x")
            .expect("missing")
            .is_none());
        assert!(!format!("{local:?}").contains("pw"));
    }
}
