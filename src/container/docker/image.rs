//! Images: the engine's pull (with the registry's credentials, by tag or digest), tagging,
//! listing and removal, and how an image reference splits into repository, tag and host.

use std::collections::HashMap;

use anyhow::{anyhow, Context};
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;

use super::{explain, Engine};
use crate::registry::oci::credentials;
use crate::registry::oci::location::normalise_host;

/// An image after a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// `sha256:…` image ID.
    pub id: String,
    /// The repository digest (`sha256:…`), when the engine knows one.
    pub digest: Option<String>,
    /// What containers are created from (the tag reference).
    pub reference: String,
    /// `EXPOSE`d TCP ports of the image.
    pub exposed: Vec<u16>,
}

impl Engine {
    /// The engine's pull of `repo:tag` from its registry, with the registry's credentials.
    async fn download(&self, reference: &str, repo: &str, tag: &str) -> anyhow::Result<()> {
        let host = normalise_host(&registry_host(reference));
        let creds = credentials::lookup(&host)?.map(|c| DockerCredentials {
            username: Some(c.username),
            password: Some(c.password),
            serveraddress: Some(host.clone()),
            ..Default::default()
        });
        let opts = CreateImageOptionsBuilder::default()
            .from_image(repo)
            .tag(tag)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, creds);
        while let Some(item) = stream.next().await {
            item.map_err(|e| anyhow!(explain(e)))
                .with_context(|| format!("pulling {reference}"))?;
        }
        Ok(())
    }

    /// Pull `reference` (`host/repo:tag` or `host/repo@sha256:…`) with the registry's
    /// credentials, and tag it `tag_as` (`host/repo:tag`) when pulled by digest.
    pub async fn pull(&self, reference: &str, tag_as: Option<&str>) -> anyhow::Result<Pulled> {
        self.fetch(reference, tag_as, false).await
    }

    /// As [`Engine::pull`], but an image the engine already has is used without asking the
    /// registry (a rollback works while the registry is down).
    pub async fn pull_if_missing(&self, reference: &str, tag_as: Option<&str>) -> anyhow::Result<Pulled> {
        self.fetch(reference, tag_as, true).await
    }

    async fn fetch(&self, reference: &str, tag_as: Option<&str>, if_missing: bool) -> anyhow::Result<Pulled> {
        let (repo, tag) = split_reference(reference);
        if !(if_missing && self.docker.inspect_image(reference).await.is_ok()) {
            self.download(reference, &repo, &tag).await?;
        }
        let mut name = reference.to_string();
        if let Some(target) = tag_as.filter(|t| *t != reference) {
            let (trepo, ttag) = split_reference(target);
            let opts = TagImageOptionsBuilder::default().repo(&trepo).tag(&ttag).build();
            self.docker
                .tag_image(reference, Some(opts))
                .await
                .with_context(|| format!("tagging {reference} as {target}"))?;
            name = target.to_string();
        }
        let info = self
            .docker
            .inspect_image(reference)
            .await
            .with_context(|| format!("inspecting {reference}"))?;
        let digest = info.repo_digests.unwrap_or_default().into_iter().find_map(|d| {
            d.split_once('@')
                .filter(|(r, _)| *r == repo)
                .map(|(_, d)| d.to_string())
        });
        let exposed = info
            .config
            .and_then(|c| c.exposed_ports)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.strip_suffix("/tcp").and_then(|n| n.parse().ok()))
            .collect();
        Ok(Pulled {
            id: info.id.unwrap_or_default(),
            digest,
            reference: name,
            exposed,
        })
    }

    /// Images of `repository` as (id, tags, created), newest first.
    pub async fn images(&self, repository: &str) -> anyhow::Result<Vec<(String, Vec<String>, i64)>> {
        let filters = HashMap::from([("reference".to_string(), vec![repository.to_string()])]);
        let opts = ListImagesOptionsBuilder::default().filters(&filters).build();
        let mut list: Vec<_> = self
            .docker
            .list_images(Some(opts))
            .await
            .with_context(|| format!("listing images of {repository}"))?
            .into_iter()
            .map(|i| (i.id, i.repo_tags, i.created))
            .collect();
        list.sort_by_key(|i| std::cmp::Reverse(i.2));
        Ok(list)
    }

    /// Remove an image (not forced: an image a container still uses stays).
    pub async fn remove_image(&self, id: &str) -> anyhow::Result<()> {
        let opts = RemoveImageOptionsBuilder::default().force(false).build();
        self.docker
            .remove_image(id, Some(opts), None)
            .await
            .map(|_| ())
            .with_context(|| format!("removing image {id}"))
    }
}

/// `host/repo:tag` → (`host/repo`, `tag`); `host/repo@sha256:x` → (`host/repo`, `sha256:x`);
/// no tag → `latest`.
pub fn split_reference(reference: &str) -> (String, String) {
    if let Some((repo, digest)) = reference.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            reference[..last_slash + i].to_string(),
            reference[last_slash + i + 1..].to_string(),
        ),
        None => (reference.to_string(), "latest".to_string()),
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
