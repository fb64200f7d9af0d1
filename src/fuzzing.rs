//! Entry points for the fuzz targets in `fuzz/`: thin wrappers that feed arbitrary bytes to the
//! parsers dewy runs on input from the network, archives and configuration. Not a stable API.

pub use http_proxy::{
    http_chunked, http_connection, http_request_head, http_response_head, Accepted, Body, Decoded, ForClient,
    Response,
};

/// The proxy's HTTP path: request and response heads, the chunked decoder, and whole client
/// connections through a running proxy to an in-process backend.
mod http_proxy {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::proxy::http::body::{Chunked, Framing, Piece};
    use crate::proxy::http::head;

    /// The client address the request parser is given.
    pub const PEER: &str = "192.0.2.1";
    /// The backend address a request without `Host` is completed with.
    pub const BACKEND: &str = "127.0.0.1:9";

    /// How a message body is delimited.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Body {
        Empty,
        Length(u64),
        Chunked,
        UntilClose,
    }

    impl From<Framing> for Body {
        fn from(f: Framing) -> Body {
            match f {
                Framing::Empty => Body::Empty,
                Framing::Length(n) => Body::Length(n),
                Framing::Chunked => Body::Chunked,
                Framing::UntilClose => Body::UntilClose,
            }
        }
    }

    /// A request head the proxy accepted, and the head it sends upstream for it.
    #[derive(Debug)]
    pub struct Accepted {
        /// Bytes of the input the head took.
        pub len: usize,
        pub http10: bool,
        pub keep_alive: bool,
        pub expect_continue: bool,
        pub upgrade: bool,
        pub body: Body,
        /// The complete head for the backend (with `Host: 127.0.0.1:9` when the client sent no
        /// host).
        pub upstream: Vec<u8>,
    }

    /// The proxy's request-head parser on `data`: `Ok(None)` while incomplete, `Err` with the
    /// status and reason of a refusal.
    pub fn http_request_head(data: &[u8]) -> Result<Option<Accepted>, (u16, &'static str)> {
        let mut out = Vec::new();
        let r = match head::parse_request(data, PEER, &mut out) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(why) => {
                let (status, _, text) = why.status();
                return Err((status, text));
            }
        };
        let backend: SocketAddr = BACKEND.parse().expect("a socket address");
        head::finish_request(&mut out, r.needs_host, backend);
        Ok(Some(Accepted {
            len: r.len,
            http10: r.http10,
            keep_alive: r.keep_alive,
            expect_continue: r.expect_continue,
            upgrade: r.upgrade,
            body: r.body.into(),
            upstream: out,
        }))
    }

    /// What the client's request tells the response parser (the proxy's own type).
    pub use crate::proxy::http::head::ForClient;

    /// A response head the proxy accepted, and the head it sends the client.
    #[derive(Debug)]
    pub struct Response {
        pub len: usize,
        pub status: u16,
        pub body: Body,
        pub reusable: bool,
        pub close_client: bool,
        pub downstream: Vec<u8>,
    }

    /// The proxy's response-head parser on `data`.
    pub fn http_response_head(data: &[u8], client: ForClient) -> Result<Option<Response>, &'static str> {
        let mut out = Vec::new();
        Ok(head::parse_response(data, client, &mut out)?.map(|r| Response {
            len: r.len,
            status: r.status,
            body: r.body.into(),
            reusable: r.reusable,
            close_client: r.close_client,
            downstream: out,
        }))
    }

    /// A chunked body decoded by the proxy's parser.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Decoded {
        pub data: Vec<u8>,
        /// Bytes of the input the body took (data and framing).
        pub len: usize,
    }

    /// Decode the chunked body at the front of `input`, handing the parser the bytes `step` at a
    /// time (at least one) as a socket would. `Ok(None)`: the input ends inside the body.
    pub fn http_chunked(input: &[u8], step: usize) -> Result<Option<Decoded>, String> {
        let step = step.max(1);
        let mut parser = Chunked::default();
        let (mut fed, mut used) = (0, 0);
        let mut data = Vec::new();
        loop {
            match parser.next(&input[used..fed]).map_err(|e| e.to_string())? {
                Piece::More => {
                    if fed == input.len() {
                        return Ok(None);
                    }
                    fed = (fed + step).min(input.len());
                }
                Piece::Data(n) => {
                    assert!(n > 0 && used + n <= fed, "data piece outside the buffer");
                    data.extend_from_slice(&input[used..used + n]);
                    used += n;
                }
                Piece::Framing(n) => {
                    assert!(n > 0 && used + n <= fed, "framing piece outside the buffer");
                    used += n;
                }
                Piece::Done(n) => {
                    assert!(n > 0 && used + n <= fed, "final piece outside the buffer");
                    return Ok(Some(Decoded { data, len: used + n }));
                }
            }
        }
    }

    /// A running proxy (HTTP port on loopback) and its backend, kept for the whole fuzzing run.
    struct Harness {
        rt: tokio::runtime::Runtime,
        proxy: SocketAddr,
        /// What the backend answers to the next request.
        reply: Arc<Mutex<Vec<u8>>>,
        /// The first bad head the backend received.
        violation: Arc<Mutex<Option<String>>>,
        _handle: crate::proxy::ProxyHandle,
        _server: crate::proxy::Server,
    }

    /// Longest a connection through the proxy may take once both peers have sent everything:
    /// past it the proxy is holding a connection neither side keeps open.
    const CONNECTION_BOUND: Duration = Duration::from_secs(30);
    /// How long the backend reads and drops what follows a request it answered.
    const BACKEND_DRAIN: Duration = Duration::from_secs(5);

    fn harness() -> &'static Harness {
        static H: OnceLock<Harness> = OnceLock::new();
        H.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let reply = Arc::new(Mutex::new(Vec::new()));
            let violation = Arc::new(Mutex::new(None));
            let (proxy, handle, server) = rt.block_on(async {
                let backend = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the backend");
                let backend_addr = backend.local_addr().expect("backend address");
                tokio::spawn(serve_backend(backend, reply.clone(), violation.clone()));
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
                let addr = l.local_addr().expect("proxy address");
                let spec = format!("{addr}/http").parse().expect("a port spec");
                let (handle, server) = crate::proxy::start(vec![spec], vec![l], None, Duration::from_secs(5))
                    .await
                    .expect("the proxy starts");
                handle
                    .set_backends(addr.port(), vec![backend_addr])
                    .await
                    .expect("set the backend");
                (addr, handle, server)
            });
            Harness {
                rt,
                proxy,
                reply,
                violation,
                _handle: handle,
                _server: server,
            }
        })
    }

    /// The backend: on each connection, read one request head, check that it is what the proxy
    /// must send (a violation is kept in `violation`), answer the current reply, close its
    /// sending side and drain the rest.
    async fn serve_backend(
        l: tokio::net::TcpListener,
        reply: Arc<Mutex<Vec<u8>>>,
        violation: Arc<Mutex<Option<String>>>,
    ) {
        while let Ok((mut s, _)) = l.accept().await {
            let reply = reply.clone();
            let violation = violation.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let bad = loop {
                    match check_upstream_head(&buf) {
                        Ok(Some(_)) => break None,
                        Err(why) => break Some(why),
                        Ok(None) => match s.read(&mut chunk).await {
                            Ok(0) | Err(_) if buf.is_empty() => return,
                            Ok(0) | Err(_) => {
                                break Some(format!(
                                    "the proxy sent a partial request head: {:?}",
                                    String::from_utf8_lossy(&buf)
                                ))
                            }
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        },
                    }
                };
                if let Some(why) = bad {
                    if let Ok(mut v) = violation.lock() {
                        v.get_or_insert(why);
                    }
                    return;
                }
                let answer = reply.lock().map(|r| r.clone()).unwrap_or_default();
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
                let _ = tokio::time::timeout(BACKEND_DRAIN, async {
                    while let Ok(n) = s.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
            });
        }
    }

    /// `Ok(None)` while the head in `buf` is incomplete; `Err` when the proxy sent a head that is
    /// not a well-formed HTTP/1.1 request with one `Host`, one framing header at most and the
    /// proxy's own client-address headers.
    fn check_upstream_head(buf: &[u8]) -> Result<Option<usize>, String> {
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "the proxy sent a malformed head ({e}): {:?}",
                    String::from_utf8_lossy(buf)
                ))
            }
        };
        let count = |name: &str| {
            req.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .count()
        };
        let mut xff = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"));
        let ok = req.version == Some(1)
            && buf[..len].ends_with(b"\r\n\r\n")
            && count("host") == 1
            && count("content-length") + count("transfer-encoding") <= 1
            && count("x-real-ip") == 1
            && count("forwarded") == 0
            && xff.next().is_some_and(|h| h.value.ends_with(b"127.0.0.1"))
            && xff.next().is_none();
        if !ok {
            return Err(format!(
                "the proxy sent a head without its headers or with ambiguous framing: {:?}",
                String::from_utf8_lossy(&buf[..len])
            ));
        }
        Ok(Some(len))
    }

    /// Send `client` on a new connection through the proxy, whose backend answers each request
    /// with `reply`, and return what the client received. Panics when the proxy answered something
    /// that is not an HTTP/1.1 response, sent the backend a bad head, or held the connection
    /// open after both sides were done.
    pub fn http_connection(client: &[u8], reply: &[u8]) -> Vec<u8> {
        let h = harness();
        if let Ok(mut r) = h.reply.lock() {
            r.clear();
            r.extend_from_slice(reply);
        }
        let got = h.rt.block_on(async {
            let s = tokio::net::TcpStream::connect(h.proxy)
                .await
                .expect("connect to the proxy");
            let (mut rd, mut wr) = s.into_split();
            let send = async {
                let _ = wr.write_all(client).await;
                let _ = wr.shutdown().await;
            };
            let receive = async {
                let mut got = Vec::new();
                let _ = rd.read_to_end(&mut got).await;
                got
            };
            tokio::time::timeout(CONNECTION_BOUND, async { tokio::join!(send, receive).1 }).await
        });
        if let Some(why) = h.violation.lock().ok().and_then(|mut v| v.take()) {
            panic!("{why}");
        }
        let Ok(got) = got else {
            panic!("the proxy kept a finished connection open for {CONNECTION_BOUND:?}");
        };
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 "),
            "not an HTTP/1.1 response: {:?}",
            String::from_utf8_lossy(&got[..got.len().min(200)])
        );
        got
    }
}

pub mod archives;
pub mod config_keys;

/// Version tags as a registry lists them or a D-Bus caller sends them: lines of text, each
/// parsed as SemVer; whatever is accepted passes the text rules, and the order is antisymmetric.
pub fn version(data: &[u8]) {
    use crate::registry::version::{check_text, Selector, Version, MAX_LEN};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let selector = Selector::default();
    let mut parsed = Vec::new();
    for line in text.split('\n') {
        let validated = selector.validate(line);
        let plain = Version::parse(line);
        assert_eq!(validated.is_ok(), plain.is_some(), "{line:?}");
        if let Ok(v) = validated {
            assert!(line.len() <= MAX_LEN && check_text(line).is_ok(), "{line:?}");
            assert_eq!(v.raw(), line);
            let _ = (v.is_prerelease(), v.build());
            parsed.push(v);
        } else {
            let err = validated.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
    }
    check_order(&parsed);
    let _ = selector.newest(text.split('\n').map(|t| (t, ())));
}

/// A CalVer format (first line) and tags (the other lines): the format parser never panics,
/// accepted tags pass the text rules, and precedence is a consistent order.
pub fn calver(data: &[u8]) {
    use crate::registry::calver::Format;
    use crate::registry::version::{check_text, Selector};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let Some(format) = lines.next().and_then(|f| Format::parse(f).ok()) else {
        return;
    };
    let selector = Selector {
        calver: Some(format.clone()),
        ..Selector::default()
    };
    let mut parsed = Vec::new();
    for tag in lines {
        let raw = format.parse_tag(tag);
        match selector.validate(tag) {
            Ok(v) => {
                assert!(check_text(tag).is_ok(), "{tag:?}");
                assert!(raw.is_some(), "{tag:?}");
                parsed.push(v);
            }
            Err(_) => assert!(raw.is_none() || check_text(tag).is_err(), "{tag:?}"),
        }
    }
    check_order(&parsed);
}

/// A gRPC registry's `Current` answer as it comes off the wire (protobuf; the first byte picks
/// the selector: bit 0 pre-releases, bit 1 slot `blue`, bit 2 CalVer `YYYY.0M.MICRO`). An answer
/// accepted names a release of the selector's grammar, slot and an artifact URL dewy downloads
/// from, and the release's own URL is accepted again as the same; no message carries a control
/// character from the answer.
pub fn grpc_answer(data: &[u8]) {
    use crate::registry::calver::Format;
    use crate::registry::grpc::{check_answer, proto};
    use crate::registry::version::Selector;
    use prost::Message;
    let Some((&flags, wire)) = data.split_first() else {
        return;
    };
    let Ok(answer) = proto::CurrentResponse::decode(wire) else {
        return;
    };
    let selector = Selector {
        prerelease: flags & 1 != 0,
        slot: (flags & 2 != 0).then(|| "blue".to_string()),
        calver: (flags & 4 != 0).then(|| Format::parse("YYYY.0M.MICRO").expect("a CalVer format")),
    };
    let server = "gRPC registry fuzz:443 (TLS)";
    let (release, url) = match check_answer(&selector, server, &answer) {
        Ok(r) => r,
        Err(e) => {
            let said = format!("{:#}", anyhow::Error::from(e));
            assert!(!said.chars().any(char::is_control), "{said:?}");
            return;
        }
    };
    assert_eq!(release.version, answer.tag);
    let version = selector
        .validate(&release.version)
        .unwrap_or_else(|e| panic!("{:?} accepted: {e}", release.version));
    if let Some(slot) = &selector.slot {
        assert_eq!(version.build(), slot);
    }
    assert!(answer.id.len() <= 1024);
    assert_eq!(release.artifact_url, url.as_str());
    assert!(
        matches!(url.scheme(), "http" | "https" | "s3" | "gs" | "ghr")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.username().is_empty()
            && url.password().is_none(),
        "{url}"
    );
    let name = &release.artifact;
    assert!(
        !name.is_empty() && name != "." && name != ".." && !name.chars().any(|c| c == '/' || c.is_control()),
        "{name:?}"
    );
    assert_eq!(
        release.published_at,
        answer.created_at.as_ref().and_then(proto::to_utc)
    );
    // The URL as kept (it may be longer than as sent: parsing percent-encodes).
    if url.as_str().len() <= 4096 {
        let again = proto::CurrentResponse {
            artifact_url: release.artifact_url.clone(),
            ..answer
        };
        let (r2, url2) = check_answer(&selector, server, &again)
            .unwrap_or_else(|e| panic!("{url} is refused when sent back: {e}"));
        assert_eq!((&r2.artifact, &url2), (&release.artifact, &url));
    }
}

/// Antisymmetry, reflexivity and transitivity of version precedence over every pair/triple.
fn check_order(versions: &[crate::registry::version::Version]) {
    let n = versions.len().min(12);
    for a in &versions[..n] {
        assert_eq!(a.cmp(a), std::cmp::Ordering::Equal);
        for b in &versions[..n] {
            assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} vs {b}");
            for c in &versions[..n] {
                if a <= b && b <= c {
                    assert!(a <= c, "{a} <= {b} <= {c}");
                }
            }
        }
    }
}

/// Config loader: TOML text of one app's file → validated settings, printed back the way
/// `dewy config check` prints them. Must refuse bad input with an error, never panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/etc/dewy/app.toml");
    if let Ok(settings) = crate::config::from_text("app", path, text) {
        let _ = toml::to_string(&settings);
    }
}

#[cfg(test)]
mod tests {
    /// The `config` target's seed corpus, cut at every byte and with single bytes replaced by
    /// characters that matter to TOML and to dewy's values: no panic (the fuzzer goes further).
    #[test]
    fn config_seeds_and_their_simple_mutations_do_not_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config");
        let mut seeds = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/config") {
            let seed = std::fs::read(entry.expect("corpus entry").path()).expect("seed");
            seeds += 1;
            for cut in 0..=seed.len() {
                super::config(&seed[..cut]);
            }
            for i in 0..seed.len() {
                for b in *b"9\"=[,\n" {
                    let mut m = seed.clone();
                    m[i] = b;
                    super::config(&m);
                }
            }
        }
        assert!(seeds >= 4, "{seeds} seeds in {}", dir.display());
    }

    /// The seed corpora of the config-key and gRPC answer targets hold the targets' properties
    /// (the fuzzer checks them on what it derives from the seeds).
    #[test]
    fn config_key_and_grpc_answer_seeds_hold() {
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 4] = [
            ("fleet_lock", super::config_keys::fleet_lock),
            ("window", super::config_keys::window),
            ("app_properties", super::config_keys::app_properties),
            ("grpc_answer", super::grpc_answer),
        ];
        for (target, run) in targets {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus")
                .join(target);
            let mut seeds = 0;
            for entry in std::fs::read_dir(&dir).expect("a seed corpus") {
                let path = entry.expect("corpus entry").path();
                run(&std::fs::read(&path).expect("seed"));
                seeds += 1;
            }
            assert!(seeds >= 4, "{seeds} seeds in {}", dir.display());
        }
    }
}
