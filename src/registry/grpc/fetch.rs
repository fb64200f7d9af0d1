//! Downloading the artifact a gRPC registry names: `ghr://owner/repo/tag/<tag>/<file>`,
//! `s3://region/bucket/key`, `gs://bucket/object` (Go Dewy's contract) and plain `http(s)://`.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::TryStreamExt;
use url::Url;

use crate::registry::{self, ByteStream, OpenOptions, Registry};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;

/// Longest artifact URL accepted from a server.
pub const MAX_URL: usize = 4096;

/// The file name an artifact URL ends with (its cache name): the last path segment,
/// percent-decoded, or for `s3://…?endpoint=` the key's last segment.
pub fn artifact_name(url: &Url) -> anyhow::Result<String> {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    let name = percent_encoding::percent_decode_str(last)
        .decode_utf8()
        .with_context(|| format!("artifact URL {url} ends with a name that is not UTF-8"))?;
    if name.is_empty() || name == "." || name == ".." || name.chars().any(|c| c.is_control() || c == '/') {
        bail!("artifact URL {url} does not end with a file name");
    }
    Ok(name.into_owned())
}

/// Check an artifact URL from a server: a scheme dewy downloads from, a host, a file name.
pub fn check(raw: &str) -> anyhow::Result<(Url, String)> {
    if raw.len() > MAX_URL {
        bail!("the artifact URL is {} bytes long (at most {MAX_URL})", raw.len());
    }
    let url =
        Url::parse(raw).with_context(|| format!("invalid artifact URL {}", registry::version::shown(raw)))?;
    match url.scheme() {
        "http" | "https" | "s3" | "gs" | "ghr" => {}
        "img" => bail!(
            "artifact URL {url}: images (img://) are deployed from an img:// registry in container mode, not through grpc://"
        ),
        other => bail!("artifact URL {url}: scheme {other}:// is not downloadable (ghr, s3, gs, http, https)"),
    }
    if url.host_str().unwrap_or_default().is_empty() {
        bail!("artifact URL {url} has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("artifact URL {url} carries credentials; refusing it");
    }
    let name = artifact_name(&url)?;
    Ok((url, name))
}

/// Stream the artifact at `url` (already [`check`]ed), with `opts` for the credentials and
/// endpoints of the other sources.
pub async fn fetch(url: &Url, opts: &OpenOptions) -> anyhow::Result<ByteStream> {
    match url.scheme() {
        "http" | "https" => http(url, &opts.user_agent).await,
        "s3" => {
            let mut bucket = url.clone();
            bucket.set_path(&format!("/{}", first_segment(url)?));
            let source = registry::s3::open(&bucket, opts)?;
            let mut plain = url.clone();
            plain.set_query(None);
            source.fetch(plain.as_str()).await
        }
        "gs" => {
            let mut bucket = url.clone();
            bucket.set_path("/");
            bucket.set_query(None);
            registry::gcs::open(&bucket, opts)?.fetch(url.as_str()).await
        }
        "ghr" => github(url, opts).await,
        other => bail!("artifact URL {url}: scheme {other}:// is not downloadable"),
    }
}

fn first_segment(url: &Url) -> anyhow::Result<String> {
    url.path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .with_context(|| format!("artifact URL {url} names no bucket"))
}

/// `ghr://owner/repo/tag/<tag>/<file>`: the release asset through the GitHub API.
async fn github(url: &Url, opts: &OpenOptions) -> anyhow::Result<ByteStream> {
    let owner = url.host_str().unwrap_or_default();
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| {
            s.map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect()
        })
        .unwrap_or_default();
    let [repo, kw, tag, file] = segments.as_slice() else {
        bail!("artifact URL {url}: expected ghr://owner/repo/tag/<tag>/<file>");
    };
    if kw != "tag" {
        bail!("artifact URL {url}: expected ghr://owner/repo/tag/<tag>/<file>");
    }
    let mut repo_url = Url::parse(&format!("ghr://{owner}/"))
        .with_context(|| format!("artifact URL {url}: invalid owner"))?;
    repo_url.set_path(repo);
    repo_url.query_pairs_mut().append_pair("artifact", file);
    let source = registry::github::open(&repo_url, opts)?;
    let release = source
        .find(tag)
        .await
        .with_context(|| format!("artifact URL {url}"))?;
    if &release.artifact != file {
        bail!("artifact URL {url}: release {tag} has no asset {file}");
    }
    source.fetch(&release.artifact_url).await
}

/// A plain download: bounded connect and read times, at most five redirects, never from
/// HTTPS down to HTTP.
async fn http(url: &Url, user_agent: &str) -> anyhow::Result<ByteStream> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let downgrade =
            attempt.previous().iter().any(|u| u.scheme() == "https") && attempt.url().scheme() != "https";
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if downgrade {
            attempt.error("redirect from https to http refused")
        } else {
            attempt.follow()
        }
    });
    let client = reqwest::Client::builder()
        .user_agent(user_agent)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(policy)
        .build()
        .context("building the HTTP client")?;
    let resp = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("downloading {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!("downloading {url}: the server answered {status}");
    }
    Ok(Box::pin(resp.bytes_stream().map_err(std::io::Error::other)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_urls_from_the_server() {
        let (_, name) = check("ghr://o/r/tag/v1.2.3/app_linux_amd64.tar.gz").expect("ghr");
        assert_eq!(name, "app_linux_amd64.tar.gz");
        let (_, name) = check("s3://ap-northeast-1/b/app/v1/app%20x.tgz?endpoint=http://h:9").expect("s3");
        assert_eq!(name, "app x.tgz");
        assert!(check("https://example.com/dl/app.tar.gz").is_ok());
        for bad in [
            "file:///etc/shadow",
            "img://ghcr.io/o/r:v1",
            "https://example.com/",
            "https://u:p@example.com/a.tgz",
            "https://example.com/%2e%2e",
            "not a url",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
        assert!(check(&long).expect_err("long").to_string().contains("at most"));
    }
}
