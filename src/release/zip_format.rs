//! Reading zip archives into a [`Writer`]: the central directory is checked from its end
//! record and then streamed one record at a time; each entry's data is inflated (stored or
//! deflated) from its own byte range and checked against the declared size and CRC-32.
//! Unix modes come from the external attributes when present, symlinks are recognised by
//! `S_IFLNK`, special files are refused.

use std::fs::File;
use std::io::{self, BufReader, Read};

use super::extract::ExtractError;
use super::paths::parse_entry_path;
use super::sys;
use super::writer::{Meta, Writer};
use super::zip_dir::{self, Range, Record, Records};

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;

/// Longest symlink target accepted from a zip entry.
const MAX_LINK: u64 = 4096;
/// Read buffer for one entry's compressed data.
const DATA_BUF: usize = 32 * 1024;

const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;
const FLAG_ENCRYPTED: u16 = 1;

/// Extracts every entry of the zip archive `file` (of `len` bytes).
pub(crate) fn extract(file: &File, len: u64, w: &mut Writer) -> Result<(), ExtractError> {
    let dir = zip_dir::locate(file, len).map_err(|e| ExtractError::corrupt("zip", None, e))?;
    let limit = w.max_entries();
    if dir.entries > limit {
        return Err(ExtractError::TooManyDeclared {
            declared: dir.entries,
            limit,
        });
    }
    dir.check_density()
        .map_err(|e| ExtractError::corrupt("zip", None, e))?;
    let mut records = Records::new(file, &dir);
    let mut i = 0u64;
    loop {
        let rec = records.next_record().map_err(|e| ExtractError::Corrupt {
            format: "zip",
            context: Some(format!("central directory record #{i}")),
            source: e,
        })?;
        let Some(rec) = rec else { break };
        w.count_entry()?;
        one_entry(file, &rec, w)?;
        i += 1;
    }
    Ok(())
}

fn one_entry(file: &File, rec: &Record, w: &mut Writer) -> Result<(), ExtractError> {
    let name = sys::display(&rec.name);
    let mode = rec.unix_mode();
    let ftype = mode.map(|m| m & S_IFMT).filter(|t| *t != 0);
    let special = match ftype {
        Some(S_IFCHR) => Some("character device"),
        Some(S_IFBLK) => Some("block device"),
        Some(S_IFIFO) => Some("FIFO"),
        Some(S_IFSOCK) => Some("socket"),
        _ => None,
    };
    if let Some(kind) = special {
        return Err(ExtractError::SpecialFile { entry: name, kind });
    }
    let comps = parse_entry_path(&rec.name).map_err(|reason| ExtractError::UnsafePath {
        entry: name.clone(),
        reason,
    })?;
    if rec.is_dir() || ftype == Some(S_IFDIR) {
        let mode = mode.unwrap_or(0o755);
        return w.dir(&name, comps, Meta { mode, mtime: None });
    }
    if rec.flags & FLAG_ENCRYPTED != 0 {
        return Err(ExtractError::UnsupportedEntry {
            entry: name,
            kind: "encrypted entry".into(),
        });
    }
    if !matches!(rec.method, METHOD_STORED | METHOD_DEFLATED) {
        return Err(ExtractError::UnsupportedEntry {
            entry: name,
            kind: format!("compression method {}", rec.method),
        });
    }
    let corrupt = |e| ExtractError::corrupt("zip", Some(&name), e);
    let start = zip_dir::data_start(file, rec).map_err(corrupt)?;
    let mut data = EntryData::new(file, start, rec);
    if ftype == Some(S_IFLNK) {
        let mut target = Vec::new();
        (&mut data)
            .take(MAX_LINK + 1)
            .read_to_end(&mut target)
            .map_err(corrupt)?;
        if target.len() as u64 > MAX_LINK {
            let e = io::Error::new(io::ErrorKind::InvalidData, "symlink target too long");
            return Err(corrupt(e));
        }
        return w.symlink(&name, &comps, &target);
    }
    let mode = mode.unwrap_or(0o644);
    w.file(&name, &comps, Meta { mode, mtime: None }, rec.size, &mut data)
}

/// The decompressed bytes of one entry: never more than its declared size, and an error
/// at the end when the size or the CRC-32 does not match.
struct EntryData<'f> {
    inner: Inner<'f>,
    expected_size: u64,
    expected_crc: u32,
    produced: u64,
    crc: crc32fast::Hasher,
}

enum Inner<'f> {
    Stored(BufReader<Range<'f>>),
    Deflated(Box<flate2::bufread::DeflateDecoder<BufReader<Range<'f>>>>),
}

impl<'f> EntryData<'f> {
    fn new(file: &'f File, start: u64, rec: &Record) -> Self {
        let raw = BufReader::with_capacity(DATA_BUF, Range::new(file, start, rec.compressed));
        let inner = if rec.method == METHOD_DEFLATED {
            Inner::Deflated(Box::new(flate2::bufread::DeflateDecoder::new(raw)))
        } else {
            Inner::Stored(raw)
        };
        EntryData {
            inner,
            expected_size: rec.size,
            expected_crc: rec.crc32,
            produced: 0,
            crc: crc32fast::Hasher::new(),
        }
    }
}

impl Read for EntryData<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte more than declared is enough to tell a lying header.
        let left = self.expected_size - self.produced;
        let cap = usize::try_from(left.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match &mut self.inner {
            Inner::Stored(r) => r.read(&mut buf[..cap])?,
            Inner::Deflated(r) => r.read(&mut buf[..cap])?,
        };
        if n as u64 > left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry holds more than its declared {} bytes", self.expected_size),
            ));
        }
        if n == 0 {
            if self.produced != self.expected_size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "entry ends after {} of its declared {} bytes",
                        self.produced, self.expected_size
                    ),
                ));
            }
            let crc = self.crc.clone().finalize();
            if crc != self.expected_crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "CRC-32 mismatch: expected {:08x}, got {crc:08x}",
                        self.expected_crc
                    ),
                ));
            }
            return Ok(0);
        }
        self.crc.update(&buf[..n]);
        self.produced += n as u64;
        Ok(n)
    }
}
