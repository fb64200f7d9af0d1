//! The etcd form of `fleet-lock`: `etcd://host:2379/prefix?slots=2&ttl=30` (`etcds://` or
//! `tls=true` for TLS, `user:password@` for etcd's authentication), parsed once into [`EtcdLock`].

use std::time::Duration;

use super::ConfigError;

/// Slots when the URL does not say (one host at a time).
pub const DEFAULT_SLOTS: u32 = 1;
/// Most slots accepted.
pub const MAX_SLOTS: u32 = 1000;
/// The lease's time to live when the URL does not say.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Shortest and longest `ttl=` accepted: under 2 s a busy host's keep-alives could miss it.
pub const MIN_TTL: Duration = Duration::from_secs(2);
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// An etcd semaphore: the keys under `prefix` are the slots held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdLock {
    /// `http://host:2379` or `https://host:2379`, as the client dials it.
    pub endpoint: String,
    /// Whether the endpoint is dialled with TLS (the system's roots).
    pub tls: bool,
    /// `/prefix/` (leading and trailing `/`): a held slot is the key `<prefix><fleet-id>`.
    pub prefix: String,
    pub slots: u32,
    /// The slot's lease: a host that stops keeping it alive (a crash) frees its slot this long
    /// after.
    pub ttl: Duration,
    /// etcd's user name and password, from the URL's credentials.
    pub user: Option<(String, String)>,
}

fn invalid(key: &str, text: &str, why: &str) -> ConfigError {
    ConfigError::Invalid(format!("{key} {}: {why}", crate::text::shown(&redacted(text))))
}

/// The URL as written, without its password (for messages and the shown settings).
pub fn redacted(text: &str) -> String {
    crate::text::url_redacted(text)
}

fn decoded(key: &str, text: &str, part: &str, what: &str) -> Result<String, ConfigError> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid(key, text, &format!("its {what} is not valid UTF-8")))
}

/// Parse `etcd://…` or `etcds://…` (the caller checked the scheme).
pub fn parse(text: &str, url: &url::Url) -> Result<EtcdLock, ConfigError> {
    parse_for("fleet-lock", text, url)
}

/// [`parse`] for the key `key` (named in errors): `fleet-lock`, or `fleet-store`, which shares
/// the URL form (its `slots` and `ttl` are refused by the caller).
pub fn parse_for(key: &str, text: &str, url: &url::Url) -> Result<EtcdLock, ConfigError> {
    let example = "e.g. etcd://etcd.example.com:2379/dewy/web?slots=2";
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(invalid(key, text, &format!("needs a host, {example}")));
    };
    let port = url.port().unwrap_or(2379);
    if url.fragment().is_some() {
        return Err(invalid(key, text, "must not have a fragment"));
    }
    let path = url.path().trim_matches('/');
    let ok_path = !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        });
    if !ok_path {
        return Err(invalid(
            key,
            text,
            &format!(
                "needs a key prefix of letters, digits, '.', '_', '-' and '/' after the host, {example}"
            ),
        ));
    }
    let mut tls = url.scheme() == "etcds";
    let mut slots = DEFAULT_SLOTS;
    let mut ttl = DEFAULT_TTL;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "slots" => {
                slots = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_SLOTS).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            key,
                            text,
                            &format!("slots={v} must be a number from 1 to {MAX_SLOTS}"),
                        )
                    })?;
            }
            "ttl" => {
                let secs = v.parse::<u64>().ok().map(Duration::from_secs);
                ttl = secs.filter(|t| (MIN_TTL..=MAX_TTL).contains(t)).ok_or_else(|| {
                    invalid(
                        key,
                        text,
                        &format!(
                            "ttl={v} must be seconds from {} to {}",
                            MIN_TTL.as_secs(),
                            MAX_TTL.as_secs()
                        ),
                    )
                })?;
            }
            "tls" => {
                tls = match v.as_ref() {
                    "true" | "1" => true,
                    "false" | "0" if url.scheme() == "etcd" => false,
                    _ => {
                        return Err(invalid(
                            key,
                            text,
                            &format!("tls={v} must be true or false (etcds:// is always TLS)"),
                        ))
                    }
                };
            }
            other => {
                return Err(invalid(
                    key,
                    text,
                    &format!("unknown parameter {other:?} (known: slots, ttl, tls)"),
                ))
            }
        }
    }
    let user = match (url.username(), url.password()) {
        ("", None) => None,
        ("", Some(_)) | (_, None) => {
            return Err(invalid(key, text, "credentials must be user:password@"));
        }
        (u, Some(p)) => Some((decoded(key, text, u, "user")?, decoded(key, text, p, "password")?)),
    };
    let scheme = if tls { "https" } else { "http" };
    let endpoint = format!("{scheme}://{host}:{port}");
    // etcd:// hosts are opaque to the URL parser; the client dials the endpoint as an HTTP URL,
    // whose host must be a domain name or an address.
    if url::Url::parse(&endpoint).is_err() {
        return Err(invalid(
            key,
            text,
            &format!(
                "{} is not a host name or an IP address, {example}",
                crate::text::shown(host)
            ),
        ));
    }
    Ok(EtcdLock {
        endpoint,
        tls,
        prefix: format!("/{path}/"),
        slots,
        ttl,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<EtcdLock, ConfigError> {
        parse(text, &url::Url::parse(text).unwrap())
    }

    #[test]
    fn urls_are_read() {
        let l = p("etcd://127.0.0.1:23790/dewy/web?slots=2&ttl=5").unwrap();
        assert_eq!(l.endpoint, "http://127.0.0.1:23790");
        assert_eq!(
            (l.prefix.as_str(), l.slots, l.ttl),
            ("/dewy/web/", 2, Duration::from_secs(5))
        );
        assert!(!l.tls && l.user.is_none());
        let d = p("etcds://u:p%40ss@etcd.example.com/dewy").unwrap();
        assert_eq!(d.endpoint, "https://etcd.example.com:2379");
        assert_eq!((d.slots, d.ttl, d.tls), (1, DEFAULT_TTL, true));
        assert_eq!(d.user, Some(("u".into(), "p@ss".into())));
        assert!(p("etcd://h/x?tls=true").unwrap().tls);
        for (url, want) in [
            ("etcd://h:2379", "key prefix"),
            ("etcd://h:2379/", "key prefix"),
            ("etcd://h/a b", "key prefix"),
            ("etcd://h/x?slots=0", "slots=0 must be a number from 1 to 1000"),
            ("etcd://h/x?slots=1001", "slots=1001"),
            ("etcd://h/x?slots=two", "slots=two"),
            ("etcd://h/x?ttl=1", "ttl=1 must be seconds from 2 to 3600"),
            ("etcd://h/x?tls=maybe", "tls=maybe"),
            ("etcds://h/x?tls=false", "tls=false"),
            ("etcd://h/x?lots=2", "unknown parameter \"lots\""),
            ("etcd://u@h/x", "user:password@"),
            ("etcd://h/x#f", "fragment"),
            (
                "etcd://.0.0.1:2378/dewy",
                "\".0.0.1\" is not a host name or an IP address",
            ),
            ("etcd://a%zz/dewy", "is not a host name"),
        ] {
            let err = p(url).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err}");
        }
        let err = p("etcd://u:secret@h/x?slots=0").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
