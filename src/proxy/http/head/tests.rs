//! Tests of the HTTP/1.1 head parser: request and response framing, hop-by-hop headers, rejects.

use super::*;

fn req(raw: &str) -> Result<(Request, String), Reject> {
    let mut out = Vec::new();
    let r = parse_request(raw.as_bytes(), "192.0.2.7", &mut out)?.expect("complete");
    let backend = "127.0.0.1:9".parse().expect("addr");
    finish_request(&mut out, r.needs_host, backend);
    Ok((r, String::from_utf8(out).expect("utf-8")))
}

const CLIENT: ForClient = ForClient {
    head_request: false,
    http10: false,
    keep_alive: true,
    upgrade: false,
};

fn resp(raw: &str, client: ForClient) -> Result<(Response, String), &'static str> {
    let mut out = Vec::new();
    let r = parse_response(raw.as_bytes(), client, &mut out)?.expect("complete");
    Ok((r, String::from_utf8(out).expect("utf-8")))
}

#[test]
fn hop_by_hop_headers_go_and_forwarded_ones_come() {
    let (r, head) = req(
        "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Private\r\n\
             X-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: h2c\r\n\
             Proxy-Authorization: Basic x\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-For: 10.0.0.2\r\nX-Kept: yes\r\n\r\n",
    )
    .expect("accepted");
    assert_eq!(
        head,
        "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Kept: yes\r\n\
             X-Forwarded-For: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\n\
             X-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\n\r\n"
    );
    assert!(r.keep_alive && !r.upgrade && !r.http10);
    assert_eq!(r.body, Framing::Empty);
}

#[test]
fn connection_cannot_remove_what_the_proxy_sends() {
    let (r, head) = req("POST /p HTTP/1.1\r\nHost: app.example\r\n\
             Connection: Host, X-Forwarded-For, Content-Length, X-Forwarded-Host, X-Real-IP, X-Gone\r\n\
             X-Forwarded-For: 10.0.0.1\r\nContent-Length: 3\r\nX-Gone: 1\r\n\r\n")
    .expect("accepted");
    assert_eq!(
        head,
        "POST /p HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n\
             X-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: app.example\r\n\
             Content-Length: 3\r\n\r\n"
    );
    assert_eq!(r.body, Framing::Length(3));
    // HTTP/1.0 naming its Host keeps it too (no Host naming the backend is added).
    let (r, head) =
        req("GET / HTTP/1.0\r\nHost: old.example\r\nConnection: host, keep-alive\r\n\r\n").expect("accepted");
    assert!(!r.needs_host && r.keep_alive);
    assert!(head.contains("\r\nHost: old.example\r\n"), "{head}");
    assert_eq!(head.matches("\r\nHost:").count(), 1, "{head}");
}

#[test]
fn absolute_form_becomes_origin_form_with_the_authority_as_host() {
    for (target, path) in [
        ("http://a.example/p?q=1", "/p?q=1"),
        ("http://a.example", "/"),
        ("http://a.example?q=1", "/?q=1"),
        ("HTTPS://a.example:8443/x/y", "/x/y"),
        ("http://[2001:db8::1]:8080/v6", "/v6"),
        ("http://10.0.0.1/", "/"),
    ] {
        let authority = target.split_once("//").expect("scheme").1;
        let authority = &authority[..authority.find(['/', '?']).unwrap_or(authority.len())];
        let (r, head) = req(&format!(
            "GET {target} HTTP/1.1\r\nHost: other.example\r\nX-App: 1\r\n\r\n"
        ))
        .expect("accepted");
        assert!(!r.needs_host);
        assert_eq!(
            head,
            format!(
                "GET {path} HTTP/1.1\r\nHost: {authority}\r\nX-App: 1\r\n\
                     X-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\
                     X-Forwarded-Host: {authority}\r\n\r\n"
            ),
            "{target}"
        );
    }
    // HTTP/1.0 without Host: the authority is the Host, not the backend's address.
    let (r, head) = req("GET http://a.example/p HTTP/1.0\r\n\r\n").expect("accepted");
    assert!(!r.needs_host);
    assert!(
        head.starts_with("GET /p HTTP/1.1\r\nHost: a.example\r\n"),
        "{head}"
    );
    assert!(!head.contains("127.0.0.1:9"), "{head}");
    // Other schemes, user information and a missing or bad authority are refused.
    for (target, why) in [
        ("ftp://a.example/f", "bad request target"),
        ("a.example:80", "bad request target"),
        ("*", "bad request target"),
        ("http:///p", "bad authority in the request target"),
        ("http://user:pw@a.example/", "bad authority in the request target"),
        ("http://a.example:80x/", "bad authority in the request target"),
        ("http://[::1/", "bad authority in the request target"),
        ("http://a\"b/", "bad authority in the request target"),
    ] {
        assert_eq!(
            req(&format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n")).err(),
            Some(Reject::BadRequest(why)),
            "{target}"
        );
    }
    assert!(req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").is_ok());
}

#[test]
fn client_address_headers_from_clients_are_replaced() {
    let (_, head) = req(
        "GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\n\
             x-real-ip: 203.0.113.10\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    )
    .expect("accepted");
    assert_eq!(
        head,
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.9, 192.0.2.7\r\n\
             X-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
}

#[test]
fn framing_of_requests() {
    let (r, head) = req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n").expect("ok");
    assert_eq!(r.body, Framing::Length(5));
    assert!(head.contains("Content-Length: 5\r\n"), "{head}");
    let (r, head) =
        req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
            .expect("ok");
    assert_eq!(r.body, Framing::Chunked);
    assert!(r.expect_continue);
    assert!(
        head.contains("Transfer-Encoding: chunked\r\n") && !head.contains("Expect"),
        "{head}"
    );
    let (r, head) = req("GET / HTTP/1.0\r\n\r\n").expect("1.0 without Host");
    assert!(r.http10 && !r.keep_alive && r.needs_host);
    assert!(head.contains("Host: 127.0.0.1:9\r\n"), "{head}");
    let (r, _) = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").expect("ok");
    assert!(r.keep_alive);
    let (r, head) = req("GET http://h.example/x HTTP/1.1\r\nHost: h.example\r\n\r\n").expect("ok");
    assert!(head.starts_with("GET /x HTTP/1.1\r\n"), "{head}");
    assert!(!r.needs_host);
    let (r, head) =
        req("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").expect("ok");
    assert!(r.upgrade);
    assert!(
        head.contains("Connection: upgrade\r\nUpgrade: websocket\r\n"),
        "{head}"
    );
}

#[test]
fn ambiguous_requests_are_refused() {
    let cases: [(&str, Reject); 10] = [
        (
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Reject::BadRequest("both Transfer-Encoding and Content-Length"),
        ),
        (
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            Reject::BadRequest("conflicting Content-Length headers"),
        ),
        (
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
            Reject::BadRequest("bad Content-Length"),
        ),
        (
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Reject::NotImplemented("only Transfer-Encoding: chunked is accepted"),
        ),
        (
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            Reject::NotImplemented("only Transfer-Encoding: chunked is accepted"),
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Reject::BadRequest("Transfer-Encoding in an HTTP/1.0 request"),
        ),
        (
            "GET / HTTP/1.1\r\n\r\n",
            Reject::BadRequest("a request needs exactly one Host header"),
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            Reject::BadRequest("a request needs exactly one Host header"),
        ),
        (
            "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
            Reject::ConnectNotAllowed,
        ),
        (
            "GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",
            Reject::BadRequest("malformed request head"),
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(req(raw).err(), Some(want), "{raw:?}");
    }
    assert_eq!(
        req("GET / HTTP/2.0\r\nHost: h\r\n\r\n").err(),
        Some(Reject::NotImplemented("only HTTP/1.0 and HTTP/1.1 are served"))
    );
    assert_eq!(
        req("GET nothing HTTP/1.1\r\nHost: h\r\n\r\n").err(),
        Some(Reject::BadRequest("bad request target"))
    );
    let mut out = Vec::new();
    let huge = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(
        parse_request(huge.as_bytes(), "1.2.3.4", &mut out).err(),
        Some(Reject::HeadTooLarge)
    );
    assert!(matches!(
        parse_request(b"GET / HTTP/1.1\r\nHo", "1.2.3.4", &mut out),
        Ok(None)
    ));
}

#[test]
fn close_and_upgrade_count_past_the_eighth_connection_token() {
    let many = "a, b, c, d, e, f, g, h, i";
    let (r, head) = req(&format!(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: {many}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        ))
        .expect("ok");
    assert!(r.upgrade, "{head}");
    let (r, _) = req(&format!(
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: {many}, close\r\n\r\n"
    ))
    .expect("ok");
    assert!(!r.keep_alive);
}

#[test]
fn repeated_equal_lengths_reach_the_client_once() {
    let raw = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n";
    let (r, head) = resp(raw, CLIENT).expect("ok");
    assert_eq!(r.body, Framing::Length(3));
    assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\n\r\n");
    let (_, head) = resp("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", CLIENT).expect("ok");
    assert_eq!(head, "HTTP/1.1 204 No Content\r\n\r\n");
    let (_, head) = resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", CLIENT).expect("ok");
    assert_eq!(head, "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n");
}

#[test]
fn status_codes_outside_100_to_599_are_refused() {
    for line in [
        "HTTP/1.0 000 OK",
        "HTTP/1.1 099 X",
        "HTTP/1.1 600 X",
        "HTTP/1.1 999 X",
    ] {
        let head = format!("{line}\r\nContent-Length: 0\r\n\r\n");
        assert!(resp(&head, CLIENT).is_err(), "{line} accepted");
    }
    for line in ["HTTP/1.1 100 Continue", "HTTP/1.1 599 X"] {
        let head = format!("{line}\r\nContent-Length: 0\r\n\r\n");
        assert!(resp(&head, CLIENT).is_ok(), "{line} refused");
    }
}

#[test]
fn response_framing_and_rewriting() {
    let (r, head) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-App: a\r\n\r\n",
            CLIENT,
        )
        .expect("ok");
    assert_eq!(
        (r.status, r.body, r.reusable, r.close_client),
        (200, Framing::Length(3), true, false)
    );
    assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-App: a\r\n\r\n");
    // Transfer-Encoding wins; Content-Length dropped.
    let (r, head) = resp(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        CLIENT,
    )
    .expect("ok");
    assert_eq!(r.body, Framing::Chunked);
    assert_eq!(head, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    // An HTTP/1.0 client gets the chunked body unwrapped, then the connection closes.
    let old = ForClient {
        http10: true,
        ..CLIENT
    };
    let (r, head) = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", old).expect("ok");
    assert!(r.close_client);
    assert_eq!(head, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    // No length: read until close, not reusable, client closed after.
    let (r, _) = resp("HTTP/1.1 200 OK\r\n\r\n", CLIENT).expect("ok");
    assert_eq!(
        (r.body, r.reusable, r.close_client),
        (Framing::UntilClose, false, true)
    );
    // HEAD, 204 and 304 have no body whatever the length says.
    let head_req = ForClient {
        head_request: true,
        ..CLIENT
    };
    let (r, head) = resp("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", head_req).expect("ok");
    assert_eq!(r.body, Framing::Empty);
    assert!(head.contains("Content-Length: 99"));
    assert_eq!(
        resp("HTTP/1.1 304 Not Modified\r\n\r\n", CLIENT)
            .expect("ok")
            .0
            .body,
        Framing::Empty
    );
    // The backend closing, or HTTP/1.0 without keep-alive.
    assert!(
        !resp(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            CLIENT
        )
        .expect("ok")
        .0
        .reusable
    );
    assert!(
        !resp("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", CLIENT)
            .expect("ok")
            .0
            .reusable
    );
    // Upgrades.
    let up = ForClient {
        upgrade: true,
        ..CLIENT
    };
    let (r, head) = resp(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        up,
    )
    .expect("ok");
    assert!(!r.reusable);
    assert_eq!(
        head,
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n"
    );
    // A 101 without an upgrade request is an error, not an interim response.
    assert_eq!(
        resp(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
            CLIENT,
        )
        .err(),
        Some("a 101 Switching Protocols the client did not ask for")
    );
    // `Connection` naming the length does not take it from the client.
    let (r, head) = resp(
        "HTTP/1.1 200 OK\r\nConnection: Content-Length, X-Hop\r\nContent-Length: 3\r\nX-Hop: 1\r\n\r\n",
        CLIENT,
    )
    .expect("ok");
    assert_eq!((r.body, r.close_client), (Framing::Length(3), false));
    assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
    // Garbage.
    assert!(resp(
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        CLIENT
    )
    .is_err());
    assert!(resp("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", CLIENT).is_err());
    assert!(resp("SSH-2.0-OpenSSH\r\n\r\n", CLIENT).is_err());
}
