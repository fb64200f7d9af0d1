//! Reading zip archives into a [`Writer`]: unix modes from the external attributes when
//! present, symlinks recognised by `S_IFLNK`, special files refused.

use std::io::{self, BufRead, Read, Seek};

use super::extract::ExtractError;
use super::paths::parse_entry_path;
use super::writer::{Meta, Writer};

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;

/// Longest symlink target accepted from a zip entry.
const MAX_LINK: u64 = 4096;

fn zip_err(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

/// Extracts every entry of the zip archive read from `input`.
pub(crate) fn extract<R: BufRead + Seek>(input: R, w: &mut Writer) -> Result<(), ExtractError> {
    let mut archive =
        zip::ZipArchive::new(input).map_err(|e| ExtractError::corrupt("zip", None, zip_err(e)))?;
    for i in 0..archive.len() {
        w.count_entry()?;
        let mut file = archive.by_index(i).map_err(|e| {
            let at = format!("entry #{i}");
            ExtractError::Corrupt {
                format: "zip",
                context: Some(at),
                source: zip_err(e),
            }
        })?;
        let name = file.name().to_owned();
        let mode = file.unix_mode();
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
        let comps = parse_entry_path(name.as_bytes()).map_err(|reason| ExtractError::UnsafePath {
            entry: name.clone(),
            reason,
        })?;
        if ftype == Some(S_IFLNK) {
            let mut target = Vec::new();
            (&mut file)
                .take(MAX_LINK + 1)
                .read_to_end(&mut target)
                .map_err(|e| ExtractError::corrupt("zip", Some(&name), e))?;
            if target.len() as u64 > MAX_LINK {
                let e = io::Error::new(io::ErrorKind::InvalidData, "symlink target too long");
                return Err(ExtractError::corrupt("zip", Some(&name), e));
            }
            w.symlink(&name, &comps, &target)?;
        } else if file.is_dir() || ftype == Some(S_IFDIR) {
            let mode = mode.unwrap_or(0o755);
            w.dir(&name, comps, Meta { mode, mtime: None })?;
        } else {
            let mode = mode.unwrap_or(0o644);
            w.check_declared(&name, file.size())?;
            w.file(&name, &comps, Meta { mode, mtime: None }, &mut file)?;
        }
    }
    Ok(())
}
