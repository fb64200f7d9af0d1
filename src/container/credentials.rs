//! Registry credentials for image pulls (and for the `img://` registry's tag listing):
//! `DOCKER_USERNAME`/`DOCKER_PASSWORD`, then the `auths` of `~/.docker/config.json`
//! (`$DOCKER_CONFIG/config.json` when set).

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;

/// A user name and password (or token) for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

/// The registry host of an image reference: the first path component when it looks like a
/// host (has `.` or `:`, or is `localhost`), else Docker Hub.
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// Credentials for `host`, from the environment first, then the Docker config file.
pub fn lookup(host: &str) -> anyhow::Result<Option<Credentials>> {
    if let (Ok(username), Ok(password)) = (std::env::var("DOCKER_USERNAME"), std::env::var("DOCKER_PASSWORD"))
    {
        if !username.is_empty() {
            return Ok(Some(Credentials { username, password }));
        }
    }
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    from_config(&text, host).with_context(|| format!("reading credentials from {}", path.display()))
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The `auths` entry for `host` in a Docker config file (`auth` is base64 of `user:password`).
pub fn from_config(text: &str, host: &str) -> anyhow::Result<Option<Credentials>> {
    let v: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let hub = host == "docker.io";
    let entry = auths.iter().find(|(k, _)| {
        let k = k.trim_start_matches("https://").trim_start_matches("http://");
        let k = k.split('/').next().unwrap_or(k);
        k == host || (hub && (k == "index.docker.io" || k == "registry-1.docker.io"))
    });
    let Some((_, entry)) = entry else {
        return Ok(None);
    };
    if let Some(auth) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .context("auth is not base64")?;
        let raw = String::from_utf8(raw).context("auth is not UTF-8")?;
        let (u, p) = raw.split_once(':').context("auth is not user:password")?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    let user = entry.get("username").and_then(|u| u.as_str());
    let pass = entry.get("password").and_then(|u| u.as_str());
    Ok(user.zip(pass).map(|(u, p)| Credentials {
        username: u.to_string(),
        password: p.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(registry_host("ghcr.io/linyows/myapp:v1"), "ghcr.io");
        assert_eq!(
            registry_host("127.0.0.1:5000/test/app@sha256:ab"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_host("localhost/app"), "localhost");
        assert_eq!(registry_host("library/nginx"), "docker.io");
        assert_eq!(registry_host("nginx"), "docker.io");
    }

    #[test]
    fn config_file_auths() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:s3cret:x");
        let text = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"127.0.0.1:5000":{{"username":"u","password":"p"}}}}}}"#
        );
        let hub = from_config(&text, "docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("bob", "s3cret:x")
        );
        let local = from_config(&text, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(local.username, "u");
        assert!(from_config(&text, "ghcr.io").unwrap().is_none());
        assert!(from_config("{}", "ghcr.io").unwrap().is_none());
        assert!(from_config(r#"{"auths":{"ghcr.io":{"auth":"!!"}}}"#, "ghcr.io").is_err());
        assert!(!format!("{hub:?}").contains("s3cret"));
    }
}
