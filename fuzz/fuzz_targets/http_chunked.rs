//! The proxy's chunked-body decoder on arbitrary bytes (the first byte sets how many bytes each
//! read delivers): the result does not depend on how the bytes arrive, and matches a plain
//! whole-buffer decoder written from RFC 9112 §7.1 with the proxy's documented limits.
#![no_main]

use dewy::fuzzing::{http_chunked, Decoded};
use libfuzzer_sys::fuzz_target;

/// Longest size line and trailer line, and largest trailer section, the proxy takes.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Body(Decoded),
    Incomplete,
    Refused,
}

fn outcome(r: Result<Option<Decoded>, String>) -> Outcome {
    match r {
        Ok(Some(d)) => Outcome::Body(d),
        Ok(None) => Outcome::Incomplete,
        Err(_) => Outcome::Refused,
    }
}

/// The line at `at` without its CRLF and the offset after it; `Err` when refused.
fn line(b: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ()> {
    let rest = &b[at..];
    match rest.iter().position(|c| *c == b'\n') {
        Some(i) if i + 1 > MAX_LINE => Err(()),
        Some(i) if i > 0 && rest[i - 1] == b'\r' => Ok(Some((&rest[..i - 1], at + i + 1))),
        Some(_) => Err(()),
        None if rest.len() >= MAX_LINE => Err(()),
        None => Ok(None),
    }
}

fn reference(b: &[u8]) -> Outcome {
    match decode(b) {
        Ok(Some(d)) => Outcome::Body(d),
        Ok(None) => Outcome::Incomplete,
        Err(()) => Outcome::Refused,
    }
}

fn decode(b: &[u8]) -> Result<Option<Decoded>, ()> {
    let mut at = 0;
    let mut data = Vec::new();
    loop {
        let Some((size_line, next)) = line(b, at)? else {
            return Ok(None);
        };
        let digits = size_line.iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 15 {
            return Err(());
        }
        let size = u64::from_str_radix(std::str::from_utf8(&size_line[..digits]).map_err(|_| ())?, 16)
            .map_err(|_| ())?;
        let ext = &size_line[digits..];
        let ext = &ext[ext.iter().take_while(|c| **c == b' ' || **c == b'\t').count()..];
        if !ext.is_empty() && (ext[0] != b';' || ext.iter().any(|c| c.is_ascii_control() && *c != b'\t')) {
            return Err(());
        }
        at = next;
        if size == 0 {
            break;
        }
        let left = (b.len() - at) as u64;
        if left < size {
            return Ok(None);
        }
        let end = at + size as usize;
        data.extend_from_slice(&b[at..end]);
        at = end;
        match b.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            Some(_) => return Err(()),
            // The two bytes after the data are judged together.
            None => return Ok(None),
        }
    }
    let mut trailers = 0;
    loop {
        let Some((field, next)) = line(b, at)? else {
            return Ok(None);
        };
        if field.is_empty() {
            return Ok(Some(Decoded { data, len: next }));
        }
        let Some(colon) = field.iter().position(|c| *c == b':') else {
            return Err(());
        };
        if colon == 0
            || !field[..colon].iter().all(|c| c.is_ascii_graphic())
            || field.iter().any(|c| c.is_ascii_control() && *c != b'\t')
        {
            return Err(());
        }
        trailers += next - at;
        if trailers > MAX_TRAILERS {
            return Err(());
        }
        at = next;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let whole = outcome(http_chunked(body, body.len()));
    assert_eq!(outcome(http_chunked(body, 1)), whole, "byte by byte");
    assert_eq!(
        outcome(http_chunked(body, usize::from(step))),
        whole,
        "{step} at a time"
    );
    assert_eq!(reference(body), whole, "against the reference decoder");
    if let Outcome::Body(d) = &whole {
        assert!(d.len <= body.len() && d.data.len() < d.len);
    }
});
