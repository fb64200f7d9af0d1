//! Creating archive entries inside a release directory without ever leaving it: every
//! parent is opened component by component with `O_NOFOLLOW`, every leaf is created with
//! `*at` calls that do not follow symlinks, and the size and entry limits are enforced on
//! the bytes actually written.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::{File, FileTimes, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::extract::{ExtractError, ExtractStats, Limits};
use super::host_fault::is_out_of_space;
use super::paths::{check_symlink_target, parse_entry_path, Components};
use super::sys::{self, Kind};

/// Size of the copy buffer for file data.
const WRITE_BUF: usize = 256 * 1024;
/// Memory (estimated) that directory metadata waiting for the end of the archive may take;
/// beyond it, metadata is applied when the directory entry is met, so that an archive of
/// very many directories cannot grow memory without bound.
const MAX_DEFERRED_BYTES: usize = 12 << 20;
/// Estimated memory of one deferred directory (map slot, metadata, component list) and of
/// each path component (an allocation of its own), besides the name bytes.
const DEFERRED_ENTRY_COST: usize = 160;
const DEFERRED_COMPONENT_COST: usize = 48;

/// Permission bits and modification time of an entry; set-id and sticky bits are dropped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) mode: u32,
    pub(crate) mtime: Option<u64>,
}

/// Writes entries into one release directory.
pub(crate) struct Writer {
    root: OwnedFd,
    /// The destination, for messages.
    dest: String,
    /// Free space there before the first entry, for out-of-space messages.
    free_before: Option<u64>,
    /// Open real directories from the root down to the last parent used.
    stack: Vec<(CString, OwnedFd)>,
    limits: Limits,
    format: &'static str,
    stats: ExtractStats,
    entries: u64,
    /// Regular files written (an archive without any is refused).
    regular: u64,
    buf: Vec<u8>,
    /// Directory metadata, applied at the end so read-only directories can still be filled.
    dirs: HashMap<Components, Meta>,
    /// Path bytes held in `dirs`.
    deferred_bytes: usize,
}

fn join(comps: &[CString]) -> String {
    let parts: Vec<_> = comps.iter().map(|c| c.to_string_lossy()).collect();
    parts.join("/")
}

fn split(comps: &[CString]) -> Option<(&[CString], &CStr)> {
    comps.split_last().map(|(name, parent)| (parent, name.as_c_str()))
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn apply_meta(file: &File, meta: Meta) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(meta.mode & 0o777))?;
    if let Some(secs) = meta.mtime {
        let t = UNIX_EPOCH + Duration::from_secs(secs.min(i64::MAX as u64 / 2));
        file.set_times(FileTimes::new().set_modified(t))?;
    }
    Ok(())
}

impl Writer {
    pub(crate) fn new(dest: &Path, limits: &Limits, format: &'static str) -> Result<Self, ExtractError> {
        let root = sys::open_dir(dest)
            .map_err(|e| ExtractError::io("open destination", dest.display().to_string(), e))?;
        let free_before = sys::free_bytes(root.as_fd()).ok();
        Ok(Writer {
            root,
            dest: dest.display().to_string(),
            free_before,
            stack: Vec::new(),
            limits: *limits,
            format,
            stats: ExtractStats::default(),
            entries: 0,
            regular: 0,
            buf: vec![0; WRITE_BUF],
            dirs: HashMap::new(),
            deferred_bytes: 0,
        })
    }

    pub(crate) fn format(&self) -> &'static str {
        self.format
    }

    /// The entry limit, for formats that declare their entry count up front.
    pub(crate) fn max_entries(&self) -> u64 {
        self.limits.max_entries
    }

    /// Counts one archive entry against the entry limit.
    pub(crate) fn count_entry(&mut self) -> Result<(), ExtractError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Refuses early an entry whose declared size alone would pass the size limit.
    fn check_declared(&self, entry: &str, size: u64) -> Result<(), ExtractError> {
        if self.stats.bytes.saturating_add(size) > self.limits.max_total_bytes {
            return Err(self.too_large(entry));
        }
        Ok(())
    }

    fn too_large(&self, entry: &str) -> ExtractError {
        ExtractError::TooLarge {
            entry: entry.to_owned(),
            limit: self.limits.max_total_bytes,
        }
    }

    fn top(&self) -> BorrowedFd<'_> {
        self.stack.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd())
    }

    /// Makes the stack hold exactly the directories `parent`, creating missing ones when
    /// `create`. Returns false if a component is missing and `create` is off.
    fn walk(&mut self, entry: &str, parent: &[CString], create: bool) -> Result<bool, ExtractError> {
        let common = self
            .stack
            .iter()
            .zip(parent)
            .take_while(|((have, _), want)| have == *want)
            .count();
        self.stack.truncate(common);
        for (i, name) in parent.iter().enumerate().skip(common) {
            let base = self.top();
            let fd = match sys::open_dir_at(base, name) {
                Ok(fd) => fd,
                Err(e) if errno(&e) == libc::ENOENT && create => {
                    match sys::mkdir_at(base, name, 0o755) {
                        Ok(()) => {}
                        Err(e) if errno(&e) == libc::EEXIST => {}
                        Err(e) => return Err(ExtractError::io("create directory", join(&parent[..=i]), e)),
                    }
                    sys::open_dir_at(base, name)
                        .map_err(|e| ExtractError::io("open directory", join(&parent[..=i]), e))?
                }
                Err(e) if errno(&e) == libc::ENOENT => return Ok(false),
                Err(e) if matches!(errno(&e), libc::ELOOP | libc::ENOTDIR) => {
                    let via = join(&parent[..=i]);
                    return Err(match sys::kind_at(base, name) {
                        Ok(Some(Kind::Symlink)) => ExtractError::ThroughSymlink {
                            entry: entry.to_owned(),
                            via,
                        },
                        _ => ExtractError::Conflict {
                            entry: entry.to_owned(),
                            reason: format!("parent {via:?} is not a directory"),
                        },
                    });
                }
                Err(e) => return Err(ExtractError::io("open directory", join(&parent[..=i]), e)),
            };
            self.stack.push((name.clone(), fd));
        }
        Ok(true)
    }

    /// Removes an existing non-directory `name` from the current parent so a later entry
    /// of the same name replaces it (as tar does); refuses to replace a directory.
    fn make_room(&self, entry: &str, name: &CStr) -> Result<(), ExtractError> {
        let dir = self.top();
        match sys::kind_at(dir, name) {
            Ok(Some(Kind::Dir)) => Err(ExtractError::Conflict {
                entry: entry.to_owned(),
                reason: "an earlier entry created a directory with this name".into(),
            }),
            Ok(Some(_)) => sys::unlink_at(dir, name).map_err(|e| ExtractError::io("replace", entry, e)),
            Ok(None) => Ok(()),
            Err(e) => Err(ExtractError::io("inspect", entry, e)),
        }
    }

    /// Runs `op` in the current parent; on `EEXIST` clears the name and tries once more.
    fn create_leaf<T>(
        &self,
        entry: &str,
        name: &CStr,
        action: &'static str,
        op: impl Fn(BorrowedFd<'_>) -> io::Result<T>,
    ) -> Result<T, ExtractError> {
        match op(self.top()) {
            Ok(v) => Ok(v),
            Err(e) if errno(&e) == libc::EEXIST => {
                self.make_room(entry, name)?;
                op(self.top()).map_err(|e| ExtractError::io(action, entry, e))
            }
            Err(e) => Err(ExtractError::io(action, entry, e)),
        }
    }

    fn leaf<'c>(
        &mut self,
        entry: &str,
        comps: &'c [CString],
        what: &'static str,
    ) -> Result<&'c CStr, ExtractError> {
        let Some((parent, name)) = split(comps) else {
            return Err(ExtractError::UnsafePath {
                entry: entry.to_owned(),
                reason: what,
            });
        };
        self.walk(entry, parent, true)?;
        Ok(name)
    }

    /// A directory entry. The release root itself (`./`) is accepted and left alone.
    pub(crate) fn dir(&mut self, entry: &str, comps: Components, meta: Meta) -> Result<(), ExtractError> {
        let Some((parent, name)) = split(&comps) else {
            return Ok(());
        };
        self.walk(entry, parent, true)?;
        let dir = self.top();
        match sys::mkdir_at(dir, name, 0o755) {
            Ok(()) => {}
            Err(e) if errno(&e) == libc::EEXIST => {
                if sys::kind_at(dir, name).map_err(|e| ExtractError::io("inspect", entry, e))?
                    != Some(Kind::Dir)
                {
                    self.make_room(entry, name)?;
                    sys::mkdir_at(self.top(), name, 0o755)
                        .map_err(|e| ExtractError::io("create directory", entry, e))?;
                }
            }
            Err(e) => return Err(ExtractError::io("create directory", entry, e)),
        }
        self.stats.dirs += 1;
        let path_bytes: usize = DEFERRED_ENTRY_COST
            + comps
                .iter()
                .map(|c| c.as_bytes().len() + 1 + DEFERRED_COMPONENT_COST)
                .sum::<usize>();
        if self.dirs.contains_key(&comps) || self.deferred_bytes + path_bytes <= MAX_DEFERRED_BYTES {
            if self.dirs.insert(comps, meta).is_none() {
                self.deferred_bytes += path_bytes;
            }
        } else {
            let fd = sys::open_dir_at(self.top(), name)
                .map_err(|e| ExtractError::io("open directory", entry, e))?;
            apply_meta(&File::from(fd), meta).map_err(|e| ExtractError::io("set metadata of", entry, e))?;
        }
        Ok(())
    }

    /// A regular file whose content is read from `data` and counted against the size limit;
    /// refused at once when its `declared` size alone would pass the limit.
    pub(crate) fn file(
        &mut self,
        entry: &str,
        comps: &[CString],
        meta: Meta,
        declared: u64,
        data: &mut dyn Read,
    ) -> Result<(), ExtractError> {
        self.check_declared(entry, declared)?;
        let name = self.leaf(entry, comps, "a file entry cannot be the release root")?;
        let mut file = self.create_leaf(entry, name, "create file", |d| sys::create_file_at(d, name))?;
        let before = self.stats.bytes;
        loop {
            let mut filled = 0;
            while filled < self.buf.len() {
                match data.read(&mut self.buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ExtractError::corrupt(self.format, Some(entry), e)),
                }
            }
            if filled == 0 {
                break;
            }
            let total = self.stats.bytes + filled as u64;
            if total > self.limits.max_total_bytes {
                return Err(self.too_large(entry));
            }
            if let Err(e) = file.write_all(&self.buf[..filled]) {
                return Err(self.write_failed(entry, &file, before + declared, e));
            }
            self.stats.bytes = total;
            if filled < self.buf.len() {
                break;
            }
        }
        apply_meta(&file, meta).map_err(|e| ExtractError::io("set metadata of", entry, e))?;
        self.stats.files += 1;
        self.regular += 1;
        Ok(())
    }

    /// The error for a failed write: out of space names how much the release needs
    /// (`needed`, from the declared sizes, at least what was written) and how much is free.
    fn write_failed(&self, entry: &str, file: &File, needed: u64, e: io::Error) -> ExtractError {
        if !is_out_of_space(&e) {
            return ExtractError::io("write", entry, e);
        }
        let written = self.stats.bytes + file.metadata().map(|m| m.len()).unwrap_or(0);
        ExtractError::NoSpace {
            entry: entry.to_owned(),
            dest: self.dest.clone(),
            needed: needed.max(written),
            written,
            free_before: self.free_before,
            source: e,
        }
    }

    /// A symlink; its target must be relative and stay inside the release.
    pub(crate) fn symlink(
        &mut self,
        entry: &str,
        comps: &[CString],
        target: &[u8],
    ) -> Result<(), ExtractError> {
        let parent = split(comps).map_or(&[][..], |(p, _)| p);
        let checked = check_symlink_target(parent, target).map_err(|reason| ExtractError::UnsafeSymlink {
            entry: entry.to_owned(),
            target: sys::display(target),
            reason,
        })?;
        let name = self.leaf(entry, comps, "a symlink cannot be the release root")?;
        let target = sys::cstring(&checked).map_err(|e| ExtractError::io("create symlink", entry, e))?;
        self.create_leaf(entry, name, "create symlink", |d| {
            sys::symlink_at(&target, d, name)
        })?;
        self.stats.files += 1;
        Ok(())
    }

    /// A hard link; allowed only to a file (or symlink) already extracted into the release.
    pub(crate) fn hardlink(
        &mut self,
        entry: &str,
        comps: &[CString],
        target_raw: &[u8],
    ) -> Result<(), ExtractError> {
        let refuse = |reason: String| ExtractError::UnsafeHardlink {
            entry: entry.to_owned(),
            target: sys::display(target_raw),
            reason,
        };
        let tcomps =
            parse_entry_path(target_raw).map_err(|r| refuse(format!("invalid target path ({r})")))?;
        let Some((tparent, tname)) = split(&tcomps) else {
            return Err(refuse("target is the release root".into()));
        };
        if tcomps == comps {
            return Ok(());
        }
        let missing = || refuse("target was not extracted earlier from this archive".into());
        if !self.walk(entry, tparent, false)? {
            return Err(missing());
        }
        let tdir = self
            .top()
            .try_clone_to_owned()
            .map_err(|e| ExtractError::io("open directory", join(tparent), e))?;
        match sys::kind_at(tdir.as_fd(), tname).map_err(|e| ExtractError::io("inspect", join(&tcomps), e))? {
            None => return Err(missing()),
            Some(Kind::File) => {}
            Some(Kind::Symlink) => {
                let t = sys::readlink_at(tdir.as_fd(), tname)
                    .map_err(|e| ExtractError::io("read symlink", join(&tcomps), e))?;
                return self.symlink(entry, comps, &t);
            }
            Some(_) => return Err(refuse("target is not a regular file".into())),
        }
        let name = self.leaf(entry, comps, "a hard link cannot be the release root")?;
        self.create_leaf(entry, name, "create hard link", |d| {
            sys::link_at(tdir.as_fd(), tname, d, name)
        })?;
        self.stats.files += 1;
        Ok(())
    }

    /// Applies deferred directory metadata (deepest first) and returns the totals; an
    /// archive that produced no regular file is refused.
    pub(crate) fn finish(mut self) -> Result<ExtractStats, ExtractError> {
        if self.regular == 0 {
            return Err(ExtractError::Empty { format: self.format });
        }
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(comps, _)| std::cmp::Reverse(comps.len()));
        for (comps, meta) in dirs {
            let entry = join(&comps);
            let Some((parent, name)) = split(&comps) else {
                continue;
            };
            if !self.walk(&entry, parent, false)? {
                continue;
            }
            let fd = sys::open_dir_at(self.top(), name)
                .map_err(|e| ExtractError::io("open directory", entry.as_str(), e))?;
            apply_meta(&File::from(fd), meta).map_err(|e| ExtractError::io("set metadata of", entry, e))?;
        }
        Ok(self.stats)
    }
}
