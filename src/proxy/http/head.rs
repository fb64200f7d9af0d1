//! HTTP/1.x message heads: a client's request or a backend's response parsed with httparse, the
//! body framing decided strictly (so the proxy and the backend agree where a message ends), and
//! the head written for the other side without hop-by-hop headers and with `X-Forwarded-*`.

use std::io::Write as _;
use std::mem::MaybeUninit;

use super::body::Framing;

/// Largest request or response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
const MAX_HEADERS: usize = 128;

/// Why a request is answered by the proxy itself instead of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    BadRequest(&'static str),
    HeadTooLarge,
    NotImplemented(&'static str),
    ConnectNotAllowed,
}

impl Reject {
    pub fn status(self) -> (u16, &'static str, &'static str) {
        match self {
            Reject::BadRequest(why) => (400, "Bad Request", why),
            Reject::HeadTooLarge => (
                431,
                "Request Header Fields Too Large",
                "the request head is too large",
            ),
            Reject::NotImplemented(why) => (501, "Not Implemented", why),
            Reject::ConnectNotAllowed => (
                405,
                "Method Not Allowed",
                "CONNECT is not served: this is a reverse proxy",
            ),
        }
    }
}

/// The request methods the proxy tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    Put,
    Delete,
    Trace,
    Other,
}

impl Method {
    fn of(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// Methods that may be sent twice.
    pub fn idempotent(self) -> bool {
        self != Method::Other
    }
}

/// A client's request, its head rewritten for the backend.
#[derive(Debug)]
pub struct Request {
    /// Bytes of the head in the client's buffer.
    pub len: usize,
    pub method: Method,
    pub body: Framing,
    /// The client speaks HTTP/1.0 (no chunked responses, keep-alive only when asked).
    pub http10: bool,
    /// The client may send another request on this connection.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// The client asks for a protocol upgrade (`Connection: upgrade` with `Upgrade`).
    pub upgrade: bool,
    /// The request has no `Host`: one naming the backend is added when sending.
    pub needs_host: bool,
}

/// Tokens of `Connection` headers, as lowercase-insensitive slices.
struct Tokens<'a> {
    list: [&'a [u8]; 8],
    n: usize,
    /// More than `list` holds: names are then checked against every `Connection` value.
    overflow: bool,
    /// The tokens the proxy acts on (`close`, `keep-alive`, `upgrade`), seen wherever they are in
    /// the list, past the first eight too.
    seen: u8,
}

/// The bit of a token the proxy acts on, in [`Tokens::seen`].
fn acted_on(token: &[u8]) -> u8 {
    [&b"close"[..], b"keep-alive", b"upgrade"]
        .iter()
        .position(|t| token.eq_ignore_ascii_case(t))
        .map_or(0, |i| 1 << i)
}

impl<'a> Tokens<'a> {
    fn new() -> Self {
        Tokens {
            list: [&[]; 8],
            n: 0,
            overflow: false,
            seen: 0,
        }
    }

    fn add_all(&mut self, value: &'a [u8]) {
        for t in value.split(|c| *c == b',') {
            let t = t.trim_ascii();
            if t.is_empty() {
                continue;
            }
            self.seen |= acted_on(t);
            if self.n < self.list.len() {
                self.list[self.n] = t;
                self.n += 1;
            } else {
                self.overflow = true;
            }
        }
    }

    fn has(&self, name: &[u8]) -> bool {
        match acted_on(name) {
            0 => self.list[..self.n].iter().any(|t| t.eq_ignore_ascii_case(name)),
            bit => self.seen & bit != 0,
        }
    }
}

/// Header names that only concern one hop; never forwarded either way.
fn hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 6] = [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || (name.len() > 6 && name[..6].eq_ignore_ascii_case("proxy-"))
}

/// Request headers the proxy drops besides the hop-by-hop ones: the framing and `Expect` it
/// handles itself, and the forwarding headers it writes itself. `Forwarded` and `X-Real-IP` from
/// a client could claim any client address, so they never reach a backend.
fn replaced_by_proxy(name: &str) -> bool {
    const REPLACED: [&str; 6] = [
        "content-length",
        "expect",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
    ];
    REPLACED.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether `name` is listed by a `Connection` header (checked against all of them when there
/// were more tokens than `tokens` keeps).
fn named_by_connection(name: &str, tokens: &Tokens, headers: &[httparse::Header]) -> bool {
    if tokens.has(name.as_bytes()) {
        return true;
    }
    tokens.overflow
        && headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(|c| *c == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
}

/// Whether `v` is a valid authority of an absolute-form target, to become the `Host`:
/// `host[:port]` with a registered name, IPv4 address or bracketed IP literal (RFC 3986 §3.2.2),
/// without user information.
fn valid_authority(v: &[u8]) -> bool {
    let (host, port) = match v.first() {
        Some(b'[') => match v.iter().position(|c| *c == b']') {
            Some(end) => {
                let literal = &v[1..end];
                if literal.is_empty()
                    || !literal
                        .iter()
                        .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.' | b'v' | b'V'))
                {
                    return false;
                }
                match &v[end + 1..] {
                    [] => return true,
                    [b':', port @ ..] => (&v[..0], port),
                    _ => return false,
                }
            }
            None => return false,
        },
        _ => match v.iter().position(|c| *c == b':') {
            Some(colon) => (&v[..colon], &v[colon + 1..]),
            None => (v, &v[..0]),
        },
    };
    // unreserved, pct-encoded and sub-delims: what a reg-name may hold.
    let host_ok = host.iter().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    });
    host_ok && port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
}

/// The request target to send upstream (origin or asterisk form) and, for an absolute-form
/// target, its authority, which replaces the `Host` header (RFC 9112 §3.2.2). An absolute-form
/// target with nothing or only a query after its authority gets the path `/` (written by the
/// caller: see [`write_target`]).
fn split_target<'a>(method: &str, target: &'a str) -> Result<(&'a str, Option<&'a str>), Reject> {
    if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
        return Ok((target, None));
    }
    let t = target.as_bytes();
    let scheme = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return Err(Reject::BadRequest("bad request target"));
    };
    // The scheme is ASCII, so `scheme` is a char boundary; so are '/' and '?'.
    let rest = &target[scheme..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || !valid_authority(authority.as_bytes()) {
        return Err(Reject::BadRequest("bad authority in the request target"));
    }
    Ok((&rest[end..], Some(authority)))
}

/// Write the origin-form `path` from [`split_target`]: `/` before a bare query or nothing.
fn write_target(out: &mut Vec<u8>, path: &str, absolute: bool) {
    if absolute && !path.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
}

/// The decimal value of a `Content-Length`, refusing signs, spaces and overflow.
fn content_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether a `Transfer-Encoding` list ends in `chunked`.
fn ends_chunked(v: &[u8]) -> bool {
    v.rsplit(|c| *c == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

fn put(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Parse the request at the front of `buf` and write the head to send upstream into `out`
/// (without the blank line that ends it: see [`finish_request`]). `Ok(None)`: incomplete.
/// `peer_ip` is the client address as text, for `X-Forwarded-For`.
pub fn parse_request(buf: &[u8], peer_ip: &str, out: &mut Vec<u8>) -> Result<Option<Request>, Reject> {
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => return Err(Reject::HeadTooLarge),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(Reject::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadTooLarge),
        Err(httparse::Error::Version) => {
            return Err(Reject::NotImplemented("only HTTP/1.0 and HTTP/1.1 are served"))
        }
        Err(_) => return Err(Reject::BadRequest("malformed request head")),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Reject::BadRequest("malformed request line"));
    };
    if method == "CONNECT" {
        return Err(Reject::ConnectNotAllowed);
    }
    // Origin form is forwarded as is; absolute form loses its scheme and authority, and the
    // authority becomes the `Host`.
    let (path, authority) = split_target(method, target)?;
    let http10 = version == 0;
    let headers = req.headers;

    let mut tokens = Tokens::new();
    let mut length: Option<u64> = None;
    let mut te: Option<&[u8]> = None;
    let mut te_count = 0;
    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut expect_continue = false;
    let mut upgrade_value: Option<&[u8]> = None;
    for h in headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("connection") {
            tokens.add_all(h.value);
        } else if n.eq_ignore_ascii_case("content-length") {
            let v = content_length(h.value).ok_or(Reject::BadRequest("bad Content-Length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(Reject::BadRequest("conflicting Content-Length headers"));
            }
            length = Some(v);
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            te = Some(h.value);
            te_count += 1;
        } else if n.eq_ignore_ascii_case("host") {
            host = Some(h.value);
            hosts += 1;
        } else if n.eq_ignore_ascii_case("expect") {
            if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            }
        } else if n.eq_ignore_ascii_case("upgrade") {
            upgrade_value = Some(h.value);
        }
    }
    let body = match (te, length) {
        (Some(_), Some(_)) => return Err(Reject::BadRequest("both Transfer-Encoding and Content-Length")),
        (Some(_), None) if http10 => {
            return Err(Reject::BadRequest("Transfer-Encoding in an HTTP/1.0 request"))
        }
        (Some(v), None) => {
            if te_count > 1 || !v.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Reject::NotImplemented(
                    "only Transfer-Encoding: chunked is accepted",
                ));
            }
            Framing::Chunked
        }
        (None, Some(0)) | (None, None) => Framing::Empty,
        (None, Some(n)) => Framing::Length(n),
    };
    if hosts > 1 || (!http10 && hosts == 0) {
        return Err(Reject::BadRequest("a request needs exactly one Host header"));
    }
    let close = tokens.has(b"close");
    let keep_alive = if http10 {
        tokens.has(b"keep-alive") && !close
    } else {
        !close
    };
    let upgrade = match upgrade_value {
        Some(_) if !http10 && tokens.has(b"upgrade") => upgrade_value,
        _ => None,
    };

    // The host the request is for: an absolute-form target's authority wins over `Host`.
    let host = authority.map(str::as_bytes).or(host);

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    write_target(out, path, authority.is_some());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut prior_xff = false;
    for h in headers.iter() {
        let n = h.name;
        // `Host` and earlier `X-Forwarded-For` go on even when `Connection` names them: the
        // backend needs both.
        if n.eq_ignore_ascii_case("host") {
            put(out, n.as_bytes(), host.unwrap_or(h.value));
            continue;
        }
        if n.eq_ignore_ascii_case("x-forwarded-for") {
            // Joined into one below.
            prior_xff = true;
            continue;
        }
        if hop_by_hop(n) || replaced_by_proxy(n) || named_by_connection(n, &tokens, headers) {
            continue;
        }
        put(out, n.as_bytes(), h.value);
    }
    if hosts == 0 {
        if let Some(a) = authority {
            put(out, b"Host", a.as_bytes());
        }
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if prior_xff {
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        {
            out.extend_from_slice(h.value.trim_ascii());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(peer_ip.as_bytes());
    out.extend_from_slice(b"\r\nX-Real-IP: ");
    out.extend_from_slice(peer_ip.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
    if let Some(h) = host {
        put(out, b"X-Forwarded-Host", h);
    }
    match body {
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        _ if length == Some(0) => out.extend_from_slice(b"Content-Length: 0\r\n"),
        _ => {}
    }
    if let Some(u) = upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        put(out, b"Upgrade", u);
    }
    Ok(Some(Request {
        len,
        method: Method::of(method),
        body,
        http10,
        keep_alive,
        expect_continue,
        upgrade: upgrade.is_some(),
        needs_host: host.is_none(),
    }))
}

/// The blank line ending a request head, after a `Host` naming the backend when the client sent
/// none (HTTP/1.0).
pub fn finish_request(out: &mut Vec<u8>, needs_host: bool, backend: std::net::SocketAddr) {
    if needs_host {
        let _ = write!(out, "Host: {backend}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

mod response;
pub use response::{parse_response, ForClient, Response};

#[cfg(test)]
mod tests;
