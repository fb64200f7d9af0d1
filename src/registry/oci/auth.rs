//! The registry's authentication challenge (`WWW-Authenticate: Bearer realm=…,service=…,scope=…`
//! or `Basic realm=…`) and the token exchange, with a guard against realms that point into the
//! host's private network.

use std::net::IpAddr;

use anyhow::{bail, Context};
use serde::Deserialize;
use url::Url;

use super::credentials::Credentials;

/// What a 401 asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` value; `None` for schemes dewy does not speak.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(params);
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            Some(Challenge::Bearer {
                realm: get("realm")?,
                service: get("service"),
                scope: get("scope"),
            })
        }
        _ => None,
    }
}

/// `key="value",key=value` pairs; quoted values may hold commas (scopes do).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_string(), &quoted[end + 1..]),
                None => (quoted.to_string(), ""),
            }
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
}

/// Fetch a bearer token from the challenge's realm for `repository` (pull scope), with the
/// credentials when there are some. `registry_host` is the registry's host (no port): a realm on
/// another host may not resolve to a loopback, private or link-local address.
pub async fn fetch_token(
    http: &reqwest::Client,
    challenge: &Challenge,
    repository: &str,
    registry_host: &str,
    allow_plain_http: bool,
    creds: Option<&Credentials>,
) -> anyhow::Result<String> {
    let Challenge::Bearer {
        realm,
        service,
        scope,
    } = challenge
    else {
        bail!("not a bearer challenge");
    };
    let mut url = Url::parse(realm).with_context(|| format!("token realm {realm:?} is not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_plain_http => {}
        other => bail!("token realm {realm} uses {other}://; only https:// is accepted"),
    }
    let realm_host = url.host_str().unwrap_or_default().to_string();
    if !realm_host.eq_ignore_ascii_case(registry_host) {
        guard_private(&realm_host, url.port_or_known_default().unwrap_or(443)).await?;
    }
    {
        let mut q = url.query_pairs_mut();
        if let Some(service) = service {
            q.append_pair("service", service);
        }
        let scope = scope
            .clone()
            .unwrap_or_else(|| format!("repository:{repository}:pull"));
        q.append_pair("scope", &scope);
    }
    let mut req = http.get(url.clone());
    if let Some(c) = creds {
        req = req.header(reqwest::header::AUTHORIZATION, c.basic());
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("requesting a token from {realm}"))?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        bail!(
            "token server {realm} refused the credentials (HTTP {status}){}",
            if creds.is_some() {
                ""
            } else {
                "; no credentials were found for this registry"
            }
        );
    }
    if !status.is_success() {
        bail!("token server {realm} answered HTTP {status}");
    }
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("reading the token from {realm}"))?;
    let answer: TokenAnswer =
        serde_json::from_slice(&body).with_context(|| format!("token answer of {realm} is not JSON"))?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .with_context(|| format!("token answer of {realm} has neither \"token\" nor \"access_token\""))
}

async fn guard_private(host: &str, port: u16) -> anyhow::Result<()> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving token realm host {host}"))?;
    for addr in addrs {
        if is_private(addr.ip()) {
            bail!(
                "token realm host {host} resolves to the private address {}; refused",
                addr.ip()
            );
        }
    }
    Ok(())
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "2001:4860::8888"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }
}
