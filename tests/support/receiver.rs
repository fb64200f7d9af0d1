//! A local HTTP receiver standing in for Slack's Web API and webhook endpoints: it records every
//! request. `POST …/chat.postMessage` answers like Slack (`{"ok":true,"ts":…}`), a path ending in
//! `/hang` never answers, one ending in `/unavailable` answers its first 3 requests with `503`
//! and `Retry-After: 1`, one ending in `/limited` its first 2 with `429` and a `Retry-After` date
//! 2 s ahead; anything else gets `200 ok`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status the receiver answered with.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The running receiver; stops with its runtime when dropped.
pub struct Receiver {
    pub port: u16,
    requests: Arc<Mutex<Vec<Received>>>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    /// A receiver on `127.0.0.1:port` (0: any free port).
    pub fn start_on(port: u16) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("binding the receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let reqs = requests.clone();
        rt.spawn(async move {
            let counter = Arc::new(Mutex::new(Counts::default()));
            while let Ok((stream, _)) = listener.accept().await {
                let (reqs, counter) = (reqs.clone(), counter.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (reqs, counter) = (reqs.clone(), counter.clone());
                        async move { Ok::<_, Infallible>(handle(req, reqs, counter).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            port,
            requests,
            _rt: rt,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests to `path`.
    pub fn to(&self, path: &str) -> Vec<Received> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    reqs: Arc<Mutex<Vec<Received>>>,
    counter: Arc<Mutex<Counts>>,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let seen = {
        let mut c = counter.lock().unwrap();
        let n = c.per_path.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let refusal = if path.ends_with("/unavailable") && seen <= 3 {
        Some((503, "1".to_string()))
    } else if path.ends_with("/limited") && seen <= 2 {
        let at = std::time::SystemTime::now() + Duration::from_secs(2);
        Some((429, httpdate::fmt_http_date(at)))
    } else {
        None
    };
    reqs.lock().unwrap().push(Received {
        method,
        path: path.clone(),
        headers,
        body,
        status: refusal.as_ref().map_or(200, |(status, _)| *status),
    });
    if let Some((status, retry_after)) = refusal {
        return Response::builder()
            .status(status)
            .header("retry-after", retry_after)
            .body(Full::new(Bytes::from("try later")))
            .expect("refusal response");
    }
    if path.ends_with("/hang") {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let answer = if path.ends_with("/chat.postMessage") {
        let n = {
            let mut c = counter.lock().unwrap();
            c.slack_ts += 1;
            c.slack_ts
        };
        format!("{{\"ok\":true,\"channel\":\"C1\",\"ts\":\"1700000000.{n:06}\"}}")
    } else {
        "ok".to_string()
    };
    Response::new(Full::new(Bytes::from(answer)))
}

/// Requests seen per path, and the last Slack message timestamp handed out.
#[derive(Default)]
struct Counts {
    per_path: HashMap<String, u64>,
    slack_ts: u64,
}
