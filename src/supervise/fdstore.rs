//! Pushing the listening sockets into systemd's fd store (`FDSTORE=1`, `FDNAME=`), so a restart
//! of the deployer gets them back as `LISTEN_FDS` and the port never closes. Needs
//! `FileDescriptorStoreMax=` in the service unit; without a `NOTIFY_SOCKET` it does nothing.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram};

use super::sockets::Socket;

/// A valid `FDNAME`: printable ASCII without `:`, at most 255 bytes.
pub fn fd_name(raw: &str) -> String {
    raw.chars()
        .map(|c| if c.is_ascii_graphic() && c != ':' { c } else { '_' })
        .take(255)
        .collect()
}

/// Push every socket to the fd store of the service manager named by `NOTIFY_SOCKET`.
/// Returns false when there is none.
pub fn push(sockets: &[Socket]) -> io::Result<bool> {
    match std::env::var("NOTIFY_SOCKET") {
        Ok(path) if !path.is_empty() && !sockets.is_empty() => push_to(&path, sockets).map(|_| true),
        _ => Ok(false),
    }
}

/// Send one `FDSTORE=1` message per socket, with the fd attached (SCM_RIGHTS).
pub fn push_to(notify_socket: &str, sockets: &[Socket]) -> io::Result<()> {
    let sock = connect(notify_socket)?;
    for s in sockets {
        let msg = format!("FDSTORE=1\nFDNAME={}\n", fd_name(&s.name));
        send_fd(sock.as_raw_fd(), msg.as_bytes(), s.fd.as_raw_fd())?;
    }
    Ok(())
}

/// Drop the stored fds named `name` (`FDSTOREREMOVE=1`), so a later restart does not get them.
pub fn remove(name: &str) -> io::Result<()> {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return Ok(());
    };
    if path.is_empty() {
        return Ok(());
    }
    connect(&path)?.send(format!("FDSTOREREMOVE=1\nFDNAME={}\n", fd_name(name)).as_bytes())?;
    Ok(())
}

/// A datagram socket connected to `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
fn connect(notify_socket: &str) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    match notify_socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            sock.connect_addr(&UnixSocketAddr::from_abstract_name(name.as_bytes())?)?
        }
        None => sock.connect(notify_socket)?,
    }
    Ok(sock)
}

/// Send `data` with `fd` attached (`SCM_RIGHTS`), as `sd_pid_notify_with_fds` does.
fn send_fd(sock: RawFd, data: &[u8], fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let fds = [fd];
    let sent = sendmsg::<UnixAddr>(
        sock,
        &[io::IoSlice::new(data)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)?;
    if sent != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to NOTIFY_SOCKET",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    #[test]
    fn pushes_each_socket_with_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sockets = [Socket {
            fd: OwnedFd::from(l),
            name: format!("127.0.0.1:{port}"),
            addr: format!("127.0.0.1:{port}"),
            local: None,
        }];
        push_to(path.to_str().unwrap(), &sockets).unwrap();
        let mut data = [0u8; 256];
        let mut iov = [io::IoSliceMut::new(&mut data)];
        let mut cbuf = nix::cmsg_space!([RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            rx.as_raw_fd(),
            &mut iov,
            Some(&mut cbuf),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let fd = match msg.cmsgs().unwrap().next() {
            Some(nix::sys::socket::ControlMessageOwned::ScmRights(fds)) => fds[0],
            other => panic!("no SCM_RIGHTS: {other:?}"),
        };
        let n = msg.bytes;
        let text = String::from_utf8_lossy(&data[..n]).into_owned();
        assert_eq!(text, format!("FDSTORE=1\nFDNAME=127.0.0.1_{port}\n"));
        let got = unsafe { <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        assert_eq!(got.local_addr().unwrap().port(), port);
    }
}
