//! The proxy's response-head parser on arbitrary bytes (the first byte picks what the client
//! asked: HEAD, HTTP/1.0, keep-alive, upgrade): no panic, and the head the client gets frames the
//! body exactly as the proxy reads it from the backend, so the two cannot disagree.
#![no_main]

use dewy::fuzzing::{http_response_head, Body, ForClient};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let client = ForClient {
        head_request: flags & 1 != 0,
        http10: flags & 2 != 0,
        keep_alive: flags & 4 != 0,
        upgrade: flags & 8 != 0 && flags & 2 == 0,
    };
    let r = match http_response_head(data, client) {
        Ok(Some(r)) => r,
        Ok(None) => {
            assert!(data.len() < 64 * 1024, "a head over 64 KiB is still awaited");
            return;
        }
        Err(_) => return,
    };
    assert!(r.len > 0 && r.len <= data.len());
    if r.status == 101 {
        assert!(
            client.upgrade,
            "a 101 accepted for a client that asked no upgrade"
        );
    }
    let text = String::from_utf8_lossy(&r.downstream).to_string();
    let mut headers = [httparse::EMPTY_HEADER; 160];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(&r.downstream) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, r.downstream.len(), "{text}"),
        other => panic!("the client's head does not parse ({other:?}): {text:?}"),
    }
    assert_eq!(parsed.code, Some(r.status), "{text}");
    assert_eq!(parsed.version, Some(1), "{text}");
    let values = |name: &str| {
        parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect::<Vec<_>>()
    };
    let lengths = values("content-length");
    let te = values("transfer-encoding");
    let closes = values("connection").iter().any(|v| {
        v.split(|c| *c == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    if r.reusable {
        assert!(r.body != Body::UntilClose, "{text}");
    }
    if r.close_client && !(100..200).contains(&r.status) {
        assert!(closes, "the client is not told the connection closes: {text}");
    }
    // How an HTTP/1.1 client reads the body after this head (RFC 9112 §6.3).
    let no_body = client.head_request || (100..200).contains(&r.status) || r.status == 204 || r.status == 304;
    if no_body {
        assert_eq!(r.body, Body::Empty, "{text}");
        return;
    }
    assert!(lengths.len() <= 1 && te.len() <= 1, "{text}");
    match (te.first(), lengths.first()) {
        (Some(t), None) => {
            assert!(t.eq_ignore_ascii_case(b"chunked"), "{text}");
            assert!(r.body == Body::Chunked && !client.http10, "{text}");
        }
        (None, Some(l)) => {
            let n: u64 = std::str::from_utf8(l)
                .ok()
                .and_then(|l| l.parse().ok())
                .unwrap_or_else(|| panic!("a bad length for the client: {text}"));
            assert!(
                r.body == Body::Length(n) || (n == 0 && r.body == Body::Empty),
                "{text}"
            );
        }
        (None, None) => {
            // Read until close: the proxy closes after the body, whatever it reads upstream.
            assert!(r.close_client, "{text}");
            assert!(
                r.body == Body::UntilClose || (r.body == Body::Chunked && client.http10),
                "{text}"
            );
        }
        (Some(_), Some(_)) => panic!("both Transfer-Encoding and Content-Length: {text}"),
    }
});
