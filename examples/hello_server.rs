//! A small HTTP app for `dewy server`: serves on the socket it inherits (`LISTEN_FDS`, via
//! `listenfd`), answers `/` with its version, sends `READY=1` to `NOTIFY_SOCKET`, and on SIGTERM
//! stops accepting and finishes the requests in flight before it exits.
//!
//! The version is the `VERSION` file next to the binary (the release directory), else
//! `$DEWY_VERSION`. Without inherited sockets it binds `127.0.0.1:$PORT` (default 8080).
//!
//! ```sh
//! cargo build --release --example hello_server
//! dewy server --registry file:///srv/releases --port 8080 -- ./current/hello_server
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn version() -> String {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("VERSION")))
        .and_then(|p| std::fs::read_to_string(p).ok());
    beside
        .or_else(|| std::env::var("DEWY_VERSION").ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn listener() -> std::io::Result<TcpListener> {
    if let Some(l) = listenfd::ListenFd::from_env().take_tcp_listener(0)? {
        return Ok(l);
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    TcpListener::bind(format!("127.0.0.1:{port}"))
}

fn serve(mut conn: TcpStream, version: &str) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    // Read the request line and headers up to the blank line.
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let body = format!("{version}\n");
    write!(
        conn,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn main() -> std::io::Result<()> {
    let version = version();
    let listener = listener()?;
    listener.set_nonblocking(true)?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    eprintln!("hello_server {version} serving (pid {})", std::process::id());
    let mut in_flight = Vec::new();
    while !STOP.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, _)) => {
                let v = version.clone();
                in_flight.push(std::thread::spawn(move || serve(conn, &v)));
                in_flight.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    drop(listener);
    for h in in_flight {
        let _ = h.join();
    }
    eprintln!("hello_server {version} drained; exiting");
    Ok(())
}
