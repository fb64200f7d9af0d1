//! The fleet's shared cache location (`--cache`): `s3://<region>/<bucket>/<prefix>` or
//! `gs://<bucket>/<prefix>`, with `endpoint=` and `registry-ttl=`, parsed once at load.

use std::time::Duration;

use anyhow::{bail, Context};
use url::Url;

/// Which object store a cache URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `s3://<region>/…`.
    S3 { region: String },
    /// `gs://…`.
    Gcs,
}

/// A parsed `--cache` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub backend: Backend,
    pub bucket: String,
    /// Empty or ending with `/`.
    pub prefix: String,
    /// S3-compatible store or GCS JSON API endpoint (an emulator); `None`: the cloud's own.
    pub endpoint: Option<String>,
    /// One origin request per window across the fleet; `None`: every host asks the origin.
    pub registry_ttl: Option<Duration>,
}

/// Parse `s3://<region>/<bucket>/<prefix>?endpoint=…&registry-ttl=…` or
/// `gs://<bucket>/<prefix>?endpoint=…&registry-ttl=…`; unknown keys are refused.
pub fn parse_url(s: &str) -> anyhow::Result<Spec> {
    let url = Url::parse(s.trim()).with_context(|| {
        format!(
            "invalid cache URL {}",
            crate::text::shown(&crate::text::url_redacted(s.trim()))
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        bail!(
            "cache URL {shown} must not hold credentials: S3 and GCS take theirs from the environment (AWS_* variables, instance roles, Google credentials)"
        );
    }
    let host = url.host_str().unwrap_or_default().to_string();
    let path = url.path().trim_start_matches('/');
    let (backend, bucket, prefix) = match url.scheme() {
        "s3" => {
            let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
            if host.is_empty() || bucket.is_empty() {
                bail!("cache URL {s} must be s3://<region>/<bucket>/<prefix>");
            }
            (Backend::S3 { region: host }, bucket.to_string(), prefix)
        }
        "gs" => {
            if host.is_empty() {
                bail!("cache URL {s} must be gs://<bucket>/<prefix>");
            }
            (Backend::Gcs, host, path)
        }
        other => bail!("unsupported cache scheme \"{other}\" in {s}; supported: s3://, gs://"),
    };
    let prefix = prefix.trim_matches('/');
    let mut spec = Spec {
        backend,
        bucket,
        prefix: if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        },
        endpoint: None,
        registry_ttl: None,
    };
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "endpoint" => spec.endpoint = Some(value.into_owned()),
            "registry-ttl" => {
                let ttl = crate::units::parse_duration(&value)
                    .map_err(|e| anyhow::anyhow!("parameter \"registry-ttl\" of cache URL {s}: {e}"))?;
                spec.registry_ttl = Some(ttl).filter(|d| !d.is_zero());
            }
            other => bail!("unknown parameter \"{other}\" in cache URL {s}; allowed: endpoint, registry-ttl"),
        }
    }
    Ok(spec)
}

/// The shared cache of the settings: the URL as configured and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCache {
    pub url: String,
    pub spec: Spec,
}

impl serde::Serialize for SharedCache {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_refused_without_being_shown() {
        for url in [
            "s3://e.:secret@h00",
            "s3://user:secret@eu-west-1/b/p",
            "gs://u:secret@bucket/p",
        ] {
            let err = format!("{:#}", parse_url(url).unwrap_err());
            assert!(
                err.contains("must not hold credentials") && !err.contains("secret"),
                "{err}"
            );
        }
    }

    #[test]
    fn cache_urls() {
        let spec =
            parse_url("s3://us-east-1/bkt/fleet?endpoint=http://127.0.0.1:9&registry-ttl=30s").expect("ok");
        assert_eq!((spec.bucket.as_str(), spec.prefix.as_str()), ("bkt", "fleet/"));
        assert_eq!(spec.registry_ttl, Some(Duration::from_secs(30)));
        assert_eq!(spec.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        let err = parse_url("s3://r/b?ttl=1").expect_err("key").to_string();
        assert!(err.contains("unknown parameter \"ttl\""), "{err}");
        assert!(parse_url("file:///tmp/x").is_err());
        assert!(parse_url("s3://r/b?registry-ttl=soon").is_err());
        assert!(parse_url("s3://r").is_err());
        let gs = parse_url("gs://bkt/fleet/x?registry-ttl=1m").expect("gs");
        assert_eq!(gs.backend, Backend::Gcs);
        assert_eq!((gs.bucket.as_str(), gs.prefix.as_str()), ("bkt", "fleet/x/"));
        assert!(parse_url("gs:///x").is_err());
    }
}
