//! Unpacking a downloaded artifact into a release staging directory: format detection,
//! limits, the error type callers branch on, and the plain-binary case.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::gzip_members::GzipMembers;
use super::host_fault::is_out_of_space;
use super::pipe::PipeReader;
use super::writer::Writer;
use super::{sys, tar_format, zip_format};

/// Read buffer size for archive input.
const READ_BUF: usize = 256 * 1024;

/// Memory the xz decoder may use: enough for `xz -9e` (64 MiB dictionary), and a bound
/// on what a crafted header can make dewy allocate.
const XZ_MEMLIMIT: u64 = 256 << 20;

/// Bounds on what one archive may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes actually written for all files together (default 4 GiB).
    pub max_total_bytes: u64,
    /// Entries of any kind (default 1,000,000).
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_total_bytes: 4 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// What an extraction produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Regular files, symlinks and hard links created.
    pub files: u64,
    /// Directory entries of the archive.
    pub dirs: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// Why an artifact could not be extracted. Every refusal names the offending entry.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("archive entry {entry:?} refused: {reason}")]
    UnsafePath { entry: String, reason: &'static str },
    #[error("archive entry {entry:?} refused: symlink target {target:?} {reason}")]
    UnsafeSymlink {
        entry: String,
        target: String,
        reason: &'static str,
    },
    #[error("archive entry {entry:?} refused: hard link to {target:?}: {reason}")]
    UnsafeHardlink {
        entry: String,
        target: String,
        reason: String,
    },
    #[error("archive entry {entry:?} refused: path goes through symlink {via:?} (dewy never follows symlinks while extracting)")]
    ThroughSymlink { entry: String, via: String },
    #[error("archive entry {entry:?} refused: {reason}")]
    Conflict { entry: String, reason: String },
    #[error(
        "archive entry {entry:?} refused: it is a {kind}; device files, FIFOs and sockets are not allowed"
    )]
    SpecialFile { entry: String, kind: &'static str },
    #[error("archive entry {entry:?} refused: unsupported entry type {kind}")]
    UnsupportedEntry { entry: String, kind: String },
    #[error("archive refused at entry {entry:?}: it expands beyond the size limit of {limit} bytes")]
    TooLarge { entry: String, limit: u64 },
    #[error("archive refused: it has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("zip archive refused: its central directory declares {declared} entries, more than the limit of {limit}")]
    TooManyDeclared { declared: u64, limit: u64 },
    #[error("{format} archive refused: it holds no regular file (empty, or only directories and links)")]
    Empty { format: &'static str },
    #[error(
        "out of disk space writing {entry:?} into {dest}: the release needs at least {needed} bytes ({written} written before the disk filled up), {}",
        free_text(.free_before)
    )]
    NoSpace {
        entry: String,
        dest: String,
        /// Bytes known to be needed: written so far plus what the entry declares.
        needed: u64,
        /// File bytes written before the disk filled up.
        written: u64,
        /// What `statvfs` reported free there when the extraction began.
        free_before: Option<u64>,
        source: io::Error,
    },
    #[error("corrupt or truncated {format} archive{}: {source}", in_parens(.context))]
    Corrupt {
        format: &'static str,
        /// Where in the archive, e.g. `entry "bin/app"`.
        context: Option<String>,
        source: io::Error,
    },
    #[error("invalid artifact name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("cannot {action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
}

fn free_text(free: &Option<u64>) -> String {
    match free {
        Some(n) => format!("{n} bytes were free there when extraction began"),
        None => "free space unknown".into(),
    }
}

fn in_parens(context: &Option<String>) -> String {
    context.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
}

impl ExtractError {
    pub(crate) fn io(action: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        ExtractError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(format: &'static str, entry: Option<&str>, source: io::Error) -> Self {
        ExtractError::Corrupt {
            format,
            context: entry.map(|e| format!("entry {e:?}")),
            source,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Tar(Compression),
    Zip,
    Plain,
}

fn detect(artifact_name: &str) -> Format {
    let n = artifact_name.to_ascii_lowercase();
    let ends = |sufs: &[&str]| sufs.iter().any(|s| n.ends_with(s));
    if ends(&[".tar.gz", ".tgz"]) {
        Format::Tar(Compression::Gzip)
    } else if ends(&[".tar.bz2", ".tbz2"]) {
        Format::Tar(Compression::Bzip2)
    } else if ends(&[".tar.xz", ".txz"]) {
        Format::Tar(Compression::Xz)
    } else if ends(&[".tar.zst", ".tzst"]) {
        Format::Tar(Compression::Zstd)
    } else if ends(&[".tar"]) {
        Format::Tar(Compression::None)
    } else if ends(&[".zip"]) {
        Format::Zip
    } else {
        Format::Plain
    }
}

/// Unpacks `archive` into the existing, empty directory `dest`.
///
/// The format comes from `artifact_name` (case-insensitive suffix): `.tar.gz`/`.tgz`,
/// `.tar.bz2`/`.tbz2`, `.tar.xz`/`.txz`, `.tar.zst`/`.tzst`, `.tar`, `.zip`; any other
/// name is a single binary copied to `dest/<artifact_name>` with mode 0755.
///
/// An archive must hold at least one regular file. Nothing is ever written outside `dest`,
/// but on error `dest` may hold a partial tree: the caller removes it. Files are not
/// fsynced; see [`sync_tree`].
pub fn extract(
    archive: &Path,
    artifact_name: &str,
    dest: &Path,
    limits: &Limits,
) -> Result<ExtractStats, ExtractError> {
    let format = detect(artifact_name);
    let file = File::open(archive)
        .map_err(|e| ExtractError::io("open archive", archive.display().to_string(), e))?;
    let input = BufReader::with_capacity(READ_BUF, file);
    let spawn_err = |e| ExtractError::io("start decompressor for", artifact_name, e);
    match format {
        Format::Plain => copy_plain(input.into_inner(), artifact_name, dest, limits),
        Format::Zip => {
            let file = input.into_inner();
            let len = file
                .metadata()
                .map_err(|e| ExtractError::io("inspect archive", archive.display().to_string(), e))?
                .len();
            let mut w = Writer::new(dest, limits, "zip")?;
            zip_format::extract(&file, len, &mut w)?;
            w.finish()
        }
        Format::Tar(c) => {
            let (name, reader): (&'static str, Box<dyn Read>) = match c {
                Compression::None => ("tar", Box::new(input)),
                Compression::Gzip => (
                    "tar.gz",
                    Box::new(PipeReader::spawn(GzipMembers::new(input)).map_err(spawn_err)?),
                ),
                Compression::Bzip2 => (
                    "tar.bz2",
                    Box::new(
                        PipeReader::spawn(bzip2::bufread::MultiBzDecoder::new(input)).map_err(spawn_err)?,
                    ),
                ),
                Compression::Xz => {
                    let stream =
                        xz2::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, xz2::stream::CONCATENATED)
                            .map_err(|e| ExtractError::corrupt("tar.xz", None, e.into()))?;
                    let dec = xz2::bufread::XzDecoder::new_stream(input, stream);
                    ("tar.xz", Box::new(PipeReader::spawn(dec).map_err(spawn_err)?))
                }
                Compression::Zstd => {
                    let dec = zstd::stream::read::Decoder::with_buffer(input)
                        .map_err(|e| ExtractError::corrupt("tar.zst", None, e))?;
                    ("tar.zst", Box::new(PipeReader::spawn(dec).map_err(spawn_err)?))
                }
            };
            let mut w = Writer::new(dest, limits, name)?;
            tar_format::extract(reader, &mut w)?;
            w.finish()
        }
    }
}

/// Copies a plain single-binary artifact to `dest/<name>` with mode 0755.
fn copy_plain(src: File, name: &str, dest: &Path, limits: &Limits) -> Result<ExtractStats, ExtractError> {
    let invalid = |reason| ExtractError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(invalid("not a file name"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(invalid("contains a path separator or NUL byte"));
    }
    let target = dest.join(name);
    let shown = target.display().to_string();
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&target)
        .map_err(|e| ExtractError::io("create", shown.clone(), e))?;
    let limit = limits.max_total_bytes;
    let mut src = src.take(limit.saturating_add(1));
    let declared = src.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
    let free_before = sys::free_bytes(std::os::fd::AsFd::as_fd(&out)).ok();
    let bytes = io::copy(&mut src, &mut out).map_err(|e| {
        if is_out_of_space(&e) {
            let written = out.metadata().map(|m| m.len()).unwrap_or(0);
            ExtractError::NoSpace {
                entry: name.to_owned(),
                dest: dest.display().to_string(),
                needed: declared.max(written),
                written,
                free_before,
                source: e,
            }
        } else {
            ExtractError::io("write", shown.clone(), e)
        }
    })?;
    if bytes > limit {
        return Err(ExtractError::TooLarge {
            entry: name.to_owned(),
            limit,
        });
    }
    out.set_permissions(Permissions::from_mode(0o755))
        .map_err(|e| ExtractError::io("chmod", shown, e))?;
    Ok(ExtractStats {
        files: 1,
        dirs: 0,
        bytes,
    })
}

/// Makes an extracted tree durable before it is committed.
///
/// dewy calls `syncfs(2)` on the filesystem holding `dir` rather than fsyncing every file:
/// one call flushes all the tree's data and metadata, where per-file fsync on a release of
/// thousands of files costs one journal commit each. The price is also flushing unrelated
/// dirty data of that filesystem, which a deploy can afford.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    let fd = sys::open_dir(dir)?;
    sys::syncfs(std::os::fd::AsFd::as_fd(&fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        assert_eq!(detect("app.TAR.GZ"), Format::Tar(Compression::Gzip));
        assert_eq!(detect("app.tgz"), Format::Tar(Compression::Gzip));
        assert_eq!(detect("app.tbz2"), Format::Tar(Compression::Bzip2));
        assert_eq!(detect("app.tar.xz"), Format::Tar(Compression::Xz));
        assert_eq!(detect("app.tzst"), Format::Tar(Compression::Zstd));
        assert_eq!(detect("app.tar"), Format::Tar(Compression::None));
        assert_eq!(detect("app.Zip"), Format::Zip);
        assert_eq!(detect("app.gz"), Format::Plain);
        assert_eq!(detect("app_linux_amd64"), Format::Plain);
    }

    #[test]
    fn plain_name_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::write(&src, b"bin").expect("write");
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).expect("mkdir");
        for bad in ["../x", "a/b", "..", ""] {
            let err = extract(&src, bad, &dest, &Limits::default()).expect_err(bad);
            assert!(matches!(err, ExtractError::InvalidName { .. }), "{bad}: {err}");
        }
        let stats = extract(&src, "app", &dest, &Limits::default()).expect("copy");
        assert_eq!(stats.bytes, 3);
        sync_tree(&dest).expect("sync");
    }
}
