//! `img://host/repository` registry: OCI Distribution API v2 tag listing, the newest SemVer or
//! CalVer tag by the shared version rules, and the manifest digest the container engine pulls.
//!
//! Image tags cannot hold `+`, so build metadata is written with `_` (`v1.2.3_blue`), as OCI
//! artifact tools do; slots then work as for the other sources.

mod auth;
mod client;
pub mod cosign;
pub mod credentials;
pub mod location;

use anyhow::bail;
use async_trait::async_trait;
use url::Url;

use super::version::{check_text, Selector, Version, VersionError};
use super::version_dirs::{self, find_version};
use super::{ByteStream, CheckError, OpenOptions, Registry, Release};
use client::Client;
pub use location::{parse_location, Location};

/// A repository of an OCI registry.
pub struct OciRegistry {
    client: Client,
    selector: Selector,
}

/// Open an `img://` URL.
pub fn open(url: &Url, opts: &OpenOptions) -> anyhow::Result<OciRegistry> {
    open_at(parse_location(url)?, opts)
}

/// [`open`] with the URL already parsed into `location`.
pub fn open_at(location: Location, opts: &OpenOptions) -> anyhow::Result<OciRegistry> {
    let selector = version_dirs::selector(&location.query, opts)?;
    Ok(OciRegistry {
        client: Client::new(location, &opts.user_agent, opts.oci_page_size)?,
        selector,
    })
}

/// The version text of a tag: `_` stands for `+` (tags cannot hold `+`).
fn tag_version(tag: &str) -> String {
    tag.replacen('_', "+", 1)
}

impl OciRegistry {
    /// The registry location.
    fn location(&self) -> &Location {
        self.client.location()
    }

    async fn release_of(&self, tag: &str) -> Result<Release, CheckError> {
        let digest = self.client.digest(tag).await?;
        let image = self.location().image();
        Ok(Release {
            version: tag.to_string(),
            artifact: format!("{image}:{tag}"),
            artifact_url: format!("{image}@{digest}"),
            checksum_url: None,
            published_at: None,
            signatures: Vec::new(),
        })
    }
}

#[async_trait]
impl Registry for OciRegistry {
    async fn latest(&self) -> Result<Release, CheckError> {
        let tags = self.client.tags().await?;
        if tags.is_empty() {
            return Err(CheckError::NoRelease(format!(
                "{} has no tags",
                self.location().image()
            )));
        }
        let versions: Vec<(String, &str)> = tags.iter().map(|t| (tag_version(t), t.as_str())).collect();
        let Some((_, tag)) = self
            .selector
            .newest(versions.iter().map(|(v, t)| (v.as_str(), *t)))
        else {
            return Err(CheckError::NoRelease(format!(
                "no tag of {} passes the version rules ({}, pre-release: {}, slot: {}); tags seen: {}",
                self.location().image(),
                self.selector
                    .calver
                    .as_ref()
                    .map_or_else(|| "SemVer".to_string(), |f| format!("CalVer {f}")),
                self.selector.prerelease,
                self.selector.slot.as_deref().unwrap_or("any"),
                preview(&tags)
            )));
        };
        self.release_of(tag).await
    }

    async fn find(&self, version: &str) -> Result<Release, CheckError> {
        let tags = self.client.tags().await?;
        let wanted = version.replacen('+', "_", 1);
        match find_version(&tags, &wanted) {
            Some(tag) => self.release_of(tag).await,
            None => Err(CheckError::NoRelease(format!(
                "{} has no tag {version}",
                self.location().image()
            ))),
        }
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
        bail!("{url}: images are pulled by the container engine, not downloaded by dewy")
    }

    async fn image_signatures(&self, digest: &str) -> anyhow::Result<Vec<cosign::CosignSignature>> {
        Ok(cosign::fetch(&self.client, digest).await?)
    }

    fn selector(&self) -> Selector {
        self.selector.clone()
    }

    fn version_of(&self, text: &str) -> Result<Version, VersionError> {
        check_text(text)?;
        self.selector.validate(&tag_version(text))
    }
}

fn preview(tags: &[String]) -> String {
    let mut shown: Vec<&str> = tags.iter().take(10).map(String::as_str).collect();
    if tags.len() > 10 {
        shown.push("…");
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_build_metadata_with_underscore() {
        assert_eq!(tag_version("v1.2.3_blue"), "v1.2.3+blue");
        assert_eq!(tag_version("v1.2.3"), "v1.2.3");
    }
}
