//! Message bodies between two sockets: framing by length, chunked (checked chunk by chunk, passed
//! through or unwrapped) or until close, with idle timeouts on every wait.

use std::io;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (a GET without length, HEAD responses, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// A response read until the backend closes.
    UntilClose,
}

/// Longest chunk-size line or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// Room made before reading a head (heads are small)...
const READ_HEAD: usize = 16 * 1024;
/// ...and while streaming a body.
const READ_CHUNK: usize = 64 * 1024;

/// How long the sender of a body may take: at most `idle` for each wait and, with a rate floor,
/// no more waiting in all than `grace` plus one second per `min_rate` bytes received (a client
/// that trickles a body cannot hold the connection by sending a byte now and then).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    idle: Duration,
    floor: Option<(Duration, u64)>,
}

impl Pace {
    /// Only the wait for each read is bounded.
    pub const fn idle(idle: Duration) -> Self {
        Self { idle, floor: None }
    }

    /// Each wait bounded by `idle`, and the whole body by the rate floor.
    pub const fn floor(idle: Duration, grace: Duration, min_rate: u64) -> Self {
        Self {
            idle,
            floor: Some((grace, min_rate)),
        }
    }
}

/// The waiting a body's sender has used so far under its [`Pace`].
struct Clock {
    pace: Pace,
    waited: Duration,
    received: u64,
}

impl Clock {
    fn new(pace: Pace) -> Self {
        Self {
            pace,
            waited: Duration::ZERO,
            received: 0,
        }
    }

    /// The longest the next read may wait, and whether that bound is the rate floor's.
    fn next_wait(&self) -> (Duration, bool) {
        let Some((grace, min_rate)) = self.pace.floor else {
            return (self.pace.idle, false);
        };
        let earned = Duration::from_secs(self.received / min_rate.max(1));
        let left = (grace + earned).saturating_sub(self.waited);
        if left < self.pace.idle {
            (left, true)
        } else {
            (self.pace.idle, false)
        }
    }

    fn took(&mut self, waited: Duration, bytes: usize) {
        self.waited += waited;
        self.received += bytes as u64;
    }
}

/// Read into `buf` under `clock`; `Ok(0)` is end of stream.
async fn read_paced(from: &mut TcpStream, buf: &mut BytesMut, clock: &mut Clock) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    let (wait, by_floor) = clock.next_wait();
    let started = Instant::now();
    match read_some(from, buf, wait).await {
        Ok(n) => {
            clock.took(started.elapsed(), n);
            Ok(n)
        }
        Err(e) if by_floor && e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the body arrived slower than the minimum rate",
        )),
        Err(e) => Err(e),
    }
}

/// Which side a body transfer failed on.
#[derive(Debug)]
pub enum BodyError {
    /// The sender closed early, timed out, failed, or broke the chunked framing.
    Read(io::Error),
    /// The receiver went away or stopped reading.
    Write(io::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Read(e) => write!(f, "reading the body: {e}"),
            BodyError::Write(e) => write!(f, "sending the body: {e}"),
        }
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Read what is there into `buf`, waiting at most `idle` for it; `Ok(0)` is end of stream.
/// Data already readable is taken without arming a timer.
pub async fn read_some(s: &mut TcpStream, buf: &mut BytesMut, idle: Duration) -> io::Result<usize> {
    buf.reserve(READ_HEAD);
    match s.try_read_buf(buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        r => return r,
    }
    match tokio::time::timeout(idle, s.read_buf(buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no data within the idle timeout",
        )),
    }
}

/// Write all of `data`, waiting at most `idle` each time the receiver does not take it.
pub async fn write_all(s: &mut TcpStream, mut data: &[u8], idle: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match s.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(idle, s.write_all(data)).await {
                    Ok(r) => return r,
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the receiver took nothing within the idle timeout",
                        ))
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copy one body from `from` (whose unread bytes start in `buf`) to `to`. Bytes after the body
/// stay in `buf`. `unchunk` writes only the data of a chunked body (for HTTP/1.0 clients).
/// `pace` bounds the waits for the sender; each wait for the receiver is bounded by its idle time.
pub async fn copy(
    from: &mut TcpStream,
    buf: &mut BytesMut,
    to: &mut TcpStream,
    framing: Framing,
    unchunk: bool,
    pace: Pace,
) -> Result<u64, BodyError> {
    let mut clock = Clock::new(pace);
    let clock = &mut clock;
    match framing {
        Framing::Empty => Ok(0),
        Framing::Length(n) => copy_length(from, buf, to, n, clock).await,
        Framing::UntilClose => copy_until_close(from, buf, to, clock).await,
        Framing::Chunked => copy_chunked(from, buf, to, unchunk, clock).await,
    }
}

async fn copy_length(
    from: &mut TcpStream,
    buf: &mut BytesMut,
    to: &mut TcpStream,
    mut left: u64,
    clock: &mut Clock,
) -> Result<u64, BodyError> {
    let idle = clock.pace.idle;
    let total = left;
    loop {
        let take = (buf.len() as u64).min(left) as usize;
        if take > 0 {
            write_all(to, &buf[..take], idle)
                .await
                .map_err(BodyError::Write)?;
            buf.advance(take);
            left -= take as u64;
        }
        if left == 0 {
            return Ok(total);
        }
        more(from, buf, clock).await?;
    }
}

/// Read more of a body whose end has not come yet: the sender closing now is an error.
async fn more(from: &mut TcpStream, buf: &mut BytesMut, clock: &mut Clock) -> Result<(), BodyError> {
    match read_paced(from, buf, clock).await {
        Ok(0) => Err(BodyError::Read(io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => Ok(()),
        Err(e) => Err(BodyError::Read(e)),
    }
}

async fn copy_until_close(
    from: &mut TcpStream,
    buf: &mut BytesMut,
    to: &mut TcpStream,
    clock: &mut Clock,
) -> Result<u64, BodyError> {
    let idle = clock.pace.idle;
    let mut total = 0u64;
    loop {
        if !buf.is_empty() {
            write_all(to, buf, idle).await.map_err(BodyError::Write)?;
            total += buf.len() as u64;
            buf.clear();
        }
        match read_paced(from, buf, clock).await {
            Ok(0) => return Ok(total),
            Ok(_) => {}
            Err(e) => return Err(BodyError::Read(e)),
        }
    }
}

async fn copy_chunked(
    from: &mut TcpStream,
    buf: &mut BytesMut,
    to: &mut TcpStream,
    unchunk: bool,
    clock: &mut Clock,
) -> Result<u64, BodyError> {
    let idle = clock.pace.idle;
    let mut scan = Chunked::default();
    let mut total = 0u64;
    loop {
        // Walk what is buffered; pass whole pieces through in one write.
        let mut pass = 0;
        let done = loop {
            let piece = scan.next(&buf[pass..]).map_err(BodyError::Read)?;
            match piece {
                Piece::More => break false,
                Piece::Framing(n) | Piece::Done(n) => {
                    // Unwrapping, framing is dropped (`pass` stays 0); passing through, kept.
                    if unchunk {
                        buf.advance(n);
                    } else {
                        pass += n;
                    }
                    if matches!(piece, Piece::Done(_)) {
                        break true;
                    }
                }
                Piece::Data(n) => {
                    total += n as u64;
                    if unchunk {
                        write_all(to, &buf[..n], idle).await.map_err(BodyError::Write)?;
                        buf.advance(n);
                    } else {
                        pass += n;
                    }
                }
            }
        };
        if pass > 0 {
            write_all(to, &buf[..pass], idle)
                .await
                .map_err(BodyError::Write)?;
            buf.advance(pass);
        }
        if done {
            return Ok(total);
        }
        more(from, buf, clock).await?;
    }
}

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
