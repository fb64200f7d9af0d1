//! `file:///dir` registry: releases laid out in a local directory as `<dir>/<version>/<artifact>`
//! (the layout of the S3 source), for local testing and air-gapped hosts.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::io::ReaderStream;
use url::Url;

use super::query::{self, SourceQuery};
use super::version::Selector;
use super::version_dirs::{self, Entry};
use super::{ByteStream, CheckError, OpenOptions, Registry, Release};

/// Read size when streaming an artifact.
const CHUNK: usize = 256 * 1024;

/// Where a `file://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub dir: PathBuf,
    pub query: SourceQuery,
}

/// Validate a `file:///dir?artifact=…&pre-release=…` URL.
pub fn parse_location(url: &Url) -> anyhow::Result<Location> {
    if url.scheme() != "file" {
        bail!("not a file:// registry URL: {url}");
    }
    match url.host_str() {
        None | Some("") | Some("localhost") => {}
        Some(host) => {
            bail!("registry URL {url} names host \"{host}\"; expected file:///absolute/dir")
        }
    }
    let dir = url
        .to_file_path()
        .map_err(|_| anyhow::anyhow!("registry URL {url} is not a local directory path"))?;
    Ok(Location {
        dir,
        query: query::parse(url)?,
    })
}

/// Releases in a local directory.
#[derive(Debug)]
pub struct FileRegistry {
    location: Location,
    selector: Selector,
}

/// Open a `file://` registry; the directory is read at each check.
pub fn open(url: &Url, opts: &OpenOptions) -> anyhow::Result<FileRegistry> {
    open_at(parse_location(url)?, opts)
}

/// [`open`] with the URL already parsed into `location`.
pub fn open_at(location: Location, opts: &OpenOptions) -> anyhow::Result<FileRegistry> {
    let selector = version_dirs::selector(&location.query, opts)?;
    Ok(FileRegistry { location, selector })
}

fn io_context(e: std::io::Error, what: String) -> CheckError {
    CheckError::Other(anyhow::Error::new(e).context(what))
}

impl FileRegistry {
    /// The release directory.
    pub fn dir(&self) -> &Path {
        &self.location.dir
    }

    /// Subdirectory names of the release directory, sorted.
    async fn subdirs(&self) -> Result<Vec<String>, CheckError> {
        let dir = self.dir();
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CheckError::Other(anyhow::anyhow!(
                    "registry directory {} does not exist",
                    dir.display()
                )))
            }
            Err(e) => {
                return Err(io_context(
                    e,
                    format!("reading registry directory {}", dir.display()),
                ))
            }
        };
        let mut names = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_context(e, format!("reading registry directory {}", dir.display())))?
        {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if tokio::fs::metadata(entry.path()).await.is_ok_and(|m| m.is_dir()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The release in `<dir>/<tag>`: platform artifact, checksum file and publication time.
    async fn release_in(&self, tag: &str) -> Result<Release, CheckError> {
        let vdir = self.dir().join(tag);
        let context = || format!("reading release directory {}", vdir.display());
        let dir_meta = tokio::fs::metadata(&vdir)
            .await
            .map_err(|e| io_context(e, context()))?;
        let mut entries = tokio::fs::read_dir(&vdir)
            .await
            .map_err(|e| io_context(e, context()))?;
        let mut files: Vec<Entry> = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_context(e, context()))? {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Ok(meta) = tokio::fs::metadata(entry.path()).await {
                if meta.is_file() {
                    let modified = meta.modified().ok().map(DateTime::<Utc>::from);
                    files.push(Entry { name, modified });
                }
            }
        }
        let fallback = dir_meta.modified().ok().map(DateTime::<Utc>::from);
        version_dirs::release_from(tag, &files, &self.location.query, fallback, |name| {
            let path = vdir.join(name);
            Url::from_file_path(&path)
                .map(|u| u.to_string())
                .map_err(|_| CheckError::Other(anyhow::anyhow!("{} is not an absolute path", path.display())))
        })
    }
}

#[async_trait]
impl Registry for FileRegistry {
    async fn latest(&self) -> Result<Release, CheckError> {
        let names = self.subdirs().await?;
        let source = self.dir().display().to_string();
        let (_, tag) = version_dirs::newest_version(&self.selector, &names, &source)?;
        self.release_in(tag).await
    }

    async fn find(&self, version: &str) -> Result<Release, CheckError> {
        let names = self.subdirs().await?;
        match version_dirs::find_version(&names, version) {
            Some(name) => self.release_in(name).await,
            None => Err(CheckError::NoRelease(format!(
                "{} has no release directory {version}",
                self.dir().display()
            ))),
        }
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
        let parsed = Url::parse(url).with_context(|| format!("invalid artifact URL \"{url}\""))?;
        let path = match parsed.scheme() {
            "file" => parsed
                .to_file_path()
                .map_err(|_| anyhow::anyhow!("artifact URL {url} is not a local path"))?,
            other => bail!("the file registry cannot fetch {other}:// URLs ({url})"),
        };
        let escapes = path.components().any(|c| matches!(c, Component::ParentDir));
        if escapes || !path.starts_with(self.dir()) {
            bail!(
                "artifact URL {url} is outside the registry directory {}",
                self.dir().display()
            );
        }
        let file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("opening artifact {}", path.display()))?;
        Ok(Box::pin(ReaderStream::with_capacity(file, CHUNK)))
    }

    fn selector(&self) -> Selector {
        self.selector.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    fn host_artifact() -> String {
        format!("app_{}_{}.tar.gz", std::env::consts::OS, std::env::consts::ARCH)
    }

    fn registry(dir: &Path, query: &str, slot: Option<&str>) -> FileRegistry {
        let mut url = Url::from_directory_path(dir).expect("absolute dir");
        url.set_query((!query.is_empty()).then_some(query));
        let opts = OpenOptions {
            slot: slot.map(str::to_string),
            ..OpenOptions::default()
        };
        open(&url, &opts).expect("open")
    }

    fn put(dir: &Path, version: &str, name: &str, body: &[u8]) {
        let vdir = dir.join(version);
        std::fs::create_dir_all(&vdir).expect("mkdir");
        std::fs::write(vdir.join(name), body).expect("write");
    }

    #[tokio::test]
    async fn newest_version_and_artifact() {
        let tmp = tempfile::tempdir().expect("tmp");
        let art = host_artifact();
        put(tmp.path(), "v1.0.0", &art, b"one");
        put(tmp.path(), "v1.2.0", &art, b"two");
        put(tmp.path(), "v1.2.0", &format!("{art}.sha256"), b"x");
        put(tmp.path(), "v2.0.0-rc.1", &art, b"pre");
        put(tmp.path(), ".cache", &art, b"junk");
        std::fs::write(tmp.path().join("v9.9.9"), b"a file, not a dir").expect("write");
        let reg = registry(tmp.path(), "", None);
        let rel = reg.latest().await.expect("latest");
        assert_eq!(rel.version, "v1.2.0");
        assert_eq!(rel.artifact, art);
        assert!(rel
            .checksum_url
            .as_deref()
            .is_some_and(|u| u.ends_with(".sha256")));
        assert!(rel.published_at.is_some());
        let chunks: Vec<bytes::Bytes> = reg
            .fetch(&rel.artifact_url)
            .await
            .expect("fetch")
            .try_collect()
            .await
            .expect("read");
        let body = chunks.concat();
        assert_eq!(body, b"two");
        let pre = registry(tmp.path(), "pre-release=true", None);
        assert_eq!(pre.latest().await.expect("latest").version, "v2.0.0-rc.1");
    }

    #[tokio::test]
    async fn slots_explicit_artifact_and_missing_artifact() {
        let tmp = tempfile::tempdir().expect("tmp");
        put(tmp.path(), "v1.0.0+blue", "custom.bin", b"b");
        put(tmp.path(), "v1.1.0+green", "custom.bin", b"g");
        put(tmp.path(), "v1.2.0", "README.md", b"r");
        let blue = registry(tmp.path(), "artifact=custom.bin", Some("blue"));
        assert_eq!(blue.latest().await.expect("latest").version, "v1.0.0+blue");
        let any = registry(tmp.path(), "artifact=custom.bin", None);
        match any.latest().await {
            Err(CheckError::ArtifactNotFound {
                version,
                published_at,
            }) => {
                assert_eq!(version, "v1.2.0");
                assert!(published_at.is_some());
            }
            other => panic!("expected ArtifactNotFound, got {other:?}"),
        }
        assert_eq!(
            any.find("1.1.0+green").await.expect("find").version,
            "v1.1.0+green"
        );
        assert!(matches!(any.find("v3.0.0").await, Err(CheckError::NoRelease(_))));
    }

    #[tokio::test]
    async fn missing_dir_and_foreign_urls() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(&tmp.path().join("nope"), "", None);
        let err = reg.latest().await.expect_err("missing").to_string();
        assert!(err.contains("does not exist"), "{err}");
        let reg = registry(tmp.path(), "", None);
        assert!(matches!(reg.latest().await, Err(CheckError::NoRelease(_))));
        assert!(reg.fetch("file:///etc/passwd").await.is_err());
        assert!(reg.fetch("https://example.com/x").await.is_err());
    }

    #[tokio::test]
    async fn hostile_directory_names_are_never_versions() {
        let tmp = tempfile::tempdir().expect("tmp");
        let art = host_artifact();
        put(tmp.path(), "v1.0.0", &art, b"good");
        put(tmp.path(), "v9.0.0\u{1b}[2J", &art, b"escape");
        put(tmp.path(), "v9.0.0-x\nDEWY_VERSION=evil", &art, b"newline");
        put(tmp.path(), &format!("v9.0.0-{}", "a".repeat(200)), &art, b"long");
        let reg = registry(tmp.path(), "pre-release=true", None);
        assert_eq!(reg.latest().await.expect("latest").version, "v1.0.0");
        let err = crate::registry::resolve(&reg, "v9.0.0\u{1b}[2J")
            .await
            .expect_err("hostile");
        assert!(matches!(err, crate::registry::ResolveError::Invalid(_)), "{err}");
        let long = format!("v9.0.0-{}", "a".repeat(200));
        assert!(crate::registry::resolve(&reg, &long).await.is_err());
        let ok = crate::registry::resolve(&reg, "1.0.0").await.expect("resolved");
        assert_eq!(ok.version, "v1.0.0");
    }

    #[test]
    fn location_validation() {
        let loc = parse_location(&Url::parse("file:///srv/rel?pre-release=1").expect("url")).expect("ok");
        assert_eq!(loc.dir, PathBuf::from("/srv/rel"));
        assert!(loc.query.prerelease);
        assert!(parse_location(&Url::parse("file://otherhost/srv").expect("url")).is_err());
        let err = parse_location(&Url::parse("file:///srv?x=1").expect("url")).expect_err("key");
        assert!(err.to_string().contains("unknown parameter \"x\""));
    }
}
