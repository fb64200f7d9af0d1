//! The `<root>/<version>/<artifact>` layout shared by the `file://`, `s3://` and `gs://` sources:
//! choosing the version directory, finding a named one, and turning a version's files into a
//! [`Release`] (platform artifact, checksum file, signatures, publication time).

use chrono::{DateTime, Utc};

use super::platform;
use super::query::SourceQuery;
use super::version::{Selector, Version};
use super::{CheckError, OpenOptions, Release, SignatureAsset};

/// One file inside a version directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name relative to the version directory (nested keys appear as `sub/file`).
    pub name: String,
    /// When it was written (S3 LastModified, GCS timeCreated, file mtime).
    pub modified: Option<DateTime<Utc>>,
}

/// The version rules of a source: its query (`pre-release`, `calver`) and the instance's slot.
/// A `calver=` URL parameter wins over [`OpenOptions::calver`].
pub fn selector(query: &SourceQuery, opts: &OpenOptions) -> anyhow::Result<Selector> {
    let calver = match (&query.calver, opts.calver.as_deref().filter(|c| !c.is_empty())) {
        (Some(format), _) => Some(format.clone()),
        (None, Some(text)) => Some(super::calver::Format::parse(text).map_err(anyhow::Error::msg)?),
        (None, None) => None,
    };
    Ok(Selector {
        prerelease: query.prerelease,
        slot: opts.slot.clone().filter(|s| !s.is_empty()),
        calver,
    })
}

/// The newest version directory among `names` that passes the selector's rules.
pub fn newest_version<'a>(
    selector: &Selector,
    names: &'a [String],
    source: &str,
) -> Result<(Version, &'a str), CheckError> {
    selector
        .newest(names.iter().map(|n| (n.as_str(), n.as_str())))
        .ok_or_else(|| {
            CheckError::NoRelease(format!(
                "no version directory in {source} passes the version rules ({}, pre-release: {}, slot: {})",
                selector
                    .calver
                    .as_ref()
                    .map_or_else(|| "SemVer".to_string(), |f| format!("CalVer {f}")),
                selector.prerelease,
                selector.slot.as_deref().unwrap_or("any")
            ))
        })
}

/// The directory among `names` that names `wanted`; `v1.2.3` and `1.2.3` are the same.
pub fn find_version<'a>(names: &'a [String], wanted: &str) -> Option<&'a str> {
    let strip = |s: &str| s.strip_prefix(['v', 'V']).unwrap_or(s).to_string();
    names
        .iter()
        .find(|n| *n == wanted)
        .or_else(|| names.iter().find(|n| strip(n) == strip(wanted)))
        .map(String::as_str)
}

/// Build the release of `version` from its files. The artifact is `query.artifact` or the
/// platform's; `url_of` turns a file name into the URL the registry's `fetch` understands.
/// No artifact → [`CheckError::ArtifactNotFound`] with the oldest file's time (or `fallback`).
pub fn release_from(
    version: &str,
    entries: &[Entry],
    query: &SourceQuery,
    fallback: Option<DateTime<Utc>>,
    url_of: impl Fn(&str) -> Result<String, CheckError>,
) -> Result<Release, CheckError> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let published_at = sorted.iter().filter_map(|e| e.modified).min().or(fallback);
    let names: Vec<&str> = sorted.iter().map(|e| e.name.as_str()).collect();
    let Some(artifact) = platform::choose(&names, query.artifact.as_deref()) else {
        return Err(CheckError::ArtifactNotFound {
            version: version.to_string(),
            published_at,
        });
    };
    let checksum_url = match platform::checksum_asset(&names, artifact) {
        Some(name) => Some(url_of(name)?),
        None => None,
    };
    let mut signatures = Vec::new();
    for (sig, signed) in platform::signature_assets(&names, artifact) {
        signatures.push(SignatureAsset {
            name: sig.to_string(),
            url: url_of(sig)?,
            signs: signed.to_string(),
            signs_url: url_of(signed)?,
        });
    }
    Ok(Release {
        version: version.to_string(),
        artifact: artifact.to_string(),
        artifact_url: url_of(artifact)?,
        checksum_url,
        published_at,
        signatures,
    })
}

/// A store laid out as `<prefix>/<version>/<artifact>` (S3, GCS): it lists version names and
/// builds the release of one version; choosing the newest or a given version is shared here.
pub(super) trait VersionedStore {
    fn selector(&self) -> &Selector;
    /// How the source is named in messages.
    fn place(&self) -> String;
    async fn versions(&self) -> Result<Vec<String>, CheckError>;
    async fn release_in(&self, tag: &str) -> Result<Release, CheckError>;
}

/// The newest release of a store, by its selector.
pub(super) async fn latest_of(store: &impl VersionedStore) -> Result<Release, CheckError> {
    let names = store.versions().await?;
    let (_, tag) = newest_version(store.selector(), &names, &store.place())?;
    store.release_in(tag).await
}

/// A given version of a store.
pub(super) async fn find_in(store: &impl VersionedStore, version: &str) -> Result<Release, CheckError> {
    let names = store.versions().await?;
    match find_version(&names, version) {
        Some(tag) => store.release_in(tag).await,
        None => Err(CheckError::NoRelease(format!(
            "{} has no version {version}",
            store.place()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, secs: i64) -> Entry {
        Entry {
            name: name.to_string(),
            modified: DateTime::from_timestamp(secs, 0),
        }
    }

    #[test]
    fn release_uses_oldest_time_and_checksum() {
        let query = SourceQuery {
            artifact: Some("app.tar.gz".into()),
            ..SourceQuery::default()
        };
        let entries = [
            entry("app.tar.gz.sha256", 30),
            entry("app.tar.gz", 20),
            entry("app.tar.gz.minisig", 20),
            entry("app.tar.gz.sha256.asc", 30),
            entry("x", 10),
        ];
        let rel = release_from("v1", &entries, &query, None, |n| Ok(format!("u/{n}"))).expect("release");
        assert_eq!(rel.artifact_url, "u/app.tar.gz");
        assert_eq!(rel.checksum_url.as_deref(), Some("u/app.tar.gz.sha256"));
        let sigs: Vec<(&str, &str, &str, &str)> = rel
            .signatures
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.url.as_str(),
                    s.signs.as_str(),
                    s.signs_url.as_str(),
                )
            })
            .collect();
        assert_eq!(
            sigs,
            [
                (
                    "app.tar.gz.minisig",
                    "u/app.tar.gz.minisig",
                    "app.tar.gz",
                    "u/app.tar.gz"
                ),
                (
                    "app.tar.gz.sha256.asc",
                    "u/app.tar.gz.sha256.asc",
                    "app.tar.gz.sha256",
                    "u/app.tar.gz.sha256"
                ),
            ]
        );
        assert_eq!(rel.published_at, DateTime::from_timestamp(10, 0));
        let missing = SourceQuery {
            artifact: Some("other".into()),
            ..SourceQuery::default()
        };
        match release_from("v1", &entries, &missing, None, |n| Ok(n.to_string())) {
            Err(CheckError::ArtifactNotFound { published_at, .. }) => {
                assert_eq!(published_at, DateTime::from_timestamp(10, 0))
            }
            other => panic!("expected ArtifactNotFound, got {other:?}"),
        }
    }

    #[test]
    fn versions_found_and_chosen() {
        let names: Vec<String> = ["v1.0.0", "v1.1.0", ".cache", "2.0.0-rc.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let sel = Selector::default();
        assert_eq!(newest_version(&sel, &names, "x").expect("newest").1, "v1.1.0");
        assert_eq!(find_version(&names, "1.0.0"), Some("v1.0.0"));
        assert_eq!(find_version(&names, "v2.0.0-rc.1"), Some("2.0.0-rc.1"));
        assert_eq!(find_version(&names, "3"), None);
        let none: Vec<String> = Vec::new();
        assert!(matches!(
            newest_version(&sel, &none, "x"),
            Err(CheckError::NoRelease(_))
        ));
    }
}
