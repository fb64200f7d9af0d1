//! Artifact cache: a directory of downloaded artifacts, one file per `tag--artifact` key,
//! written atomically (temp file, fsync, rename) and verified by SHA-256 as they stream in.

pub mod shared;
mod store;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use store::{StoreError, StoreOptions, Stored};

/// A temp file untouched for this long is left over from a crash even if its owner PID runs.
const STALE_PART_AGE: Duration = Duration::from_secs(3600);

/// Why a cache key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache key {key:?}: {reason}")]
pub struct InvalidKey {
    pub key: String,
    pub reason: &'static str,
}

/// The artifact cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Open (creating it 0755 if needed) a cache directory and remove temp files that crashed
    /// downloads left behind.
    pub fn open(dir: &Path) -> io::Result<Cache> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("creating cache directory {}: {e}", dir.display()),
                )
            })?;
        let cache = Cache {
            dir: dir.to_path_buf(),
        };
        cache.remove_stale_parts()?;
        Ok(cache)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `key` lives (whether or not it exists).
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Whether a complete entry exists for `key`.
    pub fn contains(&self, key: &str) -> bool {
        Self::validate_key(key).is_ok() && self.path(key).is_file()
    }

    /// A key must be one file name: non-empty, at most 255 bytes, no `/` or NUL, no leading `.`.
    pub fn validate_key(key: &str) -> Result<(), InvalidKey> {
        let reason = if key.is_empty() {
            Some("empty")
        } else if key.len() > 255 {
            Some("longer than 255 bytes")
        } else if key.contains('/') || key.contains('\0') {
            Some("contains '/' or NUL")
        } else if key.starts_with('.') {
            Some("starts with '.'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidKey {
                key: key.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Remove an entry; a missing entry is not an error.
    pub fn remove(&self, key: &str) -> io::Result<()> {
        Self::validate_key(key).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Keep the cache bounded: every key in `keep_keys` stays, and other entries are kept,
    /// newest first (by modification time), until `keep` entries remain in total. Stale temp
    /// files are removed too. Returns the removed keys.
    pub fn prune(&self, keep_keys: &[String], keep: usize) -> io::Result<Vec<String>> {
        self.remove_stale_parts()?;
        let mut others: Vec<(SystemTime, String)> = Vec::new();
        let mut kept = 0usize;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let meta = entry.metadata()?;
            if name.starts_with('.') || !meta.is_file() {
                continue;
            }
            if keep_keys.contains(&name) {
                kept += 1;
            } else {
                others.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), name));
            }
        }
        others.sort_by(|a, b| b.cmp(a));
        let room = keep.saturating_sub(kept);
        let mut removed = Vec::new();
        for (_, name) in others.into_iter().skip(room) {
            match fs::remove_file(self.dir.join(&name)) {
                Ok(()) => removed.push(name),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Remove `.…part` files whose writer is gone: the PID in the name no longer runs, the
    /// name carries no PID, or the file has not changed for an hour.
    fn remove_stale_parts(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !store::is_temp_name(&name) {
                continue;
            }
            let alive = store::temp_owner(&name).is_some_and(pid_running);
            let recent = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < STALE_PART_AGE);
            if alive && recent {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => tracing::debug!(file = %name, "Removed stale download"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn pid_running(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// SHA-256 (lower-case hex) of a file, read in 256 KiB blocks.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        assert!(Cache::validate_key("v1.2.3--app_linux_amd64.tar.gz").is_ok());
        for bad in ["", ".", "..", ".hidden", "a/b", "../x"] {
            assert!(Cache::validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(Cache::validate_key(&"a".repeat(255)).is_ok());
        assert!(Cache::validate_key(&"a".repeat(256)).is_err());
    }

    #[test]
    fn prune_keeps_listed_and_newest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let cache = Cache::open(tmp.path()).expect("open");
        let base = SystemTime::now() - Duration::from_secs(1000);
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            let path = cache.path(key);
            fs::write(&path, key).expect("write");
            let file = fs::File::options().write(true).open(&path).expect("open");
            file.set_modified(base + Duration::from_secs(i as u64 * 10))
                .expect("mtime");
        }
        let removed = cache.prune(&["a".to_string()], 2).expect("prune");
        let mut removed = removed;
        removed.sort();
        assert_eq!(removed, vec!["b".to_string(), "c".to_string()]);
        assert!(cache.contains("a") && cache.contains("d"));
        assert!(cache.prune(&[], 0).expect("prune").len() == 2);
    }

    #[test]
    fn sha256_of_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("f");
        fs::write(&path, b"abc").expect("write");
        assert_eq!(
            sha256_file(&path).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
