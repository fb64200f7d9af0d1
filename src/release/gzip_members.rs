//! Reading a gzip file as gzip(1) does: every concatenated member in turn, each checked
//! against its CRC-32 and length trailer, and zero padding after the last member accepted
//! (block-oriented writers pad their output so); any other trailing data is an error.

use std::io::{self, BufRead, Read};

use flate2::bufread::GzDecoder;

const GZIP_MAGIC: u8 = 0x1f;

/// The decompressed content of all gzip members of a buffered input.
pub(crate) struct GzipMembers<R: BufRead> {
    state: State<R>,
}

enum State<R: BufRead> {
    Member(Box<GzDecoder<R>>),
    Done,
    /// Only while switching from one member to the next.
    Between,
}

impl<R: BufRead> GzipMembers<R> {
    pub(crate) fn new(input: R) -> Self {
        GzipMembers {
            state: State::Member(Box::new(GzDecoder::new(input))),
        }
    }
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let State::Member(dec) = &mut self.state else {
                return Ok(0);
            };
            let n = dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            let State::Member(dec) = std::mem::replace(&mut self.state, State::Between) else {
                return Ok(0);
            };
            let mut rest = dec.into_inner();
            if another_member(&mut rest)? {
                self.state = State::Member(Box::new(GzDecoder::new(rest)));
            } else {
                self.state = State::Done;
                return Ok(0);
            }
        }
    }
}

/// After a member: true when another one follows, false at the end of the input or of
/// its zero padding.
fn another_member<R: BufRead>(input: &mut R) -> io::Result<bool> {
    let first = match input.fill_buf()?.first() {
        None => return Ok(false),
        Some(b) => *b,
    };
    if first == GZIP_MAGIC {
        return Ok(true);
    }
    if first != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "trailing data after the gzip stream",
        ));
    }
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let zeros = buf.iter().take_while(|b| **b == 0).count();
        if zeros < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "non-zero data in the padding after the gzip stream",
            ));
        }
        input.consume(zeros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzipMembers::new(io::BufReader::with_capacity(7, bytes)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn members_and_padding() {
        let mut two = gz(b"hello ");
        two.extend(gz(b"world"));
        assert_eq!(read_all(&two).expect("two members"), b"hello world");
        let mut padded = two.clone();
        padded.extend(vec![0u8; 10_000]);
        assert_eq!(read_all(&padded).expect("zero padding"), b"hello world");
        let mut junk = padded.clone();
        junk.push(1);
        let e = read_all(&junk).expect_err("junk after padding");
        assert!(e.to_string().contains("padding"), "{e}");
        let mut junk = two.clone();
        junk.extend_from_slice(b"garbage");
        assert!(read_all(&junk).is_err());
        let mut bad_crc = gz(b"payload");
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        assert!(read_all(&bad_crc).is_err());
    }
}
