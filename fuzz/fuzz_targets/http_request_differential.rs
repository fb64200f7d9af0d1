//! Differential: every request head the proxy accepts is parsed by `httparse` directly, and the
//! head the proxy sends upstream must carry the same method, the same target (in origin form),
//! and exactly the header list that RFC 9110/9112 and the proxy's documented rules derive from
//! the client's list: hop-by-hop and client-address headers gone, `Host` from an absolute-form
//! authority, one `X-Forwarded-For` chain, and the framing the client declared.
#![no_main]

use dewy::fuzzing::{http_request_head, Body};
use libfuzzer_sys::fuzz_target;

const PEER: &[u8] = b"192.0.2.1";
const BACKEND: &[u8] = b"127.0.0.1:9";

fn is(name: &str, other: &str) -> bool {
    name.eq_ignore_ascii_case(other)
}

/// The origin-form target and the authority of `target`, when it is in absolute form.
fn origin_form(target: &str) -> (String, Option<String>) {
    let lower = target.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://"]
        .iter()
        .find(|s| lower.starts_with(*s))
        .map(|s| &target[s.len()..])
    else {
        return (target.to_string(), None);
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let path = &rest[end..];
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    (path, Some(rest[..end].to_string()))
}

/// The framing the client declared, or `None` when the request is ambiguous or unsupported (it
/// must then be refused).
fn framing(headers: &[httparse::Header], http10: bool) -> Option<Body> {
    let te: Vec<&[u8]> = headers
        .iter()
        .filter(|h| is(h.name, "transfer-encoding"))
        .map(|h| h.value)
        .collect();
    let cl: Vec<&[u8]> = headers
        .iter()
        .filter(|h| is(h.name, "content-length"))
        .map(|h| h.value.trim_ascii())
        .collect();
    if !te.is_empty() {
        let chunked = te.len() == 1 && te[0].trim_ascii().eq_ignore_ascii_case(b"chunked");
        return (cl.is_empty() && !http10 && chunked).then_some(Body::Chunked);
    }
    let mut length = None;
    for v in cl {
        let n: u64 = std::str::from_utf8(v)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()))?
            .parse()
            .ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    Some(match length {
        None | Some(0) => Body::Empty,
        Some(n) => Body::Length(n),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(Some(accepted)) = http_request_head(data) else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, accepted.len, "head length"),
        other => panic!("the proxy accepted a head httparse gives {other:?}"),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        panic!("httparse has no request line for an accepted head");
    };
    assert_eq!(accepted.http10, version == 0, "version");
    let headers = req.headers;

    let mut up_headers = [httparse::EMPTY_HEADER; 160];
    let mut up = httparse::Request::new(&mut up_headers);
    let text = String::from_utf8_lossy(&accepted.upstream).to_string();
    match up.parse(&accepted.upstream) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, accepted.upstream.len(), "{text}"),
        other => panic!("the upstream head does not parse ({other:?}): {text:?}"),
    }
    assert_eq!(up.method, Some(method), "{text}");
    assert_eq!(up.version, Some(1), "{text}");
    let (path, authority) = origin_form(target);
    assert_eq!(up.path, Some(path.as_str()), "{text}");

    // The framing: what the client declared, and refused when ambiguous.
    let body = framing(headers, version == 0)
        .unwrap_or_else(|| panic!("an ambiguous or unsupported body framing was accepted: {text}"));
    assert_eq!(accepted.body, body, "{text}");

    // The header list the backend must get.
    let tokens: Vec<Vec<u8>> = headers
        .iter()
        .filter(|h| is(h.name, "connection"))
        .flat_map(|h| h.value.split(|c| *c == b','))
        .map(|t| t.trim_ascii().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let named = |n: &str| {
        tokens
            .iter()
            .any(|t| t.as_slice() == n.to_ascii_lowercase().as_bytes())
    };
    let hosts: Vec<&httparse::Header> = headers.iter().filter(|h| is(h.name, "host")).collect();
    assert!(hosts.len() <= 1, "two Host headers accepted: {text}");
    assert!(
        version == 0 || hosts.len() == 1,
        "HTTP/1.1 without Host accepted: {text}"
    );
    let host: Option<Vec<u8>> = authority
        .as_ref()
        .map(|a| a.as_bytes().to_vec())
        .or_else(|| hosts.first().map(|h| h.value.to_vec()));
    let mut want: Vec<(String, Vec<u8>)> = Vec::new();
    let mut chain: Vec<Vec<u8>> = Vec::new();
    for h in headers.iter() {
        let n = h.name;
        if is(n, "host") {
            want.push((n.to_string(), host.clone().unwrap_or_default()));
        } else if is(n, "x-forwarded-for") {
            chain.push(h.value.trim_ascii().to_vec());
        } else if [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "content-length",
            "expect",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
            "x-real-ip",
        ]
        .iter()
        .any(|d| is(n, d))
            || (n.len() > 6 && is(&n[..6], "proxy-"))
            || named(n)
        {
        } else {
            want.push((n.to_string(), h.value.to_vec()));
        }
    }
    if hosts.is_empty() {
        if let Some(a) = &authority {
            want.push(("Host".into(), a.as_bytes().to_vec()));
        }
    }
    chain.push(PEER.to_vec());
    want.push(("X-Forwarded-For".into(), chain.join(&b", "[..])));
    want.push(("X-Real-IP".into(), PEER.to_vec()));
    want.push(("X-Forwarded-Proto".into(), b"http".to_vec()));
    if let Some(h) = &host {
        want.push(("X-Forwarded-Host".into(), h.clone()));
    }
    match body {
        Body::Chunked => want.push(("Transfer-Encoding".into(), b"chunked".to_vec())),
        Body::Length(n) => want.push(("Content-Length".into(), n.to_string().into_bytes())),
        _ if headers.iter().any(|h| is(h.name, "content-length")) => {
            want.push(("Content-Length".into(), b"0".to_vec()))
        }
        _ => {}
    }
    let upgrade = headers.iter().filter(|h| is(h.name, "upgrade")).last();
    match upgrade {
        Some(u) if version == 1 && named("upgrade") => {
            assert!(accepted.upgrade, "{text}");
            want.push(("Connection".into(), b"upgrade".to_vec()));
            want.push(("Upgrade".into(), u.value.to_vec()));
        }
        _ => assert!(!accepted.upgrade, "{text}"),
    }
    if host.is_none() {
        want.push(("Host".into(), BACKEND.to_vec()));
    }
    let got: Vec<(String, Vec<u8>)> = up
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    assert_eq!(
        got.iter()
            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
            .collect::<Vec<_>>(),
        want.iter()
            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
            .collect::<Vec<_>>(),
        "client head: {:?}",
        String::from_utf8_lossy(&data[..accepted.len])
    );
    assert_eq!(got, want);
});
