//! `s3://<region>/<bucket>/<prefix>` registry: versions are the common prefixes one level below
//! `<prefix>` (ListObjectsV2 with delimiter `/`, paged), artifacts the objects inside them,
//! fetched with GetObject as a stream. `endpoint=` (or `AWS_ENDPOINT_URL`) selects an
//! S3-compatible store with path-style addressing.

use anyhow::{bail, Context};
use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use chrono::{DateTime, Utc};
use futures_util::stream;
use tokio::sync::OnceCell;
use url::Url;

use super::query::{self, SourceQuery};
use super::version::Selector;
use super::version_dirs::{self, Entry};
use super::{ByteStream, CheckError, OpenOptions, Registry, Release};

/// Where an `s3://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub region: String,
    pub bucket: String,
    /// Empty (bucket root) or ending with `/`.
    pub prefix: String,
    /// `endpoint=`: an S3-compatible store's base URL.
    pub endpoint: Option<String>,
    pub query: SourceQuery,
}

/// Validate `s3://<region>/<bucket>/<prefix>?endpoint=…&region=…&artifact=…&pre-release=…&calver=…`.
pub fn parse_location(url: &Url) -> anyhow::Result<Location> {
    if url.scheme() != "s3" {
        bail!("not an s3:// registry URL: {url}");
    }
    let (query, others) = query::parse_with(url, &["endpoint", "region"])?;
    let mut region = url.host_str().unwrap_or_default().to_string();
    let mut endpoint = None;
    for (key, value) in others {
        match key.as_str() {
            "region" if !value.is_empty() => region = value,
            "endpoint" => {
                let parsed = Url::parse(&value)
                    .with_context(|| format!("parameter \"endpoint\" of registry URL {url} is not a URL"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("parameter \"endpoint\" of registry URL {url} must be an http(s) URL");
                }
                endpoint = Some(value);
            }
            _ => bail!("parameter \"{key}\" is empty in registry URL {url}"),
        }
    }
    if region.is_empty() {
        bail!("registry URL {url} has no region; expected s3://<region>/<bucket>/<prefix>");
    }
    let path = url.path().trim_start_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        bail!("registry URL {url} has no bucket; expected s3://<region>/<bucket>/<prefix>");
    }
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok(Location {
        region,
        bucket: bucket.to_string(),
        prefix,
        endpoint,
        query,
    })
}

/// Releases in an S3 bucket.
#[derive(Debug)]
pub struct S3Registry {
    location: Location,
    selector: Selector,
    max_keys: Option<i32>,
    client: OnceCell<aws_sdk_s3::Client>,
}

/// Open an `s3://` registry; the client is built at the first request.
pub fn open(url: &Url, opts: &OpenOptions) -> anyhow::Result<S3Registry> {
    open_at(parse_location(url)?, opts)
}

/// [`open`] with the URL already parsed into `location`.
pub fn open_at(location: Location, opts: &OpenOptions) -> anyhow::Result<S3Registry> {
    let selector = version_dirs::selector(&location.query, opts)?;
    Ok(S3Registry {
        location,
        selector,
        max_keys: opts.s3_max_keys,
        client: OnceCell::new(),
    })
}

fn env_endpoint() -> Option<String> {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// An S3 client for `region`: the AWS credential chain, or the systemd credentials
/// `aws-access-key-id`/`aws-secret-access-key` when both exist; path-style addressing with an
/// `endpoint` (or `AWS_ENDPOINT_URL`).
pub async fn connect(region: &str, endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .http_client(http);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let id = crate::systemd::credential("aws-access-key-id");
    let secret = crate::systemd::credential("aws-secret-access-key");
    if let (Some(id), Some(secret)) = (id, secret) {
        let creds = aws_sdk_s3::config::Credentials::new(id, secret, None, None, "systemd-credential");
        loader = loader.credentials_provider(creds);
    }
    let shared = loader.load().await;
    let path_style = endpoint.is_some() || env_endpoint().is_some();
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A readable description of an S3 error: the service's code and message, or the cause chain.
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.code() {
        Some(code) => format!("{code}: {}", err.message().unwrap_or("no message")),
        None => DisplayErrorContext(err).to_string(),
    }
}

impl S3Registry {
    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| connect(&self.location.region, self.location.endpoint.as_deref()))
            .await
    }

    /// The bucket and endpoint, for error messages.
    fn place_name(&self) -> String {
        let endpoint = self
            .location
            .endpoint
            .clone()
            .or_else(env_endpoint)
            .unwrap_or_else(|| format!("AWS region {}", self.location.region));
        format!(
            "s3://{}/{} (endpoint {endpoint})",
            self.location.bucket, self.location.prefix
        )
    }

    fn list_error<E, R>(&self, err: SdkError<E, R>) -> CheckError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let hint = match err.code() {
            Some("NoSuchBucket") => format!(" — bucket \"{}\" does not exist", self.location.bucket),
            Some("SignatureDoesNotMatch" | "InvalidAccessKeyId" | "AccessDenied" | "InvalidSecurity") => {
                " — check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, \
                 or the systemd credentials aws-access-key-id/aws-secret-access-key)"
                    .to_string()
            }
            _ => String::new(),
        };
        CheckError::Other(anyhow::anyhow!(
            "listing {}: {}{hint}",
            self.place_name(),
            describe(&err)
        ))
    }

    /// Every page of a listing under `prefix`: (common prefixes, objects).
    async fn list(&self, prefix: &str, delimiter: bool) -> Result<(Vec<String>, Vec<Entry>), CheckError> {
        let client = self.client().await;
        let mut dirs = Vec::new();
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = client
                .list_objects_v2()
                .bucket(&self.location.bucket)
                .prefix(prefix)
                .set_max_keys(self.max_keys)
                .set_continuation_token(token.take());
            if delimiter {
                req = req.delimiter("/");
            }
            let page = req.send().await.map_err(|e| self.list_error(e))?;
            for common in page.common_prefixes() {
                if let Some(p) = common.prefix() {
                    let name = p.strip_prefix(prefix).unwrap_or(p).trim_end_matches('/');
                    if !name.is_empty() {
                        dirs.push(name.to_string());
                    }
                }
            }
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let name = key.strip_prefix(prefix).unwrap_or(key);
                if name.is_empty() || name.ends_with('/') {
                    continue;
                }
                let modified = object
                    .last_modified()
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()));
                objects.push(Entry {
                    name: name.to_string(),
                    modified,
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) && !next.is_empty() => {
                    token = Some(next.to_string())
                }
                _ => break,
            }
        }
        Ok((dirs, objects))
    }

    async fn list_versions(&self) -> Result<Vec<String>, CheckError> {
        let (mut dirs, _) = self.list(&self.location.prefix, true).await?;
        dirs.sort();
        Ok(dirs)
    }

    async fn release_of(&self, tag: &str) -> Result<Release, CheckError> {
        let vprefix = format!("{}{tag}/", self.location.prefix);
        let (_, objects) = self.list(&vprefix, false).await?;
        let loc = &self.location;
        version_dirs::release_from(tag, &objects, &loc.query, None, |name| {
            Ok(format!("s3://{}/{}/{vprefix}{name}", loc.region, loc.bucket))
        })
    }
}

#[async_trait]
impl Registry for S3Registry {
    async fn latest(&self) -> Result<Release, CheckError> {
        version_dirs::latest_of(self).await
    }

    async fn find(&self, version: &str) -> Result<Release, CheckError> {
        version_dirs::find_in(self, version).await
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
        let loc = &self.location;
        let base = format!("s3://{}/{}/", loc.region, loc.bucket);
        let key = url
            .strip_prefix(&base)
            .filter(|k| k.starts_with(&loc.prefix) && !k.split('/').any(|s| s == ".."))
            .with_context(|| format!("artifact URL {url} is not under {base}{}", loc.prefix))?;
        let out = self
            .client()
            .await
            .get_object()
            .bucket(&loc.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("downloading {url} from {}: {}", self.place_name(), describe(&e)))?;
        Ok(body_stream(out.body))
    }

    fn reports_shipping(&self) -> bool {
        true
    }

    /// An empty `text/plain` object `<prefix><tag>/<name>`, as Go Dewy writes.
    async fn report_shipped(&self, shipment: &super::shipping::Shipment) -> anyhow::Result<()> {
        let key = format!(
            "{}{}/{}",
            self.location.prefix,
            shipment.version,
            shipment.file_name()
        );
        self.client()
            .await
            .put_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .content_type("text/plain")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b""))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))
            .with_context(|| format!("writing s3://{}/{key}", self.location.bucket))?;
        tracing::info!(bucket = %self.location.bucket, key = %key, "Write S3 object");
        Ok(())
    }

    fn selector(&self) -> Selector {
        self.selector.clone()
    }
}

/// GetObject's body as dewy's byte stream (chunk by chunk, never buffered whole).
pub fn body_stream(body: S3Body) -> ByteStream {
    Box::pin(stream::try_unfold(body, |mut body| async move {
        match body.try_next().await {
            Ok(Some(chunk)) => Ok(Some((chunk, body))),
            Ok(None) => Ok(None),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }))
}

impl version_dirs::VersionedStore for S3Registry {
    fn selector(&self) -> &Selector {
        &self.selector
    }
    fn place(&self) -> String {
        self.place_name()
    }
    async fn versions(&self) -> Result<Vec<String>, CheckError> {
        self.list_versions().await
    }
    async fn release_in(&self, tag: &str) -> Result<Release, CheckError> {
        self.release_of(tag).await
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
        let l = loc("s3://ap-northeast-1/bucket/some/prefix?pre-release=true").expect("ok");
        assert_eq!(l.region, "ap-northeast-1");
        assert_eq!(l.bucket, "bucket");
        assert_eq!(l.prefix, "some/prefix/");
        assert!(l.query.prerelease);
        let l = loc("s3://us-east-1/bucket?region=eu-west-1&endpoint=http://127.0.0.1:9000").expect("ok");
        assert_eq!((l.region.as_str(), l.prefix.as_str()), ("eu-west-1", ""));
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(loc("s3://us-east-1/").is_err());
        assert!(loc("s3://us-east-1/b?endpoint=ftp://x").is_err());
        let err = loc("s3://r/b?bucket=x").expect_err("key").to_string();
        assert!(err.contains("unknown parameter \"bucket\""), "{err}");
        assert!(err.contains("endpoint, region"), "{err}");
    }
}
