//! Reading tar streams (plain or already decompressed) entry by entry into a [`Writer`].

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use tar::EntryType;

use super::extract::ExtractError;
use super::paths::parse_entry_path;
use super::sys;
use super::writer::{Meta, Writer};

/// Most bytes the tar reader may consume to produce one entry beyond skipping the previous
/// entry's data: its header plus GNU long-name and PAX extension headers, which the `tar`
/// crate reads into memory (so a huge one would be a memory bomb).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// A reader that fails once `budget` is spent; `u64::MAX` means unlimited.
struct Budgeted<R> {
    inner: R,
    budget: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.get();
        if left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "entry headers (long names, PAX extensions) exceed 1 MiB",
            ));
        }
        let cap = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..cap])?;
        if left != u64::MAX {
            self.budget.set(left - n as u64);
        }
        Ok(n)
    }
}

/// Extracts every entry of the tar stream `reader`, then reads the stream to its end so
/// that a compressed stream's trailer (checksum, length) is verified too.
pub(crate) fn extract<R: Read>(reader: R, w: &mut Writer) -> Result<(), ExtractError> {
    let format = w.format();
    let budget = Rc::new(Cell::new(u64::MAX));
    let mut archive = tar::Archive::new(Budgeted {
        inner: reader,
        budget: budget.clone(),
    });
    let mut last: Option<String> = None;
    {
        let mut entries = archive
            .entries()
            .map_err(|e| ExtractError::corrupt(format, None, e))?;
        // What finding the next header may read: skipping the unread rest of the previous
        // entry (at most its padded size) plus the header blocks.
        let mut skip = 0u64;
        loop {
            budget.set(MAX_HEADER_BYTES.saturating_add(skip));
            let next = entries.next();
            budget.set(u64::MAX);
            let Some(entry) = next else { break };
            let mut entry = entry.map_err(|e| corrupt_after(format, &last, e))?;
            w.count_entry()?;
            skip = entry.size().saturating_add(512);
            let raw = entry.path_bytes().into_owned();
            let name = sys::display(&raw);
            one_entry(&mut entry, &raw, &name, w)?;
            last = Some(name);
        }
    }
    let rest = archive.into_inner();
    drain(rest, w.format(), &last)
}

fn corrupt_after(format: &'static str, last: &Option<String>, e: io::Error) -> ExtractError {
    ExtractError::Corrupt {
        format,
        context: last.as_ref().map(|l| format!("after entry {l:?}")),
        source: e,
    }
}

/// Reads what follows the end-of-archive marker (padding) to check the compression
/// trailer; a bounded amount so trailing junk cannot keep dewy busy.
fn drain<R: Read>(rest: R, format: &'static str, last: &Option<String>) -> Result<(), ExtractError> {
    const MAX_TRAILER: u64 = 64 << 20;
    io::copy(&mut rest.take(MAX_TRAILER), &mut io::sink())
        .map(|_| ())
        .map_err(|e| corrupt_after(format, last, e))
}

fn one_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    raw: &[u8],
    name: &str,
    w: &mut Writer,
) -> Result<(), ExtractError> {
    let format = w.format();
    let header = entry.header();
    let etype = header.entry_type();
    let special = match etype {
        EntryType::XGlobalHeader => return Ok(()),
        EntryType::Char => Some("character device"),
        EntryType::Block => Some("block device"),
        EntryType::Fifo => Some("FIFO"),
        _ => None,
    };
    if let Some(kind) = special {
        return Err(ExtractError::SpecialFile {
            entry: name.to_owned(),
            kind,
        });
    }
    let comps = parse_entry_path(raw).map_err(|reason| ExtractError::UnsafePath {
        entry: name.to_owned(),
        reason,
    })?;
    // Only files and directories use the mode; links ignore it, however malformed.
    let meta = || -> Result<Meta, ExtractError> {
        let mode = header
            .mode()
            .map_err(|e| ExtractError::corrupt(format, Some(name), e))?;
        let mtime = header.mtime().ok();
        Ok(Meta { mode, mtime })
    };
    match etype {
        EntryType::Regular if raw.ends_with(b"/") => w.dir(name, comps, meta()?),
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            let meta = meta()?;
            let declared = entry.size();
            w.file(name, &comps, meta, declared, entry)
        }
        EntryType::Directory => w.dir(name, comps, meta()?),
        EntryType::Symlink | EntryType::Link => {
            let Some(target) = entry.link_name_bytes().map(|t| t.into_owned()) else {
                let e = io::Error::new(io::ErrorKind::InvalidData, "link entry without a target");
                return Err(ExtractError::corrupt(format, Some(name), e));
            };
            if etype == EntryType::Symlink {
                w.symlink(name, &comps, &target)
            } else {
                w.hardlink(name, &comps, &target)
            }
        }
        other => Err(ExtractError::UnsupportedEntry {
            entry: name.to_owned(),
            kind: format!("{:?} ({:?})", other, char::from(other.as_byte())),
        }),
    }
}
