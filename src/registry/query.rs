//! Query parameters shared by the `ghr://` and `file://` registry URLs: `artifact` and
//! `pre-release`, with unknown or repeated keys rejected.

use anyhow::{bail, Result};
use url::Url;

/// Keys a `ghr://` or `file://` registry URL may carry.
pub const ALLOWED_KEYS: &[&str] = &["artifact", "pre-release"];

/// The parsed query of a registry URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceQuery {
    /// Exact artifact file name; `None` means platform matching.
    pub artifact: Option<String>,
    /// Whether pre-releases may be deployed.
    pub prerelease: bool,
}

/// Parse and validate the query of `url`.
pub fn parse(url: &Url) -> Result<SourceQuery> {
    let mut query = SourceQuery::default();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in url.query_pairs() {
        if seen.iter().any(|k| *k == key) {
            bail!("parameter \"{key}\" given twice in registry URL {url}");
        }
        seen.push(key.to_string());
        match key.as_ref() {
            "artifact" => {
                if value.is_empty() {
                    bail!("parameter \"artifact\" is empty in registry URL {url}");
                }
                if value.contains('/') {
                    bail!("parameter \"artifact\" must be a file name, not a path, in registry URL {url}");
                }
                query.artifact = Some(value.into_owned());
            }
            "pre-release" => query.prerelease = parse_bool(&value, url)?,
            other => bail!(
                "unknown parameter \"{other}\" in registry URL {url}; allowed: {}",
                ALLOWED_KEYS.join(", ")
            ),
        }
    }
    Ok(query)
}

fn parse_bool(value: &str, url: &Url) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!(
            "parameter \"pre-release\" must be true, false, 1 or 0 (got \"{value}\") in registry URL {url}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<SourceQuery> {
        parse(&Url::parse(s).expect("url"))
    }

    #[test]
    fn accepts_known_keys() {
        let got = q("ghr://o/r?artifact=app.tar.gz&pre-release=true").expect("ok");
        assert_eq!(got.artifact.as_deref(), Some("app.tar.gz"));
        assert!(got.prerelease);
        assert!(!q("ghr://o/r?pre-release=0").expect("ok").prerelease);
        assert_eq!(q("ghr://o/r").expect("ok"), SourceQuery::default());
    }

    #[test]
    fn rejects_unknown_bad_and_repeated() {
        let err = q("ghr://o/r?foo=1").expect_err("unknown").to_string();
        assert!(err.contains("unknown parameter \"foo\""), "{err}");
        assert!(err.contains("allowed: artifact, pre-release"), "{err}");
        assert!(q("ghr://o/r?pre-release=yes").is_err());
        assert!(q("ghr://o/r?artifact=").is_err());
        assert!(q("ghr://o/r?artifact=a/b").is_err());
        assert!(q("ghr://o/r?artifact=a&artifact=b").is_err());
    }
}
