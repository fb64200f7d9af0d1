//! Release sources: the `Registry` trait every source implements, and the shared `Release` type.

pub mod calver;
pub mod file;
pub mod gcs;
pub mod github;
pub mod grpc;
mod link;
pub mod location;
pub mod oci;
pub mod platform;
pub mod query;
pub mod s3;
pub mod shipping;
pub mod version;
pub mod version_dirs;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

pub use location::{RegistryKind, RegistryLocation, ToLocation};

/// A stream of artifact bytes, as handed to the cache.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// One release chosen by a registry: the version and the artifact to deploy for this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The version tag as published (e.g. `v1.2.3`).
    pub version: String,
    /// File name of the artifact chosen for this host (e.g. `app_linux_amd64.tar.gz`).
    pub artifact: String,
    /// Where the artifact is fetched from; understood by the same registry's [`Registry::fetch`].
    pub artifact_url: String,
    /// Where the published SHA-256 checksums live (`checksums.txt`, `SHA256SUMS` or
    /// `<artifact>.sha256`), when the release has one.
    pub checksum_url: Option<String>,
    /// When the release was published (grace period reference).
    pub published_at: Option<DateTime<Utc>>,
    /// Detached signatures the source publishes for the artifact or for a checksum file
    /// (`app.tar.gz.minisig`, `SHA256SUMS.asc`, …); empty for images, whose signatures live in
    /// the registry ([`Registry::image_signatures`]).
    #[serde(default)]
    pub signatures: Vec<SignatureAsset>,
}

/// A detached signature published next to a release's files, and the file it signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureAsset {
    /// File name of the signature (`app.tar.gz.minisig`, `checksums.txt.sig`).
    pub name: String,
    /// Where the signature is fetched from; understood by [`Registry::fetch`].
    pub url: String,
    /// File name of the signed file: the release's artifact or a checksum file.
    pub signs: String,
    /// Where the signed file is fetched from (the artifact's URL when it signs the artifact).
    pub signs_url: String,
}

impl Release {
    /// Cache key in the Go Dewy's `tag--artifact` form.
    pub fn cache_key(&self) -> String {
        format!("{}--{}", self.version, self.artifact)
    }
}

/// Why a check produced no deployable release.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The newest release has no artifact for this host (yet).
    #[error("artifact not found for {version}")]
    ArtifactNotFound {
        version: String,
        published_at: Option<DateTime<Utc>>,
    },
    /// The source has no release that matches the version rules.
    #[error("no release found: {0}")]
    NoRelease(String),
    /// The source asked us to slow down.
    #[error("rate limited by the registry, retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// Anything else (network, authentication, malformed answers).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A release source. Implementations: `ghr://` ([`github`]), `file://` ([`file`]), `s3://`
/// ([`s3`]), `gs://` ([`gcs`]), `img://` ([`oci`]), `grpc://` ([`grpc`]).
#[async_trait::async_trait]
pub trait Registry: Send + Sync {
    /// The newest release that passes the version rules (pre-release opt-in, slot).
    async fn latest(&self) -> Result<Release, CheckError>;
    /// A given version (for `dewy deploy VERSION`), whatever the pre-release setting.
    async fn find(&self, version: &str) -> Result<Release, CheckError>;
    /// Stream the bytes behind an `artifact_url` or `checksum_url` returned by this registry.
    /// URLs that do not belong to the configured source are refused.
    async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream>;
    /// The cosign signatures stored for an image manifest `digest` (`sha256:…`) under the
    /// `sha256-<hex>.sig` tag of the same repository; empty when there is none. Only image
    /// sources (`img://`) have them.
    async fn image_signatures(&self, digest: &str) -> anyhow::Result<Vec<oci::cosign::CosignSignature>> {
        bail!("{digest}: only image sources (img://) store image signatures")
    }
    /// Whether the source takes shipping reports ([`Registry::report_shipped`]).
    fn reports_shipping(&self) -> bool {
        false
    }
    /// Record at the source that a version was deployed: the file
    /// [`shipping::Shipment::file_name`] as a release asset (GitHub) or an empty object next to
    /// the version's files (S3, GCS).
    async fn report_shipped(&self, shipment: &shipping::Shipment) -> anyhow::Result<()> {
        bail!(
            "this release source takes no shipping report ({})",
            shipment.version
        )
    }
    /// The version rules of the source (grammar, pre-release opt-in, slot).
    fn selector(&self) -> version::Selector {
        version::Selector::default()
    }
    /// Parse a version text of this source by its grammar ([`version::Selector::validate`]).
    fn version_of(&self, text: &str) -> Result<version::Version, version::VersionError> {
        self.selector().validate(text)
    }
}

/// Why a version named by someone else (the watcher, an operator) is not resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The text is not a version of the source's grammar; nothing was asked of the source.
    #[error(transparent)]
    Invalid(#[from] version::VersionError),
    /// The source has no such release, or could not be asked.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The source answered with something else than the version asked for.
    #[error("{0}")]
    Mismatch(String),
}

/// Resolve exactly `version` from the source's own answer: the text must follow the source's
/// version grammar, the release must exist, and the source must answer with that version (a
/// `v` prefix aside), in the same grammar. The artifact and checksum URLs are the source's.
pub async fn resolve(registry: &dyn Registry, version: &str) -> Result<Release, ResolveError> {
    let wanted = registry.version_of(version)?;
    let release = registry.find(version).await?;
    let found = registry.version_of(&release.version).map_err(|e| {
        ResolveError::Mismatch(format!(
            "the source answered {version} with an invalid version: {e}"
        ))
    })?;
    if found != wanted || found.build() != wanted.build() {
        return Err(ResolveError::Mismatch(format!(
            "the source answered {} with release {}",
            version::shown(version),
            version::shown(&release.version)
        )));
    }
    Ok(release)
}

/// Registry schemes this build implements.
pub const SUPPORTED_SCHEMES: &[&str] = &["ghr", "file", "s3", "gs", "img", "grpc"];

/// Settings that do not come from the registry URL.
#[derive(Clone)]
pub struct OpenOptions {
    /// Blue/green slot: only versions whose build metadata equals it are offered.
    pub slot: Option<String>,
    /// `User-Agent` of HTTP requests.
    pub user_agent: String,
    /// GitHub API base; overrides `GITHUB_API_URL` / `GITHUB_ENDPOINT`.
    pub github_api_url: Option<String>,
    /// GitHub token; overrides `GH_TOKEN` / `GITHUB_TOKEN` / the systemd credential.
    /// `Some("")` forces anonymous access.
    pub github_token: Option<String>,
    /// GitHub App credentials; overrides `GITHUB_APP_ID` and its companions.
    pub github_app: Option<github::app::AppCredentials>,
    /// CalVer format of the version tags (`--calver`); a `calver=` URL parameter wins.
    pub calver: Option<String>,
    /// GCS JSON API base of an emulator (no authentication); overrides `STORAGE_EMULATOR_HOST`.
    pub gcs_endpoint: Option<String>,
    /// S3 page size of ListObjectsV2 (`None`: the server's default of 1000); for tests.
    pub s3_max_keys: Option<i32>,
    /// Tags per page when listing an OCI repository (`None`: 1000); for tests.
    pub oci_page_size: Option<usize>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            slot: None,
            user_agent: default_user_agent(),
            github_api_url: None,
            github_token: None,
            github_app: None,
            calver: None,
            gcs_endpoint: None,
            s3_max_keys: None,
            oci_page_size: None,
        }
    }
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field("slot", &self.slot)
            .field("user_agent", &self.user_agent)
            .field("github_api_url", &self.github_api_url)
            .field("github_token", &self.github_token.as_ref().map(|_| "<redacted>"))
            .field("github_app", &self.github_app)
            .field("calver", &self.calver)
            .field("gcs_endpoint", &self.gcs_endpoint)
            .field("s3_max_keys", &self.s3_max_keys)
            .field("oci_page_size", &self.oci_page_size)
            .finish()
    }
}

/// `dewy/<version>`.
pub fn default_user_agent() -> String {
    concat!("dewy/", env!("CARGO_PKG_VERSION")).to_string()
}

/// Parse and validate a registry URL (scheme, location and query keys) without opening it.
pub fn parse_url(s: &str) -> anyhow::Result<url::Url> {
    RegistryLocation::parse(s).map(|l| l.url().clone())
}

/// Open the registry at `location`: a [`RegistryLocation`] parsed by the config, or a URL text.
pub fn open<L: ToLocation + ?Sized>(location: &L, opts: &OpenOptions) -> anyhow::Result<Arc<dyn Registry>> {
    let location = location.to_location()?;
    Ok(match location.kind() {
        RegistryKind::GitHub(l) => Arc::new(github::open_at(l.clone(), opts)?),
        RegistryKind::File(l) => Arc::new(file::open_at(l.clone(), opts)?),
        RegistryKind::S3(l) => Arc::new(s3::open_at(l.clone(), opts)?),
        RegistryKind::Gcs(l) => Arc::new(gcs::open_at(l.clone(), opts)?),
        RegistryKind::Oci(l) => Arc::new(oci::open_at(l.clone(), opts)?),
        RegistryKind::Grpc(l) => Arc::new(grpc::open_at(l.clone(), location.url(), opts)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_url_schemes() {
        assert!(parse_url("ghr://linyows/dewy?pre-release=true").is_ok());
        assert!(parse_url("file:///srv/releases?artifact=app.tar.gz").is_ok());
        assert!(parse_url("s3://ap-northeast-1/bucket/prefix?endpoint=http://127.0.0.1:9000").is_ok());
        assert!(parse_url("gs://bucket/prefix?calver=YYYY.0M.MICRO").is_ok());
        let err = parse_url("gs://bucket/p?endpoint=http://x")
            .expect_err("gs")
            .to_string();
        assert!(err.contains("unknown parameter \"endpoint\""), "{err}");
        let err = parse_url("s3://r/b?regoin=x").expect_err("s3").to_string();
        assert!(err.contains("unknown parameter \"regoin\""), "{err}");
        assert!(parse_url("img://ghcr.io/o/r?pre-release=true").is_ok());
        assert!(parse_url("grpc://127.0.0.1:9000?no-tls=true&artifact=app.tgz").is_ok());
        let err = parse_url("grpc://x/y").expect_err("grpc path").to_string();
        assert!(err.contains("expected grpc://host:port"), "{err}");
        let err = parse_url("ftp://x/y").expect_err("ftp").to_string();
        assert!(err.contains("unknown registry scheme \"ftp\""), "{err}");
        assert!(
            err.contains("ghr://, file://, s3://, gs://, img://, grpc://"),
            "{err}"
        );
        let err = parse_url("linyows/dewy").expect_err("bare").to_string();
        assert!(err.contains("expected scheme://"), "{err}");
        let err = parse_url("ghr://o/r?bogus=1").expect_err("key").to_string();
        assert!(err.contains("unknown parameter \"bogus\""), "{err}");
    }

    /// A source that answers every look-up with the same release.
    struct Answers(Release);

    #[async_trait::async_trait]
    impl Registry for Answers {
        async fn latest(&self) -> Result<Release, CheckError> {
            Ok(self.0.clone())
        }
        async fn find(&self, _version: &str) -> Result<Release, CheckError> {
            Ok(self.0.clone())
        }
        async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
            bail!("not fetched: {url}")
        }
    }

    fn answering(version: &str) -> Answers {
        Answers(Release {
            version: version.to_string(),
            artifact: "app.tar.gz".into(),
            artifact_url: "file:///srv/app.tar.gz".into(),
            checksum_url: None,
            published_at: None,
            signatures: Vec::new(),
        })
    }

    #[tokio::test]
    async fn resolve_takes_only_the_version_asked_for() {
        let ok = resolve(&answering("v1.2.3"), "1.2.3")
            .await
            .expect("prefix aside");
        assert_eq!(ok.version, "v1.2.3");
        let err = resolve(&answering("v1.2.4"), "v1.2.3")
            .await
            .expect_err("other version");
        assert!(matches!(err, ResolveError::Mismatch(_)), "{err}");
        let err = resolve(&answering("v1.2.3+green"), "v1.2.3+blue")
            .await
            .expect_err("other slot");
        assert!(matches!(err, ResolveError::Mismatch(_)), "{err}");
        let err = resolve(&answering("v1.2.3\nx"), "v1.2.3")
            .await
            .expect_err("hostile answer");
        assert!(err.to_string().contains("invalid version"), "{err}");
        let err = resolve(&answering("v1.2.3"), "v1.2.3\u{1b}[2J")
            .await
            .expect_err("hostile ask");
        assert!(matches!(err, ResolveError::Invalid(_)), "{err}");
    }

    #[test]
    fn options_debug_redacts_token() {
        let opts = OpenOptions {
            github_token: Some("secret".into()),
            ..OpenOptions::default()
        };
        let shown = format!("{opts:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(opts.user_agent.starts_with("dewy/"));
    }
}
