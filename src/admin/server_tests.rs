//! The admin API against a real TCP client: shapes, methods, paths, slow clients, port fallback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

struct Fake {
    containers: Option<Vec<ContainerView>>,
}

#[async_trait::async_trait]
impl Source for Fake {
    fn status(&self) -> StatusView {
        StatusView {
            name: "web".into(),
            command: view::command_code(Mode::Container),
            current_version: "v1.2.3".into(),
            proxy_backends: 2,
            is_running: false,
            mode: "container".into(),
            previous_version: Some("v1.2.2".into()),
            activity: "idle".into(),
            desired_replicas: 2,
            running_replicas: 2,
            registry: "img://127.0.0.1:5000/web".into(),
            dewy_version: "0.1.0".into(),
        }
    }
    async fn containers(&self) -> anyhow::Result<Option<Vec<ContainerView>>> {
        Ok(self.containers.clone())
    }
}

struct Text(&'static str);
impl crate::metrics::Render for Text {
    fn render(&self) -> String {
        self.0.to_string()
    }
}

fn container() -> ContainerView {
    ContainerView {
        id: "abc123".into(),
        name: "web-1700000000-0".into(),
        image: "127.0.0.1:5000/web:v1.2.3".into(),
        status: "running".into(),
        ip_port: "127.0.0.1:49153".into(),
        started_at: "2026-01-02T03:04:05.123456789Z".into(),
        deployed_at: "2026-01-02T03:04:05Z".into(),
        labels: [("dewy.app".to_string(), "web".to_string())].into(),
        version: "v1.2.3".into(),
    }
}

async fn start(containers: Option<Vec<ContainerView>>, limits: Limits) -> Served {
    let listener = bind(0).await.expect("bind");
    serve(
        listener,
        Arc::new(Fake { containers }),
        Arc::new(Text("dewy_info{command=\"container\"} 1\n")),
        limits,
    )
    .expect("serve")
}

/// One raw HTTP exchange: (status code, headers, body).
fn exchange(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, head.to_ascii_lowercase(), body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_containers_and_metrics_have_go_dewys_shapes() {
    let served = start(Some(vec![container()]), Limits::default()).await;
    let addr = served.addr;
    assert!(addr.ip().is_loopback());
    let (code, head, body) = tokio::task::spawn_blocking(move || get(addr, "/api/status"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["name"], "web");
    assert_eq!(v["command"], 2, "Go Dewy's integer code");
    assert_eq!(v["mode"], "container");
    assert_eq!(v["current_version"], "v1.2.3");
    assert_eq!(v["proxy_backends"], 2);
    assert_eq!(v["is_running"], false);
    assert_eq!(v["previous_version"], "v1.2.2");

    let (code, _, body) = tokio::task::spawn_blocking(move || get(addr, "/api/containers"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let c = &v["containers"][0];
    for key in [
        "id",
        "name",
        "image",
        "status",
        "ip_port",
        "started_at",
        "deployed_at",
    ] {
        assert!(c[key].is_string(), "{key} missing in {body}");
    }
    assert_eq!(c["ip_port"], "127.0.0.1:49153");
    assert_eq!(c["labels"]["dewy.app"], "web");

    let (code, head, body) = tokio::task::spawn_blocking(move || get(addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert_eq!(body, "dewy_info{command=\"container\"} 1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_null_outside_container_mode() {
    let served = start(None, Limits::default()).await;
    let addr = served.addr;
    let (code, _, body) = tokio::task::spawn_blocking(move || get(addr, "/api/containers"))
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(body.trim(), r#"{"containers":null}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_are_405_and_other_paths_404() {
    let served = start(Some(Vec::new()), Limits::default()).await;
    let addr = served.addr;
    let answers = tokio::task::spawn_blocking(move || {
        [
            exchange(
                addr,
                "POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            ),
            exchange(addr, "DELETE /api/containers HTTP/1.1\r\nHost: x\r\n\r\n"),
            exchange(
                addr,
                "PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            ),
            get(addr, "/api/status/x"),
            get(addr, "/"),
            get(addr, "/api/"),
            exchange(addr, "HEAD /api/status HTTP/1.1\r\nHost: x\r\n\r\n"),
        ]
    })
    .await
    .unwrap();
    for (code, head, _) in &answers[..3] {
        assert_eq!(*code, 405);
        assert!(head.contains("allow: get, head"), "{head}");
    }
    for (code, _, _) in &answers[3..6] {
        assert_eq!(*code, 404);
    }
    assert_eq!(answers[6].0, 200);
    assert!(answers[6].2.is_empty(), "HEAD has no body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_by_the_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(20),
        max_connections: 4,
    };
    let served = start(Some(Vec::new()), limits).await;
    let addr = served.addr;
    let took = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let start = Instant::now();
        let request = b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let mut buf = [0u8; 512];
        // One byte every 100 ms: the head never completes in time.
        for b in request.iter().chain(std::iter::repeat(&b'a')) {
            if start.elapsed() > Duration::from_secs(10) {
                panic!("the slow client was never cut off");
            }
            if s.write_all(&[*b]).is_err() {
                return start.elapsed();
            }
            match s.read(&mut buf) {
                Ok(0) => return start.elapsed(),
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    assert!(!text.contains("200 OK"), "answered a request it never completed");
                    return start.elapsed();
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unreachable!()
    })
    .await
    .unwrap();
    assert!(took < Duration::from_secs(3), "cut off after {took:?}");
    // The server still answers others.
    let (code, _, _) = tokio::task::spawn_blocking(move || get(addr, "/api/status"))
        .await
        .unwrap();
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_port_is_taken_when_the_first_is_busy() {
    // Find a run of free ports, occupy the first two.
    let (busy1, busy2, first) = loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().unwrap().port();
        if p > 65000 {
            continue;
        }
        match std::net::TcpListener::bind(("127.0.0.1", p + 1)) {
            Ok(l2) => break (l, l2, p),
            Err(_) => continue,
        }
    };
    let listener = bind(first).await.expect("a free port after the busy ones");
    let port = listener.local_addr().unwrap().port();
    assert!(
        port >= first + 2 && port < first + PORT_TRIES,
        "bound {port} from {first}"
    );
    let served = serve(
        listener,
        Arc::new(Fake {
            containers: Some(vec![container()]),
        }),
        Arc::new(Text("")),
        Limits::default(),
    )
    .expect("serve");
    // Go Dewy's client finds it from the first port.
    let listing = client::list_containers(first).await.expect("listing");
    assert_eq!(listing.port, port);
    assert_eq!(listing.containers, vec![container()]);
    drop(served);
    drop((busy1, busy2));
}

#[tokio::test]
async fn all_ten_ports_busy_is_a_clear_error() {
    let mut held = Vec::new();
    let first = loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().unwrap().port();
        if p > 65000 {
            continue;
        }
        let rest: Vec<_> = (1..PORT_TRIES)
            .map_while(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).ok())
            .collect();
        if rest.len() == usize::from(PORT_TRIES - 1) {
            held.push(l);
            held.extend(rest);
            break p;
        }
    };
    let err = bind(first).await.expect_err("all busy").to_string();
    assert!(err.contains(&format!("ports {first}-{}", first + 9)), "{err}");
    let err = client::list_containers(first).await;
    // The held sockets accept but never answer HTTP: every probe times out or fails.
    assert!(err.is_err());
}
