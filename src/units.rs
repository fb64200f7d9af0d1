//! Value types of config files and flags, used across the crate: durations (`10s`, `30m`, plain seconds) and byte sizes.

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Deserializer};

/// A duration written as `90`, `"90s"`, `"1m30s"`, `"500ms"`, `"2h"` (a bare number is seconds,
/// like the Go Dewy's `--interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl std::str::FromStr for DurationValue {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        parse_duration(s).map(DurationValue)
    }
}

impl fmt::Display for DurationValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// A config value written either as a bare integer or as text with a unit.
enum IntOrText {
    Int(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for IntOrText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IntOrText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number or a string with a unit")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<IntOrText, E> {
                Ok(IntOrText::Int(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<IntOrText, E> {
                u64::try_from(n)
                    .map(IntOrText::Int)
                    .map_err(|_| E::custom(format!("{n} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<IntOrText, E> {
                Ok(IntOrText::Text(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOrText::deserialize(d)? {
            IntOrText::Int(n) => Ok(DurationValue(Duration::from_secs(n))),
            IntOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// What a duration too large to represent parses to: the range check of its key refuses it
/// with the key's name, rather than the parser failing without one.
pub const TOO_LARGE: Duration = Duration::MAX;

/// Parse `90`, `90s`, `1m30s`, `1h`, `500ms`, `2d`. A value beyond what a [`Duration`] holds
/// becomes [`TOO_LARGE`] (never a panic); the range checks in [`super::ranges`] refuse it.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if s.is_empty() {
        bail!("empty duration");
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(s.parse::<u64>().map_or(TOO_LARGE, Duration::from_secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| anyhow!("duration {s:?} lacks a unit (ms, s, m, h, d)"))?;
        if digits == 0 {
            bail!("invalid duration {s:?}");
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| anyhow!("invalid number in duration {s:?}"))?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        let secs = match &rest[digits..unit_end] {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86400.0,
            unit => bail!("unknown unit {unit:?} in duration {s:?} (use ms, s, m, h, d)"),
        };
        let part = Duration::try_from_secs_f64(secs).unwrap_or(TOO_LARGE);
        total = total.checked_add(part).unwrap_or(TOO_LARGE);
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// Format a duration the short way (`30m0s` style is avoided: `30m`, `1h30m`, `10s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// A size in bytes written as `1048576`, `"512MiB"`, `"4GiB"`, `"100MB"`, `"1G"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let n: u64 = t[..split]
            .parse()
            .map_err(|_| anyhow!("invalid size {s:?} (e.g. 512MiB, 4GiB, 1048576)"))?;
        let mult: u64 = match t[split..].trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            unit => bail!("unknown size unit {unit:?} in {s:?}"),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| anyhow!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOrText::deserialize(d)? {
            IntOrText::Int(n) => Ok(ByteSize(n)),
            IntOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        for s in [
            "99999999999999999999d",
            "99999999999999999999",
            "1d99999999999h",
            "18446744073709551615s1s",
            "1e400",
            &"9".repeat(400),
            &format!("{}s", "9".repeat(400)),
        ] {
            match parse_duration(s) {
                // Larger than any range allows (a range check refuses it, naming the key).
                Ok(d) => assert!(d > Duration::from_secs(1000 * 365 * 86400), "{s}: {d:?}"),
                Err(e) => assert!(!e.to_string().is_empty(), "{s}"),
            }
        }
        assert_eq!(parse_duration("18446744073709551615s1s").unwrap(), TOO_LARGE);
        assert_eq!(parse_duration("99999999999999999999").unwrap(), TOO_LARGE);
        // Negative numbers in a file are refused by the parser.
        #[derive(serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            d: DurationValue,
        }
        let e = toml::from_str::<T>("d = -5\n").err().unwrap().to_string();
        assert!(e.contains("negative"), "{e}");
        assert!(toml::from_str::<T>("d = \"1.5s\"\n").is_ok());
    }

    #[test]
    fn sizes() {
        assert_eq!("4GiB".parse::<ByteSize>().unwrap().0, 4 << 30);
        assert_eq!("100MB".parse::<ByteSize>().unwrap().0, 100_000_000);
        assert_eq!("123".parse::<ByteSize>().unwrap().0, 123);
        assert!("12QB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
    }
}
