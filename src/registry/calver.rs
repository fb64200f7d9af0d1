//! Calendar versioning: formats such as `YYYY.0M.MICRO` (tokens `YYYY`, `YY`, `0Y`, `MM`, `0M`,
//! `WW`, `0W`, `DD`, `0D`, `MICRO`, anything else literal), tags parsed against them, and their
//! precedence (numeric segments left to right, a release above its pre-releases).

use std::cmp::Ordering;
use std::fmt;

/// One piece of a CalVer format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Yyyy,
    Yy,
    ZeroY,
    Mm,
    ZeroM,
    Ww,
    ZeroW,
    Dd,
    ZeroD,
    Micro,
}

impl Token {
    /// Token names, longest first so that `YYYY` wins over `YY`.
    const NAMES: [(&'static str, Token); 10] = [
        ("MICRO", Token::Micro),
        ("YYYY", Token::Yyyy),
        ("YY", Token::Yy),
        ("0Y", Token::ZeroY),
        ("MM", Token::Mm),
        ("0M", Token::ZeroM),
        ("WW", Token::Ww),
        ("0W", Token::ZeroW),
        ("DD", Token::Dd),
        ("0D", Token::ZeroD),
    ];

    /// (fewest digits, most digits, zero-padded, value range).
    fn rule(self) -> (usize, usize, bool, Option<(u64, u64)>) {
        match self {
            Token::Yyyy => (4, 4, true, None),
            Token::Yy => (1, 3, false, None),
            Token::ZeroY => (2, 3, true, None),
            Token::Mm => (1, 2, false, Some((1, 12))),
            Token::ZeroM => (2, 2, true, Some((1, 12))),
            Token::Ww => (1, 2, false, Some((1, 53))),
            Token::ZeroW => (2, 2, true, Some((1, 53))),
            Token::Dd => (1, 2, false, Some((1, 31))),
            Token::ZeroD => (2, 2, true, Some((1, 31))),
            Token::Micro => (1, 20, false, None),
        }
    }

    /// Consume this token's digits from the start of `s`: the value and the rest.
    fn take(self, s: &str) -> Option<(u64, &str)> {
        let (min, max, padded, range) = self.rule();
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        // Longest acceptable run first, so `MM` reads `12` rather than `1`.
        for n in (min..=max.min(digits)).rev() {
            let text = &s[..n];
            if !padded && n > 1 && text.starts_with('0') {
                continue;
            }
            let Ok(value) = text.parse::<u64>() else {
                continue;
            };
            if range.is_some_and(|(lo, hi)| value < lo || value > hi) {
                continue;
            }
            return Some((value, &s[n..]));
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Token(Token),
    Literal(char),
}

/// A parsed CalVer format such as `YYYY.0M.MICRO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    text: String,
    pieces: Vec<Piece>,
}

impl Format {
    /// Parse a format; refused when it has no token at all.
    pub fn parse(text: &str) -> Result<Format, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        'outer: while let Some(c) = rest.chars().next() {
            for (name, token) in Token::NAMES {
                if let Some(after) = rest.strip_prefix(name) {
                    pieces.push(Piece::Token(token));
                    rest = after;
                    continue 'outer;
                }
            }
            if c == '+' || c.is_ascii_digit() || c.is_whitespace() {
                return Err(format!(
                    "invalid calver format \"{text}\": character '{c}' cannot be a separator \
                     (tokens: YYYY, YY, 0Y, MM, 0M, WW, 0W, DD, 0D, MICRO)"
                ));
            }
            pieces.push(Piece::Literal(c));
            rest = &rest[c.len_utf8()..];
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Token(_))) {
            return Err(format!(
                "invalid calver format \"{text}\": it has no token (YYYY, YY, 0Y, MM, 0M, WW, 0W, DD, 0D, MICRO)"
            ));
        }
        Ok(Format {
            text: text.to_string(),
            pieces,
        })
    }

    /// The format as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Parse a tag (`[v]CORE[-pre][+build]`) against this format.
    pub fn parse_tag(&self, tag: &str) -> Option<CalVersion> {
        let text = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        let (text, build) = match text.split_once('+') {
            Some((core, build)) if valid_identifiers(build) => (core, build.to_string()),
            Some(_) => return None,
            None => (text, String::new()),
        };
        let mut rest = text;
        let mut segments = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(c) => rest = rest.strip_prefix(*c)?,
                Piece::Token(t) => {
                    let (value, after) = t.take(rest)?;
                    segments.push(value);
                    rest = after;
                }
            }
        }
        let pre = match rest.strip_prefix('-') {
            None if rest.is_empty() => semver::Prerelease::EMPTY,
            None => return None,
            Some(pre) => {
                if pre.is_empty() {
                    return None;
                }
                semver::Prerelease::new(pre).ok()?
            }
        };
        Some(CalVersion { segments, pre, build })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn valid_identifiers(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// A tag parsed with a CalVer [`Format`].
#[derive(Debug, Clone)]
pub struct CalVersion {
    segments: Vec<u64>,
    pre: semver::Prerelease,
    build: String,
}

impl CalVersion {
    /// The numeric segments, in format order.
    pub fn segments(&self) -> &[u64] {
        &self.segments
    }

    /// Whether the tag has a `-pre` part.
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// The `+build` part (the slot), empty when there is none.
    pub fn build(&self) -> &str {
        &self.build
    }

    /// Precedence: segments numerically (a missing one counts as 0), then release above
    /// pre-release, pre-releases by the SemVer rule; build metadata ignored.
    pub fn cmp_precedence(&self, other: &CalVersion) -> Ordering {
        let len = self.segments.len().max(other.segments.len());
        for i in 0..len {
            let a = self.segments.get(i).copied().unwrap_or(0);
            let b = other.segments.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.pre.cmp(&other.pre),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(s: &str) -> Format {
        Format::parse(s).expect("valid format")
    }

    #[test]
    fn formats_parse_and_refuse() {
        assert_eq!(fmt("YYYY.0M.MICRO").pieces.len(), 5);
        assert!(Format::parse("").is_err());
        let err = Format::parse("v.x").expect_err("no token");
        assert!(err.contains("has no token"), "{err}");
        assert!(Format::parse("YYYY+MM").is_err());
        assert!(Format::parse("YYYY1MM").is_err());
    }

    #[test]
    fn tags_match_tokens() {
        let f = fmt("YYYY.0M.0D");
        let v = f.parse_tag("v2024.03.15").expect("tag");
        assert_eq!(v.segments(), &[2024, 3, 15]);
        assert!(f.parse_tag("2024.3.15").is_none(), "0M needs two digits");
        assert!(f.parse_tag("2024.13.01").is_none(), "month range");
        assert!(f.parse_tag("24.03.15").is_none(), "YYYY needs four digits");
        let g = fmt("YY.MM.MICRO");
        assert_eq!(g.parse_tag("24.12.7").expect("tag").segments(), &[24, 12, 7]);
        assert!(g.parse_tag("24.012.7").is_none());
        let w = fmt("YYYY-0W");
        let x = w.parse_tag("2024-07-rc.1+blue").expect("tag");
        assert!(x.is_prerelease());
        assert_eq!(x.build(), "blue");
        assert!(w.parse_tag("2024-54").is_none());
        assert!(w.parse_tag("latest").is_none());
        assert!(w.parse_tag("2024-07-").is_none());
        assert!(w.parse_tag("2024-07x").is_none());
    }

    #[test]
    fn ordering() {
        let f = fmt("YYYY.MM.MICRO");
        let v = |s: &str| f.parse_tag(s).expect("tag");
        let ordered = [
            "2023.12.9",
            "2024.1.0-alpha",
            "2024.1.0-beta.2",
            "2024.1.0-beta.11",
            "2024.1.0",
            "v2024.1.2",
            "2024.2.0",
            "2024.10.0",
            "2024.10.10",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(v(pair[0]).cmp_precedence(&v(pair[1])), Ordering::Less, "{pair:?}");
        }
        assert_eq!(
            v("2024.1.0+blue").cmp_precedence(&v("2024.1.0+green")),
            Ordering::Equal
        );
    }
}
