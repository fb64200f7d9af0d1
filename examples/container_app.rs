//! A small HTTP app for container-mode tests and demos: `GET /` answers `$APP_VERSION`,
//! `GET /health` answers 200 (500 when `APP_HEALTH=fail`), `GET /slow` answers after 300 ms.
//! It listens on `0.0.0.0:$PORT` (default 8080) and, when `ADMIN_PORT` is set, on that port too
//! (answering `admin $APP_VERSION`). On SIGTERM it stops accepting, finishes what is in flight
//! and exits.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn serve(mut conn: TcpStream, version: &str, admin: bool) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let healthy = std::env::var("APP_HEALTH").map_or(true, |h| h != "fail");
    let (status, body) = match path {
        "/health" if healthy => ("200 OK", "ok\n".to_string()),
        "/health" => ("500 Internal Server Error", "unhealthy\n".to_string()),
        "/slow" => {
            std::thread::sleep(Duration::from_millis(300));
            ("200 OK", format!("{version}\n"))
        }
        _ if admin => ("200 OK", format!("admin {version}\n")),
        _ => ("200 OK", format!("{version}\n")),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn listen(port: &str) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(format!("0.0.0.0:{port}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn main() -> std::io::Result<()> {
    let version = std::env::var("APP_VERSION").unwrap_or_else(|_| "unknown".into());
    let main = listen(&std::env::var("PORT").unwrap_or_else(|_| "8080".into()))?;
    let admin = match std::env::var("ADMIN_PORT") {
        Ok(p) => Some(listen(&p)?),
        Err(_) => None,
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
    }
    eprintln!("container_app {version} serving");
    let mut in_flight = Vec::new();
    while !STOP.load(Ordering::SeqCst) {
        let mut idle = true;
        for (l, is_admin) in std::iter::once((&main, false)).chain(admin.iter().map(|a| (a, true))) {
            match l.accept() {
                Ok((conn, _)) => {
                    idle = false;
                    let v = version.clone();
                    in_flight.push(std::thread::spawn(move || serve(conn, &v, is_admin)));
                    in_flight.retain(|h| !h.is_finished());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for h in in_flight {
        let _ = h.join();
    }
    eprintln!("container_app {version} drained; exiting");
    Ok(())
}
