//! The proxy's HTTP path: request and response heads, the chunked decoder, and whole client
//! connections through a running proxy to an in-process backend.

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
