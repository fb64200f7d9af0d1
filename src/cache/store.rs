//! Streaming a download into the cache: temp file, SHA-256 while writing, size cap, fsync,
//! checksum check, atomic rename. Nothing appears under the key unless all of it succeeded.

use std::io;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::{Cache, InvalidKey};
use crate::registry::ByteStream;
use crate::release::host_fault::{free_space, is_out_of_space};

/// Write buffer of a download.
const WRITE_BUFFER: usize = 256 * 1024;
/// Longest key prefix kept in a temp file name (the rest is PID and random suffix).
const TEMP_KEY_PREFIX: usize = 200;

/// How to store a download.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Published SHA-256 (hex, any case); a different digest rejects the download.
    pub expected_sha256: Option<String>,
    /// Abort once more than this many bytes arrive.
    pub max_bytes: Option<u64>,
}

/// A complete cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub path: PathBuf,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    pub size: u64,
}

/// Why a download was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    #[error("artifact is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("checksum mismatch: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("download interrupted after {received} bytes: {error}")]
    Download { received: u64, error: io::Error },
    #[error("{context}: {error}")]
    Io { context: String, error: io::Error },
}

fn io_err(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> StoreError {
    move |error| StoreError::Io {
        context: context(),
        error,
    }
}

/// `.<key prefix>.<pid>-<random>.part`
fn temp_name(key: &str) -> String {
    let mut end = key.len().min(TEMP_KEY_PREFIX);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        ".{}.{}-{:016x}.part",
        &key[..end],
        std::process::id(),
        fastrand::u64(..)
    )
}

/// Whether a directory entry is a download in progress (or left over).
pub(super) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".part")
}

/// The PID recorded in a temp file name, if any.
pub(super) fn temp_owner(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".part")?;
    let (_, tail) = stem.rsplit_once('.')?;
    let (pid, _) = tail.split_once('-')?;
    pid.parse().ok()
}

/// Removes the temp file unless disarmed: on errors, and when the download is dropped.
struct TempGuard {
    path: Option<PathBuf>,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

impl Cache {
    /// A failed write of the download `tmp`; out of space says how much is needed (what
    /// arrived so far, a lower bound of the artifact's size) and how much is free.
    fn write_error(
        &self,
        tmp: &Path,
        received: u64,
        free_before: Option<u64>,
        error: io::Error,
    ) -> StoreError {
        let context = if is_out_of_space(&error) {
            let free = free_before.map_or_else(|| "an unknown number of".to_string(), |n| n.to_string());
            format!(
                "writing {}: out of disk space; the artifact needs at least {received} bytes (received so far), {free} bytes were free in {} when the download began",
                tmp.display(),
                self.dir.display()
            )
        } else {
            format!("writing {}", tmp.display())
        };
        StoreError::Io { context, error }
    }

    /// Stream `stream` into the entry `key`. The bytes go to a temp file (0644) while their
    /// SHA-256 is computed; the entry appears, by rename, only when the stream ended cleanly,
    /// stayed within `max_bytes` and matched `expected_sha256`. Memory use does not grow
    /// with the artifact size.
    pub async fn store(
        &self,
        key: &str,
        mut stream: ByteStream,
        opts: &StoreOptions,
    ) -> Result<Stored, StoreError> {
        Cache::validate_key(key)?;
        let expected = opts
            .expected_sha256
            .as_ref()
            .map(|s| s.trim().to_ascii_lowercase());
        let tmp = self.dir.join(temp_name(key));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .await
            .map_err(io_err(|| format!("creating {}", tmp.display())))?;
        let free_before = free_space(&self.dir);
        let mut guard = TempGuard {
            path: Some(tmp.clone()),
        };
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| StoreError::Download {
                received: size,
                error,
            })?;
            size += chunk.len() as u64;
            if let Some(limit) = opts.max_bytes {
                if size > limit {
                    return Err(StoreError::TooLarge { limit });
                }
            }
            hasher.update(&chunk);
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| self.write_error(&tmp, size, free_before, e))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| self.write_error(&tmp, size, free_before, e))?;
        let file = writer.into_inner();
        file.sync_all()
            .await
            .map_err(io_err(|| format!("syncing {}", tmp.display())))?;
        drop(file);
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = expected {
            if expected != actual {
                return Err(StoreError::ChecksumMismatch { expected, actual });
            }
        }
        let dest = self.path(key);
        tokio::fs::rename(&tmp, &dest).await.map_err(io_err(|| {
            format!("renaming {} to {}", tmp.display(), dest.display())
        }))?;
        guard.path = None;
        sync_dir(&self.dir)
            .await
            .map_err(io_err(|| format!("syncing {}", self.dir.display())))?;
        Ok(Stored {
            path: dest,
            sha256: actual,
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_round_trip() {
        let name = temp_name("v1.0.0--app.tar.gz");
        assert!(is_temp_name(&name), "{name}");
        assert!(name.starts_with(".v1.0.0--app.tar.gz."));
        assert_eq!(temp_owner(&name), Some(std::process::id()));
        assert_eq!(temp_owner(".foo.part"), None);
        assert!(!is_temp_name("v1.0.0--app.part"));
        let long = "é".repeat(127);
        let name = temp_name(&long);
        assert!(name.len() <= 255, "{}", name.len());
    }
}
