//! The app's listening sockets: inherited from dewy's own socket activation (`LISTEN_FDS`) or
//! bound here, kept open by the deployer for its whole life, and handed to every generation.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::Context;

/// One listening socket and how the app sees it.
#[derive(Debug)]
pub struct Socket {
    pub fd: OwnedFd,
    /// The `LISTEN_FDNAMES` entry.
    pub name: String,
    /// `host:port` as it appears in `SERVER_STARTER_PORT`.
    pub addr: String,
}

/// Take the sockets systemd passed to dewy (`LISTEN_FDS`), if any are there for this process.
pub fn inherited() -> anyhow::Result<Vec<Socket>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .unwrap_or_default()
        .split(':')
        .map(str::to_string)
        .collect();
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Vec::new();
    for i in 0..fds.len() {
        let Some(listener) = fds
            .take_tcp_listener(i)
            .with_context(|| format!("inherited socket {i} is not a TCP listener"))?
        else {
            continue;
        };
        let addr = listener
            .local_addr()
            .map(|a| starter_addr(&a))
            .unwrap_or_else(|_| format!("fd{i}"));
        let name = names
            .get(i)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| addr.clone());
        let fd = OwnedFd::from(listener);
        // Hooks and other children must not inherit it; each app generation gets its own copy.
        // SAFETY: fcntl on an fd we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error()).context("setting close-on-exec");
        }
        out.push(Socket { fd, name, addr });
    }
    Ok(out)
}

/// Bind each address (SO_REUSEADDR is set by the standard library on Unix; close-on-exec is on,
/// and only the copies made for a child in [`install`] lose it).
pub fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<Socket>> {
    addrs
        .iter()
        .map(|a| {
            let l = TcpListener::bind(a).with_context(|| format!("binding {a}"))?;
            Ok(Socket {
                fd: OwnedFd::from(l),
                name: super::fdstore::fd_name(&a.to_string()),
                addr: starter_addr(a),
            })
        })
        .collect()
}

/// How an address appears in `SERVER_STARTER_PORT`: a bare port for all IPv4 interfaces.
fn starter_addr(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => a.port().to_string(),
        _ => a.to_string(),
    }
}

/// `SERVER_STARTER_PORT`: `addr=fd;addr=fd` with fds from 3 in order.
pub fn server_starter_port(sockets: &[Socket]) -> String {
    sockets
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}={}", s.addr, 3 + i))
        .collect::<Vec<_>>()
        .join(";")
}

/// Most sockets one app may get (101 ports of a range, plus the health probe socket).
pub const MAX_SOCKETS: usize = 128;

/// Place `fds` at 3, 4, … without close-on-exec. Runs between fork and exec: only
/// async-signal-safe calls (fcntl, dup2) and no allocation. The fds are first copied above every
/// source and target so that no move overwrites a socket still to be moved.
pub fn install(fds: &[RawFd]) -> std::io::Result<()> {
    if fds.len() > MAX_SOCKETS {
        return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
    }
    let top = fds.iter().copied().max().unwrap_or(0).max(3 + fds.len() as RawFd);
    let mut temps: [RawFd; MAX_SOCKETS] = [-1; MAX_SOCKETS];
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: fcntl on an fd the deployer owns and keeps open across the fork.
        let t = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, top + 1) };
        if t < 0 {
            return Err(std::io::Error::last_os_error());
        }
        temps[i] = t;
    }
    for (i, t) in temps.iter().take(fds.len()).enumerate() {
        // SAFETY: dup2 onto the target number; the new fd has close-on-exec cleared.
        if unsafe { libc::dup2(*t, 3 + i as RawFd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The raw fds of `sockets`, in order.
pub fn raw(sockets: &[Socket]) -> Vec<RawFd> {
    sockets.iter().map(|s| s.fd.as_raw_fd()).collect()
}
