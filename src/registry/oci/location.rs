//! Where an `img://host/repository?…` URL points: the normalised registry host (Docker Hub's
//! aliases become `registry-1.docker.io`, one-segment Hub repositories get `library/`), the
//! repository, HTTP or HTTPS, and the version rules of the query.

use anyhow::bail;
use url::Url;

use crate::registry::query::{self, SourceQuery};

/// Docker Hub's registry host.
pub const DOCKER_HUB: &str = "registry-1.docker.io";

/// A parsed `img://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Registry host with its port when one is given (`127.0.0.1:5000`).
    pub host: String,
    /// Repository path (`library/nginx`, `owner/app`).
    pub repository: String,
    /// `http://` for loopback hosts and `plain-http=true`, otherwise `https://`.
    pub plain_http: bool,
    pub query: SourceQuery,
}

impl Location {
    /// `http(s)://host` of the registry's API.
    pub fn base(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.host
        )
    }

    /// `host/repository`, as `docker pull` names it.
    pub fn image(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }
}

/// Docker Hub's aliases become its registry host; other hosts are kept as written (lowercase).
pub fn normalise_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// Validate an `img://host/repository?pre-release=…&calver=…&plain-http=…` URL.
pub fn parse_location(url: &Url) -> anyhow::Result<Location> {
    if url.scheme() != "img" {
        bail!("not an img:// registry URL: {url}");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("registry URL {url} must not carry credentials; use DOCKER_USERNAME/DOCKER_PASSWORD, a systemd credential or docker login");
    }
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        bail!("registry URL {url} has no registry host; expected img://host/repository (e.g. img://ghcr.io/owner/app)");
    }
    let host = match url.port() {
        Some(port) => format!("{}:{port}", normalise_host(host)),
        None => normalise_host(host),
    };
    let mut repository = url.path().trim_matches('/').to_string();
    if repository.is_empty() {
        bail!("registry URL {url} has no repository; expected img://host/repository (e.g. img://docker.io/library/nginx)");
    }
    let last = repository.rsplit('/').next().unwrap_or_default();
    if let Some((_, tag)) = last.split_once([':', '@']) {
        bail!("registry URL {url} names a tag (\":{tag}\"); dewy chooses the tag itself: write img://host/repository");
    }
    for segment in repository.split('/') {
        if !valid_segment(segment) {
            bail!("invalid repository name \"{repository}\" in registry URL {url}: segments are lowercase letters, digits and single . _ - separators");
        }
    }
    if host == DOCKER_HUB && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    let (query, extra) = query::parse_with(url, &["plain-http"])?;
    if query.artifact.is_some() {
        bail!("parameter \"artifact\" does not apply to img:// (registry URL {url})");
    }
    let mut plain_http = is_loopback(&host);
    for (key, value) in extra {
        if key == "plain-http" {
            plain_http = match value.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!(
                    "parameter \"plain-http\" must be true or false (got \"{value}\") in registry URL {url}"
                ),
            };
        }
    }
    Ok(Location {
        host,
        repository,
        plain_http,
        query,
    })
}

fn valid_segment(s: &str) -> bool {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok_chars && edges(s.chars().next()) && edges(s.chars().last()) && !s.contains("..")
}

fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> anyhow::Result<Location> {
        parse_location(&Url::parse(s).expect("url"))
    }

    #[test]
    fn hosts_and_repositories() {
        let l = loc("img://docker.io/nginx").expect("hub");
        assert_eq!(
            (l.host.as_str(), l.repository.as_str()),
            (DOCKER_HUB, "library/nginx")
        );
        assert_eq!(l.base(), "https://registry-1.docker.io");
        let l = loc("img://index.docker.io/linyows/app?pre-release=true").expect("hub user");
        assert_eq!(l.repository, "linyows/app");
        assert!(l.query.prerelease);
        let l = loc("img://127.0.0.1:5000/test/app").expect("local");
        assert_eq!((l.host.as_str(), l.plain_http), ("127.0.0.1:5000", true));
        assert_eq!(l.image(), "127.0.0.1:5000/test/app");
        let l = loc("img://[::1]:5000/app").expect("v6");
        assert!(l.plain_http);
        let l = loc("img://ghcr.io/o/app?plain-http=true").expect("plain");
        assert_eq!(l.base(), "http://ghcr.io");
    }

    #[test]
    fn refused() {
        for (url, needle) in [
            ("img://ghcr.io", "no repository"),
            ("img://ghcr.io/o/app:v1", "names a tag"),
            ("img://ghcr.io/O/App", "invalid repository"),
            ("img://u:p@ghcr.io/o/a", "must not carry credentials"),
            ("img://ghcr.io/o/a?artifact=x", "does not apply"),
            (
                "img://ghcr.io/o/a?constraint=~1",
                "unknown parameter \"constraint\"",
            ),
            ("img://ghcr.io/o/a?plain-http=yes", "plain-http"),
        ] {
            let err = format!("{:#}", loc(url).expect_err(url));
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
