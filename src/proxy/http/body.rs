//! Message bodies between two sockets: framing by length, chunked (checked chunk by chunk, passed
//! through or unwrapped) or until close, with idle timeouts on every wait.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod chunked;
mod pace;

pub use chunked::{Chunked, Piece};
pub use pace::Pace;
use pace::{read_paced, Clock};

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

/// Room made before reading a head (heads are small).
const READ_HEAD: usize = 16 * 1024;

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
    let idle = clock.idle();
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
    let idle = clock.idle();
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
    let idle = clock.idle();
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
