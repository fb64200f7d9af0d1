//! The chunked transfer coding (RFC 9112 §7.1), parsed strictly and incrementally so that the
//! proxy and the backend cannot disagree about where a message ends.

use std::io;

/// Longest chunk-size line or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Where a chunked body's parser stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
}

/// A strict, incremental chunked-body parser (RFC 9112 §7.1): a size line of hex digits with
/// optional extensions and CRLF, the data and CRLF, then a zero chunk and the trailer section.
/// Bare LF, empty or overlong sizes and control bytes in extensions are refused, so that the
/// proxy and the backend cannot disagree about where a message ends.
#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
}

/// The next piece at the front of the bytes given to [`Chunked::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// `n` bytes of framing (size line, CRLF after data, trailers).
    Framing(usize),
    /// `n` bytes of chunk data.
    Data(usize),
    /// The body ends after these `n` bytes of framing.
    Done(usize),
    /// More bytes are needed.
    More,
}

impl Chunked {
    pub fn next(&mut self, b: &[u8]) -> io::Result<Piece> {
        match self.state {
            State::Size => {
                let Some(line) = line_len(b, MAX_CHUNK_LINE, "chunk size line too long")? else {
                    return Ok(Piece::More);
                };
                let size = chunk_size(&b[..line - 2])?;
                self.state = if size == 0 {
                    State::Trailers(0)
                } else {
                    State::Data(size)
                };
                Ok(Piece::Framing(line))
            }
            State::Data(left) => {
                if b.is_empty() {
                    return Ok(Piece::More);
                }
                let n = (b.len() as u64).min(left) as usize;
                self.state = if n as u64 == left {
                    State::DataEnd
                } else {
                    State::Data(left - n as u64)
                };
                Ok(Piece::Data(n))
            }
            State::DataEnd => {
                if b.len() < 2 {
                    return Ok(Piece::More);
                }
                if &b[..2] != b"\r\n" {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
                self.state = State::Size;
                Ok(Piece::Framing(2))
            }
            State::Trailers(seen) => {
                let Some(line) = line_len(b, MAX_CHUNK_LINE, "trailer line too long")? else {
                    return Ok(Piece::More);
                };
                if line == 2 {
                    self.state = State::Size;
                    return Ok(Piece::Done(2));
                }
                let field = &b[..line - 2];
                let colon = field.iter().position(|c| *c == b':');
                let name_ok = colon.is_some_and(|c| {
                    c > 0 && field[..c].iter().all(|ch| ch.is_ascii_graphic() && *ch != b':')
                });
                if !name_ok || field.iter().any(|c| c.is_ascii_control() && *c != b'\t') {
                    return Err(invalid("malformed trailer field"));
                }
                if seen + line > MAX_TRAILERS {
                    return Err(invalid("trailer section too large"));
                }
                self.state = State::Trailers(seen + line);
                Ok(Piece::Framing(line))
            }
        }
    }
}

/// Length of the CRLF-terminated line at the front of `b` (CRLF included), `None` if incomplete.
fn line_len(b: &[u8], max: usize, too_long: &'static str) -> io::Result<Option<usize>> {
    match b.iter().take(max).position(|c| *c == b'\n') {
        Some(i) if i > 0 && b[i - 1] == b'\r' => Ok(Some(i + 1)),
        Some(_) => Err(invalid("line not ended by CRLF")),
        None if b.len() >= max => Err(invalid(too_long)),
        None => Ok(None),
    }
}

/// The size in a chunk-size line (without its CRLF): 1 to 15 hex digits, then optional
/// whitespace and `;extensions` without control bytes.
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.iter().take_while(|c| c.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(invalid("bad chunk size"));
    }
    let mut size = 0u64;
    for c in &line[..digits] {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        };
        size = size * 16 + u64::from(v);
    }
    let rest = &line[digits..];
    let rest = &rest[rest.iter().take_while(|c| matches!(c, b' ' | b'\t')).count()..];
    let ext_ok =
        rest.is_empty() || (rest[0] == b';' && !rest.iter().any(|c| c.is_ascii_control() && *c != b'\t'));
    if !ext_ok {
        return Err(invalid("bad chunk extension"));
    }
    Ok(size)
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `step` bytes; return (data, framing bytes) or the error.
    fn run(input: &[u8], step: usize) -> io::Result<(Vec<u8>, usize, usize)> {
        let mut c = Chunked::default();
        let mut buf: Vec<u8> = Vec::new();
        let (mut data, mut framing) = (Vec::new(), 0);
        let mut fed = 0;
        loop {
            match c.next(&buf)? {
                Piece::More => {
                    if fed >= input.len() {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Piece::Data(n) => {
                    data.extend_from_slice(&buf[..n]);
                    buf.drain(..n);
                }
                Piece::Framing(n) => {
                    framing += n;
                    buf.drain(..n);
                }
                Piece::Done(n) => {
                    framing += n;
                    buf.drain(..n);
                    let left = buf.len() + input.len() - fed;
                    return Ok((data, framing, left));
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_parse_in_any_split() {
        let body =
            b"4\r\nWiki\r\n5;name=x\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (data, framing, left) = run(body, step).expect("parses");
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.");
            assert_eq!(framing + data.len() + left, body.len());
            assert_eq!(left, 4, "bytes after the body stay");
        }
    }

    #[test]
    fn chunked_framing_errors_are_refused() {
        for bad in [
            &b"\r\n0\r\n\r\n"[..],            // empty size
            b"4\nWiki\r\n0\r\n\r\n",          // bare LF
            b"4\r\nWikiX\r\n0\r\n\r\n",       // data longer than the size
            b"g\r\n",                         // not hex
            b"1000000000000000\r\n",          // 16 digits
            b"4 x\r\nWiki\r\n0\r\n\r\n",      // junk after the size
            b"4;a\x01b\r\nWiki\r\n0\r\n\r\n", // control byte in an extension
            b"0\r\nbad trailer\r\n\r\n",      // no colon
            b"0\r\nX: y\n\r\n",               // bare LF in trailers
        ] {
            assert!(
                run(bad, 3).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(run(&[b'1'; 5000], 512).is_err(), "overlong size line");
    }

    #[test]
    fn sizes_are_hex() {
        assert_eq!(chunk_size(b"ff").ok(), Some(255));
        assert_eq!(chunk_size(b"1A ; ext=\"q\"").ok(), Some(26));
        assert_eq!(chunk_size(b"fffffffffffffff").ok(), Some(0xfff_ffff_ffff_ffff));
    }
}
