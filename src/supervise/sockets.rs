//! The app's listening sockets: inherited from dewy's own socket activation (`LISTEN_FDS`) or
//! bound here, kept open by the deployer for its whole life, and handed to every generation.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// One listening socket and how the app sees it.
#[derive(Debug)]
pub struct Socket {
    pub fd: OwnedFd,
    /// The `LISTEN_FDNAMES` entry.
    pub name: String,
    /// `host:port` as it appears in `SERVER_STARTER_PORT`.
    pub addr: String,
    /// The address it listens on, when the kernel tells.
    pub local: Option<SocketAddr>,
}

/// True when a socket listening on `got` serves the configured address `want`: the same
/// address, or both on all interfaces of either family (`ListenStream=8080` of a socket unit is
/// `[::]:8080`, the port `8080` in a config is `0.0.0.0:8080`). A socket on one interface never
/// stands for all of them, nor the other way round.
pub fn same_listen(want: SocketAddr, got: SocketAddr) -> bool {
    want == got || (want.port() == got.port() && want.ip().is_unspecified() && got.ip().is_unspecified())
}

impl Socket {
    /// True when this socket serves the configured address `want` ([`same_listen`]).
    pub fn serves(&self, want: &SocketAddr) -> bool {
        self.local.is_some_and(|l| same_listen(*want, l))
    }

    /// True when dewy itself bound this socket and pushed it to the fd store: its name is the
    /// `FDNAME` dewy gives its own sockets. A socket unit's sockets are named after the unit.
    pub fn from_own_store(&self) -> bool {
        self.local
            .is_some_and(|l| self.name == super::fdstore::fd_name(&l.to_string()))
    }
}

/// The sockets the app gets, from what systemd passed and the configured addresses.
#[derive(Debug, Default)]
pub struct Plan {
    /// Inherited sockets the app keeps.
    pub keep: Vec<Socket>,
    /// Configured addresses no inherited socket serves: dewy binds them.
    pub bind: Vec<SocketAddr>,
    /// Sockets dewy once stored for an address no longer configured: removed from the store.
    pub stale: Vec<Socket>,
}

/// Match inherited sockets to the configured addresses. With no address configured the
/// inherited sockets are the app's ports as they are (a socket unit decides them). Otherwise each
/// configured address is served by an inherited socket that [`Socket::serves`] it or bound anew;
/// inherited sockets of a socket unit are kept even when not configured (the unit asked for them),
/// while those dewy stored itself for an address dropped from the config are stale.
pub fn plan(inherited: Vec<Socket>, wanted: &[SocketAddr]) -> Plan {
    let mut plan = Plan::default();
    for s in inherited {
        if wanted.is_empty() || wanted.iter().any(|w| s.serves(w)) || !s.from_own_store() {
            plan.keep.push(s);
        } else {
            plan.stale.push(s);
        }
    }
    plan.bind = wanted
        .iter()
        .filter(|w| !plan.keep.iter().any(|s| s.serves(w)))
        .copied()
        .collect();
    plan
}

/// Put sockets in a stable order (port, then address; unknown addresses last), which fixes the
/// app's fd numbers whatever order systemd passed them in.
pub fn sort(sockets: &mut [Socket]) {
    sockets.sort_by_key(|s| {
        s.local
            .map(|l| (0, l.port(), l.ip()))
            .unwrap_or((1, 0, std::net::Ipv4Addr::UNSPECIFIED.into()))
    });
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
        let local = listener.local_addr().ok();
        let addr = local
            .map(|a| starter_addr(&a))
            .unwrap_or_else(|| format!("fd{i}"));
        let name = names
            .get(i)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| addr.clone());
        let fd = OwnedFd::from(listener);
        // Hooks and other children must not inherit it; each app generation gets its own copy.
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).context("setting close-on-exec")?;
        out.push(Socket {
            fd,
            name,
            addr,
            local,
        });
    }
    Ok(out)
}

/// A listening socket on `addr` with the kernel's largest accept queue (`SOMAXCONN`, capped by
/// `net.core.somaxconn`), as nginx and HAProxy ask for: std's 128 overflows when a burst of
/// clients (or an attack holding many connections) connects at once, and every dropped SYN costs
/// the client a one-second retransmission.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    // listen() again on a listening socket only changes its backlog.
    nix::sys::socket::listen(&l, nix::sys::socket::Backlog::MAXCONN).map_err(std::io::Error::from)?;
    Ok(l)
}

/// Bind each address (SO_REUSEADDR is set by the standard library on Unix; close-on-exec is on,
/// and only the copies made for a child in [`install`] lose it).
pub fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<Socket>> {
    addrs
        .iter()
        .map(|a| {
            let l = listen(*a).with_context(|| format!("binding {a}"))?;
            Ok(Socket {
                fd: OwnedFd::from(l),
                name: super::fdstore::fd_name(&a.to_string()),
                addr: starter_addr(a),
                local: Some(*a),
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
        return Err(Errno::EMFILE.into());
    }
    let top = fds.iter().copied().max().unwrap_or(0).max(3 + fds.len() as RawFd);
    let mut temps: [RawFd; MAX_SOCKETS] = [-1; MAX_SOCKETS];
    for (i, fd) in fds.iter().enumerate() {
        temps[i] = fcntl(*fd, FcntlArg::F_DUPFD_CLOEXEC(top + 1))?;
    }
    for (i, t) in temps.iter().take(fds.len()).enumerate() {
        // dup2 leaves close-on-exec cleared on the new fd.
        nix::unistd::dup2(*t, 3 + i as RawFd)?;
    }
    Ok(())
}

/// The raw fds of `sockets`, in order.
pub fn raw(sockets: &[Socket]) -> Vec<RawFd> {
    sockets.iter().map(|s| s.fd.as_raw_fd()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_queue_holds_a_burst_of_300_connections() {
        // std's backlog of 128 would make the 130th connect wait for a SYN retransmission.
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let clients: Vec<std::net::TcpStream> = (0..300)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("connection {i} not queued: {e}"))
            })
            .collect();
        assert_eq!(clients.len(), 300);
    }

    fn sock(addr: &str, name: &str) -> Socket {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        Socket {
            fd: OwnedFd::from(l),
            name: name.to_string(),
            addr: addr.to_string(),
            local: Some(addr.parse().unwrap()),
        }
    }

    fn addrs(v: &[&str]) -> Vec<SocketAddr> {
        v.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn socket_unit_sockets_serve_configured_ports_by_address() {
        let unit = || {
            vec![
                sock("[::]:8080", "dewy@web.socket"),
                sock("127.0.0.1:9090", "dewy@web.socket"),
            ]
        };
        // No ports configured: the socket unit decides.
        let p = plan(unit(), &[]);
        assert_eq!(p.keep.len(), 2);
        assert!(p.bind.is_empty() && p.stale.is_empty());
        // 8080 is served by [::]:8080; 8081 is not served by anything and is bound; 9090 of the
        // unit is kept although not configured.
        let p = plan(unit(), &addrs(&["0.0.0.0:8080", "0.0.0.0:8081"]));
        assert_eq!(p.keep.len(), 2);
        assert_eq!(p.bind, addrs(&["0.0.0.0:8081"]));
        // A specific address is not served by another specific address on the same port.
        let p = plan(unit(), &addrs(&["127.0.0.2:9090"]));
        assert_eq!(p.bind, addrs(&["127.0.0.2:9090"]));
    }

    #[test]
    fn own_stored_sockets_are_reused_or_stale() {
        let own = || {
            vec![
                sock("127.0.0.1:8080", "127.0.0.1_8080"),
                sock("127.0.0.1:8081", "127.0.0.1_8081"),
            ]
        };
        let p = plan(own(), &addrs(&["127.0.0.1:8080"]));
        assert_eq!(p.keep.len(), 1);
        assert_eq!(p.keep[0].name, "127.0.0.1_8080");
        assert!(p.bind.is_empty());
        assert_eq!(p.stale.len(), 1);
        assert_eq!(p.stale[0].name, "127.0.0.1_8081");
    }

    #[test]
    fn one_interface_never_stands_for_all() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(same_listen(a("0.0.0.0:80"), a("[::]:80")));
        assert!(same_listen(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(!same_listen(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(!same_listen(a("127.0.0.1:80"), a("[::]:80")));
        assert!(!same_listen(a("0.0.0.0:80"), a("0.0.0.0:81")));
    }

    #[test]
    fn sorted_by_port_then_address() {
        let mut v = vec![
            sock("127.0.0.1:9000", "a"),
            sock("[::]:80", "b"),
            sock("0.0.0.0:9000", "c"),
        ];
        sort(&mut v);
        let names: Vec<_> = v.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
    }
}
