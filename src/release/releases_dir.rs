//! The releases directory: `<root>/releases/<UTC timestamp>` per deploy, staging
//! directories, and the atomically switched `<root>/current` symlink.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::sys;

const STAGING_PREFIX: &str = ".staging-";

/// Fsyncs a directory so that renames and creations inside it are durable.
pub fn fsync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

fn random_hex() -> String {
    format!("{:016x}", fastrand::u64(..))
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Sort key of a release name `<ts>` or `<ts>-<n>`: timestamp, then the numeric suffix.
fn sort_key(name: &str) -> (&str, u64) {
    if let Some((base, n)) = name.rsplit_once('-') {
        if let Ok(n) = n.parse() {
            return (base, n);
        }
    }
    (name, 0)
}

/// Where dewy keeps releases on disk.
#[derive(Debug, Clone)]
pub struct Releases {
    root: PathBuf,
}

impl Releases {
    /// `root` is made absolute (against the working directory) but not canonicalised.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Releases { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }

    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// Creates a fresh, empty `releases/.staging-<random hex>` directory.
    pub fn create_staging(&self) -> io::Result<PathBuf> {
        let dir = self.releases_dir();
        DirBuilder::new().recursive(true).mode(0o755).create(&dir)?;
        loop {
            let path = dir.join(format!("{STAGING_PREFIX}{}", random_hex()));
            match DirBuilder::new().mode(0o755).create(&path) {
                Ok(()) => return Ok(path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes every staging directory left behind (e.g. by a crash); returns how many.
    pub fn clean_staging(&self) -> io::Result<usize> {
        let entries = match fs::read_dir(self.releases_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            if !entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Renames `staging` to `releases/<UTC %Y%m%dT%H%M%SZ>` (or `<ts>-1`, `<ts>-2`, … when
    /// taken), never merging into an existing directory, and fsyncs `releases/`.
    pub fn commit_staging(&self, staging: &Path, now: DateTime<Utc>) -> io::Result<PathBuf> {
        let dir = self.releases_dir();
        let ts = now.format("%Y%m%dT%H%M%SZ").to_string();
        for n in 0..10_000u32 {
            let name = if n == 0 { ts.clone() } else { format!("{ts}-{n}") };
            let target = dir.join(name);
            match sys::rename_noreplace(staging, &target) {
                Ok(()) => {
                    fsync_dir(&dir)?;
                    return Ok(target);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("rename {} to {}: {e}", staging.display(), target.display()),
                    ))
                }
            }
        }
        Err(other(format!(
            "no free release name for {ts} in {}",
            dir.display()
        )))
    }

    /// The name of `release_dir` if it is a release directly under `releases/`.
    fn release_name(&self, release_dir: &Path) -> io::Result<String> {
        let abs = std::path::absolute(release_dir)?;
        let name = abs.file_name().map(|n| n.to_string_lossy().into_owned());
        match name {
            Some(name) if abs.parent() == Some(self.releases_dir().as_path()) && !name.starts_with('.') => {
                Ok(name)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a release directory under {}",
                    release_dir.display(),
                    self.releases_dir().display()
                ),
            )),
        }
    }

    /// Points `current` at `release_dir` atomically: a symlink with a temporary name and a
    /// relative target (`releases/<name>`) is renamed over `current`, then the root is
    /// fsynced. Readers see either the old or the new target, never a missing link.
    pub fn switch_current(&self, release_dir: &Path) -> io::Result<()> {
        let name = self.release_name(release_dir)?;
        let target_dir = self.releases_dir().join(&name);
        if !fs::symlink_metadata(&target_dir)?.is_dir() {
            return Err(other(format!("{} is not a directory", target_dir.display())));
        }
        let link = self.current_link();
        match fs::symlink_metadata(&link) {
            Ok(m) if !m.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a symlink; refusing to replace it",
                        link.display()
                    ),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let tmp = self.root.join(format!(".current.tmp-{}", random_hex()));
        std::os::unix::fs::symlink(Path::new("releases").join(&name), &tmp)?;
        if let Err(e) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fsync_dir(&self.root)
    }

    /// The release `current` points to (absolute), `None` when there is no link; an error
    /// when the link dangles or `current` is not a symlink.
    pub fn current(&self) -> io::Result<Option<PathBuf>> {
        let link = self.current_link();
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("read {}: {e}", link.display()))),
        };
        let path = self.root.join(target);
        match fs::metadata(&path) {
            Ok(_) => Ok(Some(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is dangling: {} does not exist",
                    link.display(),
                    path.display()
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// Name of current's target when it is a release (ignores a dangling link).
    fn current_name(&self) -> Option<String> {
        let target = fs::read_link(self.current_link()).ok()?;
        let path = self.root.join(target);
        self.release_name(&path).ok()
    }

    /// Committed release directories (no staging, nothing hidden), oldest first.
    pub fn list(&self) -> io::Result<Vec<PathBuf>> {
        let dir = self.releases_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type()?.is_dir() {
                names.push(name);
            }
        }
        names.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)).then_with(|| a.cmp(b)));
        Ok(names.into_iter().map(|n| dir.join(n)).collect())
    }

    /// Removes all but the `keep` newest releases (at least one is kept), never current's
    /// target nor anything in `protect`. Returns the removed directories.
    pub fn prune(&self, keep: usize, protect: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
        let keep = keep.max(1);
        let all = self.list()?;
        let mut protected: Vec<String> = protect.iter().filter_map(|p| self.release_name(p).ok()).collect();
        protected.extend(self.current_name());
        let excess = all.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for dir in all.into_iter().take(excess) {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| protected.contains(&n)) {
                continue;
            }
            fs::remove_dir_all(&dir)?;
            removed.push(dir);
        }
        if !removed.is_empty() {
            fsync_dir(&self.releases_dir())?;
        }
        Ok(removed)
    }

    /// Removes one release directory; refuses anything not directly under `releases/` and
    /// the release `current` points to.
    pub fn remove_release(&self, dir: &Path) -> io::Result<()> {
        let name = self.release_name(dir)?;
        if self.current_name().as_deref() == Some(name.as_str()) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is the current release; refusing to remove it", dir.display()),
            ));
        }
        let path = self.releases_dir().join(name);
        if !fs::symlink_metadata(&path)?.is_dir() {
            return Err(other(format!("{} is not a directory", path.display())));
        }
        fs::remove_dir_all(&path)
    }
}

#[cfg(test)]
#[path = "releases_dir_tests.rs"]
mod tests;
