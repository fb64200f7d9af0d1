//! Query parameters shared by every registry URL (`artifact`, `pre-release`, `calver`), plus the
//! scheme's own keys (`endpoint`, `region` for `s3://`), with unknown or repeated keys rejected.

use anyhow::{bail, Result};
use url::Url;

use super::calver::Format;

/// Keys every registry URL may carry.
pub const ALLOWED_KEYS: &[&str] = &["artifact", "pre-release", "calver"];

/// The parsed query of a registry URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceQuery {
    /// Exact artifact file name; `None` means platform matching.
    pub artifact: Option<String>,
    /// Whether pre-releases may be deployed.
    pub prerelease: bool,
    /// CalVer format of the version tags; `None` means SemVer.
    pub calver: Option<Format>,
}

/// Parse and validate the query of `url` (shared keys only).
pub fn parse(url: &Url) -> Result<SourceQuery> {
    Ok(parse_with(url, &[])?.0)
}

/// Parse the shared keys and the scheme's `extra` keys, returned as (key, value) pairs.
pub fn parse_with(url: &Url, extra: &[&str]) -> Result<(SourceQuery, Vec<(String, String)>)> {
    let mut query = SourceQuery::default();
    let mut others = Vec::new();
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
            "calver" => {
                let format =
                    Format::parse(&value).map_err(|e| anyhow::anyhow!("{e} in registry URL {url}"))?;
                query.calver = Some(format);
            }
            other if extra.contains(&other) => others.push((other.to_string(), value.into_owned())),
            other => {
                let allowed: Vec<&str> = ALLOWED_KEYS.iter().chain(extra).copied().collect();
                bail!(
                    "unknown parameter \"{other}\" in registry URL {url}; allowed: {}",
                    allowed.join(", ")
                )
            }
        }
    }
    Ok((query, others))
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
        let cal = q("ghr://o/r?calver=YYYY.0M.MICRO").expect("ok");
        assert_eq!(
            cal.calver.map(|f| f.to_string()).as_deref(),
            Some("YYYY.0M.MICRO")
        );
        let err = q("ghr://o/r?calver=x.y").expect_err("bad format").to_string();
        assert!(err.contains("invalid calver format \"x.y\""), "{err}");
    }

    #[test]
    fn scheme_keys() {
        let url = Url::parse("s3://r/b/p?endpoint=http://h:1&region=x").expect("url");
        let (_, others) = parse_with(&url, &["endpoint", "region"]).expect("ok");
        assert_eq!(others.len(), 2);
        let err = parse(&url).expect_err("not allowed").to_string();
        assert!(err.contains("unknown parameter \"endpoint\""), "{err}");
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
