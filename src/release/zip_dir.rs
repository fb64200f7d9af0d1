//! The zip central directory, read without trusting it: the end-of-central-directory
//! record (and its zip64 form) is located and its declared entry count and directory size
//! checked against the limits and the file's length before any entry is parsed; then the
//! directory is streamed one record at a time, so memory does not grow with the entry count.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

/// Fixed part of the end-of-central-directory record.
const EOCD_LEN: u64 = 22;
/// The zip64 end-of-central-directory locator.
const LOCATOR_LEN: u64 = 20;
/// Fixed part of the zip64 end-of-central-directory record.
const ZIP64_EOCD_LEN: u64 = 56;
/// Fixed part of a central directory record.
const CENTRAL_LEN: u64 = 46;
/// Fixed part of a local file header.
const LOCAL_LEN: u64 = 30;
/// The end record may be followed by a comment of at most this many bytes.
const MAX_COMMENT: u64 = 0xffff;
/// Read buffer for streaming the central directory.
const DIR_BUF: usize = 32 * 1024;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Reads exactly `len` bytes at `offset`, failing if the file is shorter.
fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// What the end record declares, after the consistency checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directory {
    /// Entries declared (zip64 value when present).
    pub(crate) entries: u64,
    /// Where the central directory really starts in the file.
    pub(crate) start: u64,
    /// Its declared size in bytes.
    pub(crate) size: u64,
    /// Bytes found before the archive proper (self-extracting stubs): added to every
    /// offset the archive records.
    pub(crate) shift: u64,
}

impl Directory {
    /// Whether the declared entries can fit in the declared size (each record takes at
    /// least 46 bytes).
    pub(crate) fn check_density(&self) -> io::Result<()> {
        if self
            .entries
            .checked_mul(CENTRAL_LEN)
            .is_none_or(|min| min > self.size)
        {
            return Err(invalid(format!(
                "central directory declares {} entries in only {} bytes",
                self.entries, self.size
            )));
        }
        Ok(())
    }
}

/// Locates and checks the end-of-central-directory record of a file of `len` bytes.
pub(crate) fn locate(file: &File, len: u64) -> io::Result<Directory> {
    if len < EOCD_LEN {
        return Err(invalid("too short to be a zip archive"));
    }
    let tail_len = len.min(EOCD_LEN + MAX_COMMENT);
    let tail_start = len - tail_len;
    let tail = read_exact_at(file, tail_start, tail_len as usize)?;
    // The last signature whose comment ends within the file is the end record.
    let mut found = None;
    let mut i = tail.len() - EOCD_LEN as usize;
    loop {
        if u32_at(&tail, i) == EOCD_SIG {
            let comment = u16_at(&tail, i + 20) as usize;
            if i + EOCD_LEN as usize + comment <= tail.len() {
                found = Some(i);
                break;
            }
        }
        if i == 0 {
            break;
        }
        i -= 1;
    }
    let Some(i) = found else {
        return Err(invalid("no end-of-central-directory record"));
    };
    let eocd_pos = tail_start + i as u64;
    let rec = &tail[i..i + EOCD_LEN as usize];
    let disk = u16_at(rec, 4);
    let cd_disk = u16_at(rec, 6);
    let on_disk = u16_at(rec, 8);
    let mut entries = u64::from(u16_at(rec, 10));
    let mut size = u64::from(u32_at(rec, 12));
    let mut offset = u64::from(u32_at(rec, 16));
    let mut end = eocd_pos;

    let maybe_zip64 = entries == 0xffff || size == 0xffff_ffff || offset == 0xffff_ffff;
    let locator = if eocd_pos >= LOCATOR_LEN {
        let l = read_exact_at(file, eocd_pos - LOCATOR_LEN, LOCATOR_LEN as usize)?;
        (u32_at(&l, 0) == ZIP64_LOCATOR_SIG).then_some(l)
    } else {
        None
    };
    match locator {
        Some(l) => {
            if u32_at(&l, 4) != 0 || u32_at(&l, 16) > 1 {
                return Err(invalid("multi-disk zip archives are not supported"));
            }
            let locator_pos = eocd_pos - LOCATOR_LEN;
            let declared = u64_at(&l, 8);
            let record = zip64_record(file, declared, locator_pos)?;
            let (pos, z) = record;
            if u32_at(&z, 16) != 0 || u32_at(&z, 20) != 0 || u64_at(&z, 24) != u64_at(&z, 32) {
                return Err(invalid("multi-disk zip archives are not supported"));
            }
            entries = u64_at(&z, 32);
            size = u64_at(&z, 40);
            offset = u64_at(&z, 48);
            end = pos;
        }
        None if maybe_zip64 && entries == 0xffff && size == 0xffff_ffff => {
            return Err(invalid("zip64 end record is missing"));
        }
        None => {
            if disk != 0 || cd_disk != 0 || u64::from(on_disk) != entries {
                return Err(invalid("multi-disk zip archives are not supported"));
            }
        }
    }
    // The central directory ends where its end record starts (anything before the archive
    // proper moves both by the same amount).
    let declared_end = offset
        .checked_add(size)
        .ok_or_else(|| invalid("central directory offset and size overflow"))?;
    if size > end {
        return Err(invalid(format!(
            "central directory declares {size} bytes, more than the {end} bytes before its end record"
        )));
    }
    if declared_end > end {
        return Err(invalid("central directory overlaps its end record"));
    }
    let shift = end - declared_end;
    Ok(Directory {
        entries,
        start: end - size,
        size,
        shift,
    })
}

/// The zip64 end record: at its declared offset, or right before the locator when the
/// archive was prefixed with other data.
fn zip64_record(file: &File, declared: u64, locator_pos: u64) -> io::Result<(u64, Vec<u8>)> {
    let mut candidates = vec![declared];
    if let Some(p) = locator_pos.checked_sub(ZIP64_EOCD_LEN) {
        candidates.push(p);
    }
    for pos in candidates {
        if pos.checked_add(ZIP64_EOCD_LEN).is_none_or(|e| e > locator_pos) {
            continue;
        }
        let z = read_exact_at(file, pos, ZIP64_EOCD_LEN as usize)?;
        if u32_at(&z, 0) == ZIP64_EOCD_SIG {
            return Ok((pos, z));
        }
    }
    Err(invalid("zip64 end record not found where its locator points"))
}

/// A reader of a byte range of a file through `pread`, so several can be open at once.
pub(crate) struct Range<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl<'f> Range<'f> {
    pub(crate) fn new(file: &'f File, start: u64, len: u64) -> Self {
        Range {
            file,
            pos: start,
            end: start.saturating_add(len),
        }
    }
}

impl Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "zip archive is shorter than its records say",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// One central directory record, with zip64 values applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) name: Vec<u8>,
    /// Host system of the archiver (high byte of "version made by").
    pub(crate) host: u8,
    pub(crate) flags: u16,
    pub(crate) method: u16,
    pub(crate) crc32: u32,
    pub(crate) compressed: u64,
    pub(crate) size: u64,
    pub(crate) external: u32,
    /// Offset of the local header in the file (shift applied).
    pub(crate) local: u64,
}

impl Record {
    /// The unix mode (type and permission bits) when the archiver recorded one.
    pub(crate) fn unix_mode(&self) -> Option<u32> {
        // 3: Unix, 19: OS X; both keep st_mode in the high half of the external attributes.
        matches!(self.host, 3 | 19)
            .then_some(self.external >> 16)
            .filter(|m| *m != 0)
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.name.last() == Some(&b'/')
    }
}

/// Streams the records of the central directory `dir` in constant memory.
pub(crate) struct Records<'f> {
    input: BufReader<Range<'f>>,
    left: u64,
    shift: u64,
}

impl<'f> Records<'f> {
    pub(crate) fn new(file: &'f File, dir: &Directory) -> Self {
        Records {
            input: BufReader::with_capacity(DIR_BUF, Range::new(file, dir.start, dir.size)),
            left: dir.entries,
            shift: dir.shift,
        }
    }

    /// The next record, `None` after the declared count.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<Record>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let mut fixed = [0u8; CENTRAL_LEN as usize];
        self.input.read_exact(&mut fixed).map_err(short)?;
        if u32_at(&fixed, 0) != CENTRAL_SIG {
            return Err(invalid("bad central directory record signature"));
        }
        let name_len = u16_at(&fixed, 28) as usize;
        let extra_len = u16_at(&fixed, 30) as usize;
        let comment_len = u64::from(u16_at(&fixed, 32));
        let mut name = vec![0u8; name_len];
        self.input.read_exact(&mut name).map_err(short)?;
        let mut extra = vec![0u8; extra_len];
        self.input.read_exact(&mut extra).map_err(short)?;
        let skipped = io::copy(&mut (&mut self.input).take(comment_len), &mut io::sink())?;
        if skipped != comment_len {
            return Err(short(io::ErrorKind::UnexpectedEof.into()));
        }
        let mut rec = Record {
            name,
            host: fixed[5],
            flags: u16_at(&fixed, 8),
            method: u16_at(&fixed, 10),
            crc32: u32_at(&fixed, 16),
            compressed: u64::from(u32_at(&fixed, 20)),
            size: u64::from(u32_at(&fixed, 24)),
            external: u32_at(&fixed, 38),
            local: u64::from(u32_at(&fixed, 42)),
        };
        let disk = u16_at(&fixed, 34);
        apply_zip64(&mut rec, disk, &extra)?;
        rec.local = rec
            .local
            .checked_add(self.shift)
            .ok_or_else(|| invalid("local header offset overflows"))?;
        Ok(Some(rec))
    }
}

fn short(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        invalid("central directory is shorter than its declared entries")
    } else {
        e
    }
}

/// Replaces the 32-bit fields saturated at `0xffffffff` with the zip64 extra field's values.
fn apply_zip64(rec: &mut Record, disk: u16, extra: &[u8]) -> io::Result<()> {
    let mut i = 0;
    while i + 4 <= extra.len() {
        let id = u16_at(extra, i);
        let len = u16_at(extra, i + 2) as usize;
        let body = extra
            .get(i + 4..i + 4 + len)
            .ok_or_else(|| invalid("extra field runs past its record"))?;
        if id == 0x0001 {
            let mut at = 0;
            let mut take = |field: &mut u64| -> io::Result<()> {
                if *field == 0xffff_ffff {
                    let v = body
                        .get(at..at + 8)
                        .ok_or_else(|| invalid("zip64 extra field too short"))?;
                    *field = u64_at(v, 0);
                    at += 8;
                }
                Ok(())
            };
            take(&mut rec.size)?;
            take(&mut rec.compressed)?;
            take(&mut rec.local)?;
            return Ok(());
        }
        i += 4 + len;
    }
    if disk != 0 && disk != 0xffff {
        return Err(invalid("multi-disk zip archives are not supported"));
    }
    Ok(())
}

/// Where the data of `rec` starts: after its local header, whose own name and extra field
/// lengths may differ from the central record's.
pub(crate) fn data_start(file: &File, rec: &Record) -> io::Result<u64> {
    let mut fixed = [0u8; LOCAL_LEN as usize];
    file.read_exact_at(&mut fixed, rec.local).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            invalid("local header lies beyond the end of the archive")
        } else {
            e
        }
    })?;
    if u32_at(&fixed, 0) != LOCAL_SIG {
        return Err(invalid("bad local header signature"));
    }
    let skip = LOCAL_LEN + u64::from(u16_at(&fixed, 26)) + u64::from(u16_at(&fixed, 28));
    rec.local
        .checked_add(skip)
        .ok_or_else(|| invalid("local header offset overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(bytes).expect("write");
        (f, bytes.len() as u64)
    }

    fn eocd(entries: u16, size: u32, offset: u32, comment: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&EOCD_SIG.to_le_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.extend_from_slice(&entries.to_le_bytes());
        r.extend_from_slice(&entries.to_le_bytes());
        r.extend_from_slice(&size.to_le_bytes());
        r.extend_from_slice(&offset.to_le_bytes());
        r.extend_from_slice(&(comment.len() as u16).to_le_bytes());
        r.extend_from_slice(comment);
        r
    }

    #[test]
    fn empty_archive_and_comment() {
        let (f, len) = file_with(&eocd(0, 0, 0, b"hello"));
        let d = locate(f.as_file(), len).expect("empty zip");
        assert_eq!((d.entries, d.size, d.start, d.shift), (0, 0, 0, 0));
        let mut prefixed = b"#!stub\n".to_vec();
        prefixed.extend(eocd(0, 0, 0, b""));
        let (f, len) = file_with(&prefixed);
        assert_eq!(locate(f.as_file(), len).expect("stub").shift, 7);
    }

    #[test]
    fn impossible_declarations_refused() {
        // 1000 entries cannot fit in 100 bytes of directory.
        let mut b = vec![0u8; 100];
        b.extend(eocd(1000, 100, 0, b""));
        let (f, len) = file_with(&b);
        let e = locate(f.as_file(), len)
            .and_then(|d| d.check_density())
            .expect_err("too dense");
        assert!(e.to_string().contains("1000 entries in only 100 bytes"), "{e}");
        // A directory larger than the file.
        let (f, len) = file_with(&eocd(1, 1 << 30, 0, b""));
        let e = locate(f.as_file(), len).expect_err("too big");
        assert!(e.to_string().contains("more than the 0 bytes"), "{e}");
        let (f, len) = file_with(b"PK\x05\x06 not really");
        assert!(locate(f.as_file(), len).is_err());
        // A zip64 marker without its locator.
        let (f, len) = file_with(&eocd(0xffff, 0xffff_ffff, 0xffff_ffff, b""));
        assert!(locate(f.as_file(), len).is_err());
    }

    #[test]
    fn zip64_end_record_is_read() {
        let mut b = Vec::new();
        let z64_pos = b.len() as u64;
        b.extend_from_slice(&ZIP64_EOCD_SIG.to_le_bytes());
        b.extend_from_slice(&44u64.to_le_bytes());
        b.extend_from_slice(&[45, 3, 45, 0]);
        b.extend_from_slice(&[0u8; 8]);
        b.extend_from_slice(&5_000_000_000u64.to_le_bytes());
        b.extend_from_slice(&5_000_000_000u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&ZIP64_LOCATOR_SIG.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&z64_pos.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend(eocd(0xffff, 0xffff_ffff, 0xffff_ffff, b""));
        let (f, len) = file_with(&b);
        let d = locate(f.as_file(), len).expect("zip64 end record");
        assert_eq!(d.entries, 5_000_000_000);
        let e = d.check_density().expect_err("5e9 entries in 0 bytes");
        assert!(e.to_string().contains("5000000000 entries"), "{e}");
    }
}
