//! Builders for the archive corpus of `tests/archives.rs`: raw tar entries (any name,
//! type or size, however malicious), the compressors dewy reads, zip archives with patched
//! modes and sizes, and a scratch layout with a sentinel directory next to the destination.

#![allow(dead_code)]

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};
use zip::write::SimpleFileOptions;

/// A scratch directory holding `dest/` (extraction target) and `sentinel/` (must stay
/// empty: every escape in the corpus aims at it).
pub struct Scratch {
    pub tmp: tempfile::TempDir,
    pub dest: PathBuf,
    pub sentinel: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dest = tmp.path().join("dest");
        let sentinel = tmp.path().join("sentinel");
        std::fs::create_dir(&dest).expect("mkdir dest");
        std::fs::create_dir(&sentinel).expect("mkdir sentinel");
        Scratch { tmp, dest, sentinel }
    }

    /// Writes `bytes` as the archive file and returns its path.
    pub fn archive(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, bytes).expect("write archive");
        path
    }

    /// Asserts nothing was created outside `dest` (besides the archive files themselves).
    pub fn assert_nothing_outside(&self) {
        let in_sentinel: Vec<_> = std::fs::read_dir(&self.sentinel)
            .expect("read sentinel")
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .expect("sentinel entries");
        assert!(in_sentinel.is_empty(), "written outside dest: {in_sentinel:?}");
        for entry in std::fs::read_dir(self.tmp.path()).expect("read tmp") {
            let name = entry.expect("entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                name == "dest" || name == "sentinel" || name.starts_with("archive"),
                "unexpected file next to dest: {name}"
            );
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// A tar stream built header by header, with no checks on names or types.
pub struct RawTar {
    out: Vec<u8>,
}

impl Default for RawTar {
    fn default() -> Self {
        Self::new()
    }
}

impl RawTar {
    pub fn new() -> Self {
        RawTar { out: Vec::new() }
    }

    fn header(name: &[u8], kind: EntryType, mode: u32, link: &[u8], size: u64) -> Header {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            assert!(name.len() < old.name.len() && link.len() < old.linkname.len());
            old.name[..name.len()].copy_from_slice(name);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        h
    }

    /// Appends an entry whose header size is the data length.
    pub fn entry(mut self, name: &str, kind: EntryType, mode: u32, link: &str, data: &[u8]) -> Self {
        let h = Self::header(name.as_bytes(), kind, mode, link.as_bytes(), data.len() as u64);
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend_from_slice(&vec![0u8; pad]);
        self
    }

    pub fn file(self, name: &str, mode: u32, data: &[u8]) -> Self {
        self.entry(name, EntryType::Regular, mode, "", data)
    }

    pub fn dir(self, name: &str, mode: u32) -> Self {
        self.entry(name, EntryType::Directory, mode, "", b"")
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Symlink, 0o777, target, b"")
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Link, 0o644, target, b"")
    }

    /// Appends a header claiming `size` bytes followed by `data` (any length), unpadded.
    pub fn lying(mut self, name: &str, size: u64, data: &[u8]) -> Self {
        let h = Self::header(name.as_bytes(), EntryType::Regular, 0o644, b"", size);
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        self
    }

    /// The stream with its end-of-archive marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0u8; 1024]);
        self.out
    }

    /// The stream as written so far, without end-of-archive marker.
    pub fn unterminated(self) -> Vec<u8> {
        self.out
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).expect("bzip2");
    e.finish().expect("bzip2")
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).expect("xz");
    e.finish().expect("xz")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).expect("zstd")
}

/// One zip entry to build.
pub enum Z<'a> {
    File(&'a str, u32, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

pub fn zip(entries: &[Z<'_>]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for e in entries {
        match e {
            Z::File(name, mode, data) => {
                w.start_file(*name, opts.unix_permissions(*mode))
                    .expect("zip file");
                w.write_all(data).expect("zip write");
            }
            Z::Dir(name) => w.add_directory(*name, opts).expect("zip dir"),
            Z::Symlink(name, target) => w.add_symlink(*name, *target, opts).expect("zip symlink"),
        }
    }
    w.finish().expect("zip finish").into_inner()
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

/// Calls `f(name, header_offset)` for every central directory header.
fn central_headers(bytes: &[u8], mut f: impl FnMut(&str, usize)) {
    let mut i = 0;
    while i + 46 <= bytes.len() {
        if bytes[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] {
            let n = u16_at(bytes, i + 28);
            let name = String::from_utf8_lossy(&bytes[i + 46..i + 46 + n]).into_owned();
            f(&name, i);
            i += 46 + n;
        } else {
            i += 1;
        }
    }
}

/// Sets the full unix mode (type and permission bits) of the entry `name`.
pub fn zip_patch_mode(mut bytes: Vec<u8>, name: &str, mode: u32) -> Vec<u8> {
    let mut at = None;
    central_headers(&bytes, |n, i| {
        if n == name {
            at = Some(i);
        }
    });
    let i = at.expect("entry in zip");
    bytes[i + 5] = 3; // made by: unix
    bytes[i + 38..i + 42].copy_from_slice(&(mode << 16).to_le_bytes());
    bytes
}

/// Makes every header of the zip claim `size` uncompressed bytes.
pub fn zip_patch_size(mut bytes: Vec<u8>, size: u32) -> Vec<u8> {
    let mut central = Vec::new();
    central_headers(&bytes, |_, i| central.push(i));
    for i in central {
        bytes[i + 24..i + 28].copy_from_slice(&size.to_le_bytes());
    }
    let mut i = 0;
    while i + 30 <= bytes.len() {
        if bytes[i..i + 4] == [0x50, 0x4b, 0x03, 0x04] {
            bytes[i + 22..i + 26].copy_from_slice(&size.to_le_bytes());
        }
        i += 1;
    }
    bytes
}

/// Deterministic incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Mode bits of a path (not following symlinks).
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}
