//! The `registry` setting parsed once: the kind of release source with its parameters, and the
//! URL it came from. The config keeps a [`RegistryLocation`]; [`super::open`] opens one.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context};
use url::Url;

use super::{file, gcs, github, grpc, oci, s3, SUPPORTED_SCHEMES};

/// A release source's kind and its parameters, as its URL gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryKind {
    /// `ghr://owner/repo`: GitHub Releases.
    GitHub(github::Location),
    /// `file:///dir`: version directories on the local file system.
    File(file::Location),
    /// `s3://region/bucket/prefix`: version prefixes in an S3 bucket.
    S3(s3::Location),
    /// `gs://bucket/prefix`: version prefixes in a GCS bucket.
    Gcs(gcs::Location),
    /// `img://host/repository`: tags of an OCI image repository.
    Oci(oci::Location),
    /// `grpc://host:port`: a server of Go Dewy's `dewy.RegistryService`.
    Grpc(grpc::Location),
}

/// A checked registry URL: its scheme, location and query keys are valid for its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLocation {
    url: Url,
    kind: RegistryKind,
}

impl RegistryLocation {
    /// Parse and validate a registry URL (scheme, location and query keys) without opening it.
    pub fn parse(s: &str) -> anyhow::Result<RegistryLocation> {
        let url = Url::parse(s.trim()).with_context(|| {
            format!(
                "invalid registry URL \"{s}\": expected scheme://… (supported: ghr://owner/repo, file:///dir, s3://region/bucket/prefix, gs://bucket/prefix, img://host/repository, grpc://host:port)"
            )
        })?;
        let kind = match url.scheme() {
            "ghr" => RegistryKind::GitHub(github::parse_location(&url)?),
            "file" => RegistryKind::File(file::parse_location(&url)?),
            "s3" => RegistryKind::S3(s3::parse_location(&url)?),
            "gs" => RegistryKind::Gcs(gcs::parse_location(&url)?),
            "img" => RegistryKind::Oci(oci::parse_location(&url)?),
            "grpc" => RegistryKind::Grpc(grpc::parse_location(&url)?),
            scheme => bail!(
                "unknown registry scheme \"{scheme}\" in registry URL {s}; supported: {}",
                supported_list()
            ),
        };
        Ok(RegistryLocation { url, kind })
    }

    /// The URL, as parsed.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The kind of source and its parameters.
    pub fn kind(&self) -> &RegistryKind {
        &self.kind
    }
}

impl FromStr for RegistryLocation {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<RegistryLocation> {
        RegistryLocation::parse(s)
    }
}

impl fmt::Display for RegistryLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.url.fmt(f)
    }
}

/// What [`super::open`] opens: a [`RegistryLocation`] as the config parsed it, or the text of a
/// registry URL, parsed then with the same checks and messages.
pub trait ToLocation {
    /// The location, borrowed when it is parsed already.
    fn to_location(&self) -> anyhow::Result<Cow<'_, RegistryLocation>>;
}

impl ToLocation for RegistryLocation {
    fn to_location(&self) -> anyhow::Result<Cow<'_, RegistryLocation>> {
        Ok(Cow::Borrowed(self))
    }
}

impl ToLocation for str {
    fn to_location(&self) -> anyhow::Result<Cow<'_, RegistryLocation>> {
        RegistryLocation::parse(self).map(Cow::Owned)
    }
}

impl ToLocation for String {
    fn to_location(&self) -> anyhow::Result<Cow<'_, RegistryLocation>> {
        self.as_str().to_location()
    }
}

/// `ghr://, file://, …` for error messages.
fn supported_list() -> String {
    SUPPORTED_SCHEMES
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_parses_into_its_kind() {
        let kind = |s: &str| RegistryLocation::parse(s).expect("valid").kind().clone();
        assert!(matches!(kind("ghr://linyows/dewy"), RegistryKind::GitHub(l) if l.repo == "dewy"));
        assert!(matches!(kind("file:///srv/releases"), RegistryKind::File(_)));
        assert!(matches!(
            kind("s3://ap-northeast-1/bucket/prefix"),
            RegistryKind::S3(_)
        ));
        assert!(matches!(kind("gs://bucket/prefix"), RegistryKind::Gcs(_)));
        assert!(matches!(kind("img://ghcr.io/o/r"), RegistryKind::Oci(_)));
        assert!(matches!(kind("grpc://127.0.0.1:9000"), RegistryKind::Grpc(l) if l.port == 9000));
        let parsed: RegistryLocation = " file:///srv/rel?calver=YYYY.0M.MICRO ".parse().expect("valid");
        assert_eq!(parsed.to_string(), "file:///srv/rel?calver=YYYY.0M.MICRO");
        assert_eq!(parsed.url().scheme(), "file");
    }
}
