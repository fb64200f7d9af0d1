//! The bytes a signature covers: the downloaded artifact (a file, read in a stream) or a checksum
//! file held in memory; hashing them, or reading them whole where a scheme needs that.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Refusal, RefusalKind};

/// Read size of the streaming hashes.
const CHUNK: usize = 256 << 10;

/// The signed bytes and the file name they are known by.
#[derive(Clone, Copy)]
pub(super) struct Signed<'a> {
    pub name: &'a str,
    pub content: Content<'a>,
}

#[derive(Clone, Copy)]
pub(super) enum Content<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

impl<'a> Signed<'a> {
    pub fn bytes(name: &'a str, bytes: &'a [u8]) -> Signed<'a> {
        Signed {
            name,
            content: Content::Bytes(bytes),
        }
    }

    pub fn file(name: &'a str, path: &'a Path) -> Signed<'a> {
        Signed {
            name,
            content: Content::File(path),
        }
    }

    fn unreadable(&self, e: std::io::Error) -> Refusal {
        let place = match self.content {
            Content::File(p) => p.display().to_string(),
            Content::Bytes(_) => self.name.to_string(),
        };
        Refusal::new(RefusalKind::Unavailable, format!("reading {place}: {e}"))
    }

    /// A reader over the bytes.
    pub fn reader(&self) -> Result<Box<dyn Read + 'a>, Refusal> {
        match self.content {
            Content::Bytes(b) => Ok(Box::new(b)),
            Content::File(p) => Ok(Box::new(std::fs::File::open(p).map_err(|e| self.unreadable(e))?)),
        }
    }

    /// Feed the bytes to `update` in chunks.
    pub fn stream(&self, mut update: impl FnMut(&[u8])) -> Result<(), Refusal> {
        let mut reader = self.reader()?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.unreadable(e)),
            };
            update(&buf[..n]);
        }
    }

    /// SHA-256 of the bytes.
    pub fn sha256(&self) -> Result<[u8; 32], Refusal> {
        let mut h = Sha256::new();
        self.stream(|chunk| h.update(chunk))?;
        Ok(h.finalize().into())
    }

    /// All the bytes in memory, for a scheme that signs the raw bytes; refused beyond `limit`.
    pub fn whole(&self, limit: u64, scheme: &str) -> Result<Cow<'a, [u8]>, Refusal> {
        let path = match self.content {
            Content::Bytes(b) => return Ok(Cow::Borrowed(b)),
            Content::File(p) => p,
        };
        let len = std::fs::metadata(path).map_err(|e| self.unreadable(e))?.len();
        if len > limit {
            return Err(Refusal::new(
                RefusalKind::TooLarge,
                format!(
                    "{} is {len} bytes: {scheme} signs the raw bytes, verified in memory up to {limit} bytes; sign it with minisign's default (prehashed) mode, or sign a checksum file instead",
                    self.name
                ),
            ));
        }
        let mut out = Vec::with_capacity(len as usize);
        self.reader()?
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| self.unreadable(e))?;
        if out.len() as u64 > limit {
            return Err(Refusal::new(
                RefusalKind::TooLarge,
                format!("{} grew beyond {limit} bytes while read", self.name),
            ));
        }
        Ok(Cow::Owned(out))
    }
}
