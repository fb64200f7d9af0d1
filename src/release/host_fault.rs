//! Telling a fault of the host from a fault of the release: a full disk, an exceeded quota,
//! an I/O error or a read-only filesystem says nothing about the artifact being written or
//! read, so a deploy that failed so is retried rather than marking the version bad.

use std::io;
use std::path::Path;

/// The `errno` values that are the host's fault.
const HOST_ERRNOS: [i32; 4] = [libc::ENOSPC, libc::EDQUOT, libc::EIO, libc::EROFS];

/// The first I/O error in `err`'s chain (looking inside I/O errors that wrap another) that
/// is a host fault: disk full, quota exceeded, I/O error, read-only filesystem.
pub fn host_fault(err: &anyhow::Error) -> Option<&io::Error> {
    err.chain()
        .find_map(|e| e.downcast_ref::<io::Error>().and_then(host_io))
}

fn host_io(e: &io::Error) -> Option<&io::Error> {
    let by_errno = e.raw_os_error().is_some_and(|n| HOST_ERRNOS.contains(&n));
    let by_kind = matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::ReadOnlyFilesystem
    );
    if by_errno || by_kind {
        return Some(e);
    }
    // `io::Error::source` skips the error it wraps and goes to that one's source.
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<io::Error>())
        .and_then(host_io)
}

/// Bytes an unprivileged writer may still use on the filesystem holding `path` (a
/// directory), `None` when `statvfs` fails.
pub fn free_space(path: &Path) -> Option<u64> {
    let fd = super::sys::open_dir(path).ok()?;
    super::sys::free_bytes(std::os::fd::AsFd::as_fd(&fd)).ok()
}

/// Whether `e` says the filesystem is out of space or quota.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(n: i32) -> anyhow::Error {
        anyhow::Error::new(io::Error::from_raw_os_error(n))
    }

    #[test]
    fn host_errnos_found_anywhere_in_the_chain() {
        for n in HOST_ERRNOS {
            let e = os(n).context("writing x").context("extracting y");
            assert!(host_fault(&e).is_some(), "errno {n}");
        }
        let wrapped = io::Error::other(io::Error::from_raw_os_error(libc::EIO));
        assert!(host_fault(&anyhow::Error::new(wrapped).context("reading")).is_some());
        let extract = crate::release::ExtractError::Io {
            action: "write",
            path: "bin/app".into(),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert!(host_fault(&anyhow::Error::new(extract).context("extracting")).is_some());
    }

    #[test]
    fn release_faults_are_not_host_faults() {
        for e in [
            os(libc::EACCES),
            os(libc::ENOENT),
            anyhow::Error::new(io::Error::new(
                io::ErrorKind::InvalidData,
                "corrupt deflate stream",
            )),
            anyhow::anyhow!("checksum mismatch"),
        ] {
            assert!(host_fault(&e).is_none(), "{e:#}");
        }
    }
}
