//! Thin, safe wrappers over the `*at` system calls dewy uses to write releases without ever
//! following a symlink: every call is relative to an already-open directory descriptor.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, RenameFlags};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

/// What a directory entry is, as seen by `fstatat(AT_SYMLINK_NOFOLLOW)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// Converts a single path component (or a symlink target) to a C string.
pub(crate) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name"))
}

/// Takes ownership of a descriptor a successful open returned.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens `path` (absolute or relative to the working directory) as a directory.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    Ok(owned(nix::fcntl::open(path, flags, Mode::empty())?))
}

/// Opens the directory `name` inside `dir`, refusing to follow a symlink (fails with `ELOOP`
/// or `ENOTDIR` when `name` is a symlink or not a directory).
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(owned(nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags,
        Mode::empty(),
    )?))
}

/// Creates a new regular file `name` in `dir` (mode 0600 until the caller sets the real mode).
/// `O_CREAT|O_EXCL` never follows a symlink: an existing name of any kind fails with `EEXIST`.
pub(crate) fn create_file_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<File> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mode = Mode::S_IRUSR | Mode::S_IWUSR;
    let fd = nix::fcntl::openat(Some(dir.as_raw_fd()), name, flags, mode)?;
    Ok(File::from(owned(fd)))
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(mode))?;
    Ok(())
}

/// `symlinkat(target, dir, name)`: creates a symlink; never follows anything.
pub(crate) fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), name)?;
    Ok(())
}

/// `linkat(old_dir, old, new_dir, new, 0)`: hard link without following a final symlink.
pub(crate) fn link_at(
    old_dir: BorrowedFd<'_>,
    old: &CStr,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
) -> io::Result<()> {
    nix::unistd::linkat(
        Some(old_dir.as_raw_fd()),
        old,
        Some(new_dir.as_raw_fd()),
        new,
        AtFlags::empty(),
    )?;
    Ok(())
}

/// Removes a non-directory `name` from `dir`.
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)?;
    Ok(())
}

/// The kind of `name` in `dir` without following symlinks; `None` when it does not exist.
pub(crate) fn kind_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Kind>> {
    let st: FileStat =
        match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
    let format = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    Ok(Some(if format == SFlag::S_IFDIR {
        Kind::Dir
    } else if format == SFlag::S_IFREG {
        Kind::File
    } else if format == SFlag::S_IFLNK {
        Kind::Symlink
    } else {
        Kind::Other
    }))
}

/// Reads the target of the symlink `name` in `dir`.
pub(crate) fn readlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    Ok(nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name)?.into_vec())
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing an existing `to`.
///
/// Uses `renameat2(RENAME_NOREPLACE)`; on filesystems without it, reserves `to` with an
/// exclusive `mkdir` and renames over that empty directory, which is equally race-free.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match nix::fcntl::renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS) => {
            std::fs::create_dir(to)?;
            std::fs::rename(from, to).inspect_err(|_| {
                let _ = std::fs::remove_dir(to);
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `syncfs(2)` on the filesystem holding `fd`.
pub(crate) fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::syncfs(fd.as_raw_fd())?;
    Ok(())
}

/// Lossy text of a byte path for error messages.
pub(crate) fn display(bytes: &[u8]) -> String {
    OsStr::from_bytes(bytes).to_string_lossy().into_owned()
}

/// Bytes an unprivileged writer may still use on the filesystem holding `fd` (`fstatvfs`).
pub(crate) fn free_bytes(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = nix::sys::statvfs::fstatvfs(fd)?;
    // The field types differ between targets; both are unsigned block counts and sizes.
    #[allow(clippy::unnecessary_cast)]
    let (avail, frsize) = (st.blocks_available() as u64, st.fragment_size() as u64);
    Ok(avail.saturating_mul(frsize))
}
