//! `ghr://owner/repo` registry: GitHub Releases through the REST API, with conditional
//! polling, pre-release opt-in, slots, platform artifact choice and asset downloads.

mod api;
pub mod app;
pub(crate) mod status;

use anyhow::{bail, Context};
use async_trait::async_trait;
use url::Url;

use super::platform;
use super::query::{self, SourceQuery};
use super::version::Selector;
use super::{ByteStream, CheckError, OpenOptions, Registry, Release, SignatureAsset};
use api::{ApiRelease, Client};

const DEFAULT_API_URL: &str = "https://api.github.com";

/// Where a `ghr://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub owner: String,
    pub repo: String,
    pub query: SourceQuery,
}

/// Validate a `ghr://owner/repo?artifact=…&pre-release=…` URL.
pub fn parse_location(url: &Url) -> anyhow::Result<Location> {
    if url.scheme() != "ghr" {
        bail!("not a ghr:// registry URL: {url}");
    }
    if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
        bail!("registry URL {url} must be ghr://owner/repo (no user, password or port)");
    }
    let owner = url.host_str().unwrap_or_default().to_string();
    if owner.is_empty() {
        bail!("registry URL {url} has no owner; expected ghr://owner/repo");
    }
    let path = url.path().trim_matches('/');
    if path.is_empty() {
        bail!("registry URL {url} has no repository; expected ghr://owner/repo");
    }
    if path.contains('/') {
        bail!("registry URL {url} has extra path segments; expected ghr://owner/repo");
    }
    for (what, name) in [("owner", owner.as_str()), ("repository", path)] {
        let valid = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid || name == "." || name == ".." {
            bail!("invalid GitHub {what} \"{name}\" in registry URL {url}");
        }
    }
    Ok(Location {
        owner,
        repo: path.to_string(),
        query: query::parse(url)?,
    })
}

/// GitHub Releases of one repository.
#[derive(Debug)]
pub struct GithubRegistry {
    location: Location,
    selector: Selector,
    client: Client,
}

/// Open a `ghr://` registry. The API base comes from `opts`, `GITHUB_API_URL`,
/// `GITHUB_ENDPOINT` or api.github.com. A GitHub App (`opts`, or `GITHUB_APP_ID` and its
/// companions, see [`app::AppCredentials::from_env`]) wins over a token; the token comes from
/// `opts`, `GH_TOKEN`, `GITHUB_TOKEN` or the systemd credential `github-token`. Without either,
/// access is anonymous.
pub fn open(url: &Url, opts: &OpenOptions) -> anyhow::Result<GithubRegistry> {
    open_at(parse_location(url)?, opts)
}

/// [`open`] with the URL already parsed into `location`.
pub fn open_at(location: Location, opts: &OpenOptions) -> anyhow::Result<GithubRegistry> {
    let base = api_base(opts)?;
    let app = match &opts.github_app {
        Some(creds) => Some(creds.clone()),
        None => app::AppCredentials::from_env()?,
    };
    let client = match app {
        Some(creds) => {
            let auth = app::AppAuth::new(&creds).context("GitHub App authentication")?;
            Client::new(base, None, &opts.user_agent)?.with_app(auth)
        }
        None => {
            let token = token(opts)?;
            if token.is_none() {
                api::warn_anonymous_once(&location.owner, &location.repo);
            }
            Client::new(base, token, &opts.user_agent)?
        }
    };
    let selector = super::version_dirs::selector(&location.query, opts)?;
    Ok(GithubRegistry {
        location,
        selector,
        client,
    })
}

fn api_base(opts: &OpenOptions) -> anyhow::Result<Url> {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let raw = opts
        .github_api_url
        .clone()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| from_env("GITHUB_API_URL"))
        .or_else(|| from_env("GITHUB_ENDPOINT"))
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let base = Url::parse(raw.trim()).with_context(|| format!("invalid GitHub API URL \"{raw}\""))?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        bail!("invalid GitHub API URL \"{raw}\": expected http(s)://host[/path]");
    }
    Ok(base)
}

/// The GitHub token: the option, then `GH_TOKEN`, `GITHUB_TOKEN`, then the systemd credential
/// `github-token` (also used for ghcr.io images).
pub(crate) fn token(opts: &OpenOptions) -> anyhow::Result<Option<String>> {
    if let Some(token) = &opts.github_token {
        let token = token.trim();
        return Ok((!token.is_empty()).then(|| token.to_string()));
    }
    for name in ["GH_TOKEN", "GITHUB_TOKEN"] {
        if let Ok(value) = std::env::var(name) {
            if !value.trim().is_empty() {
                return Ok(Some(value.trim().to_string()));
            }
        }
    }
    let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
        return Ok(None);
    };
    let path = std::path::Path::new(&dir).join("github-token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading GitHub token from {}", path.display())),
    }
}

/// `v1.2.3` and `1.2.3` name the same release.
fn same_tag(tag: &str, wanted: &str) -> bool {
    let strip = |s: &str| s.strip_prefix(['v', 'V']).unwrap_or(s).to_string();
    tag == wanted || strip(tag) == strip(wanted)
}

impl GithubRegistry {
    /// The repository owner.
    pub fn owner(&self) -> &str {
        &self.location.owner
    }

    /// The repository name.
    pub fn repo(&self) -> &str {
        &self.location.repo
    }

    /// Turn a GitHub release into a [`Release`] for this host, or say its artifact is missing.
    fn to_release(&self, rel: &ApiRelease) -> Result<Release, CheckError> {
        let assets: Vec<&api::ApiAsset> = rel.assets.iter().filter(|a| a.is_uploaded()).collect();
        let names: Vec<&str> = assets.iter().map(|a| a.name.as_str()).collect();
        let published_at = rel.published_at.or(rel.created_at);
        let Some(name) = platform::choose(&names, self.location.query.artifact.as_deref()) else {
            return Err(CheckError::ArtifactNotFound {
                version: rel.tag_name.clone(),
                published_at,
            });
        };
        let url_of = |n: &str| assets.iter().find(|a| a.name == n).map(|a| a.url.clone());
        let artifact_url = url_of(name).ok_or_else(|| {
            CheckError::Other(anyhow::anyhow!("asset {name} vanished from {}", rel.tag_name))
        })?;
        let checksum_url = platform::checksum_asset(&names, name).and_then(url_of);
        let signatures = platform::signature_assets(&names, name)
            .into_iter()
            .filter_map(|(sig, signed)| {
                Some(SignatureAsset {
                    name: sig.to_string(),
                    url: url_of(sig)?,
                    signs: signed.to_string(),
                    signs_url: url_of(signed)?,
                })
            })
            .collect();
        Ok(Release {
            version: rel.tag_name.clone(),
            artifact: name.to_string(),
            artifact_url,
            checksum_url,
            published_at,
            signatures,
        })
    }
}

#[async_trait]
impl Registry for GithubRegistry {
    async fn latest(&self) -> Result<Release, CheckError> {
        let (owner, repo) = (self.owner(), self.repo());
        let releases = self.client.list_releases(owner, repo).await?;
        let allow_pre = self.selector.prerelease;
        let candidates = releases
            .iter()
            .filter(|r| !r.draft && (allow_pre || !r.prerelease))
            .map(|r| (r.tag_name.as_str(), r));
        let Some((version, rel)) = self.selector.newest(candidates) else {
            let scheme = match &self.selector.calver {
                Some(format) => format!("a CalVer tag ({format})"),
                None => "a SemVer tag".to_string(),
            };
            let mut rules = vec![scheme.as_str()];
            if !allow_pre {
                rules.push("no pre-release");
            }
            let slot = self
                .selector
                .slot
                .as_ref()
                .map(|s| format!("build metadata +{s}"));
            if let Some(slot) = &slot {
                rules.push(slot);
            }
            return Err(CheckError::NoRelease(format!(
                "none of the {} published releases of {owner}/{repo} has {}",
                releases.iter().filter(|r| !r.draft).count(),
                rules.join(", ")
            )));
        };
        tracing::debug!(version = %version, "Found latest release");
        self.to_release(rel)
    }

    async fn find(&self, version: &str) -> Result<Release, CheckError> {
        let (owner, repo) = (self.owner(), self.repo());
        let releases = self.client.list_releases(owner, repo).await?;
        let listed = releases
            .iter()
            .filter(|r| !r.draft)
            .find(|r| r.tag_name == version)
            .or_else(|| {
                releases
                    .iter()
                    .filter(|r| !r.draft)
                    .find(|r| same_tag(&r.tag_name, version))
            });
        if let Some(rel) = listed {
            return self.to_release(rel);
        }
        // Older than the listed pages: ask for the tag directly.
        let mut tags = vec![version.to_string()];
        match self.selector.parse(version) {
            Some(_) if version.starts_with(['v', 'V']) => tags.push(version[1..].to_string()),
            Some(_) => tags.push(format!("v{version}")),
            None => {}
        }
        for tag in tags {
            if let Some(rel) = self.client.release_by_tag(owner, repo, &tag).await? {
                if !rel.draft {
                    return self.to_release(&rel);
                }
            }
        }
        Err(CheckError::NoRelease(format!(
            "{owner}/{repo} has no published release tagged {version}"
        )))
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
        self.client.fetch(url).await
    }

    fn reports_shipping(&self) -> bool {
        true
    }

    /// A release asset named after the shipment whose text is the same sentence with spaces,
    /// as Go Dewy uploads (the token, or the App, needs Contents: write).
    async fn report_shipped(&self, shipment: &super::shipping::Shipment) -> anyhow::Result<()> {
        let (owner, repo) = (self.owner(), self.repo());
        let asset = api::NewAsset {
            name: shipment.file_name(),
            content_type: "text/plain",
            body: shipment.sentence().into_bytes(),
        };
        self.client
            .upload_asset(owner, repo, &shipment.version, asset)
            .await
    }

    fn selector(&self) -> Selector {
        self.selector.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> anyhow::Result<Location> {
        parse_location(&Url::parse(s).expect("url"))
    }

    #[test]
    fn location_parsing() {
        let l = loc("ghr://linyows/dewy-testapp/?pre-release=true").expect("ok");
        assert_eq!((l.owner.as_str(), l.repo.as_str()), ("linyows", "dewy-testapp"));
        assert!(l.query.prerelease);
        assert!(loc("ghr://linyows").is_err());
        assert!(loc("ghr:///dewy").is_err());
        assert!(loc("ghr://linyows/dewy/extra").is_err());
        assert!(loc("ghr://linyows/de%20wy").is_err());
        let err = loc("ghr://o/r?foo=1").expect_err("unknown key").to_string();
        assert!(err.contains("unknown parameter \"foo\""), "{err}");
    }

    #[test]
    fn explicit_options_win() {
        let opts = OpenOptions {
            github_api_url: Some("http://127.0.0.1:9/api/v3/".into()),
            github_token: Some(" t0k ".into()),
            ..OpenOptions::default()
        };
        assert_eq!(
            api_base(&opts).expect("base").as_str(),
            "http://127.0.0.1:9/api/v3/"
        );
        assert_eq!(token(&opts).expect("token").as_deref(), Some("t0k"));
        let anon = OpenOptions {
            github_token: Some(String::new()),
            ..OpenOptions::default()
        };
        assert_eq!(token(&anon).expect("token"), None);
        let bad = OpenOptions {
            github_api_url: Some("ftp://x".into()),
            ..OpenOptions::default()
        };
        assert!(api_base(&bad).is_err());
    }

    #[test]
    fn tag_matching_tolerates_prefix() {
        assert!(same_tag("v1.2.3", "1.2.3"));
        assert!(same_tag("1.2.3", "v1.2.3"));
        assert!(same_tag("v1.2.3", "v1.2.3"));
        assert!(!same_tag("v1.2.3", "1.2.4"));
    }
}
