//! Version rules: SemVer tags (or CalVer with a configured format) with an optional `v` prefix,
//! precedence, and the newest-version selector (pre-release opt-in, blue/green slot by build
//! metadata).

use std::cmp::Ordering;
use std::fmt;

use super::calver::{CalVersion, Format};

/// The longest version text accepted anywhere (D-Bus, CLI, registry answers), in bytes.
pub const MAX_LEN: usize = 128;

/// Why a text is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version is empty")]
    Empty,
    #[error("version is {0} bytes long; at most {MAX_LEN} are allowed")]
    TooLong(usize),
    #[error("version {0} holds a control or whitespace character")]
    BadCharacter(String),
    #[error("version {shown} is not {grammar}")]
    Grammar { shown: String, grammar: String },
}

pub use crate::text::shown;

/// The checks every version text passes before any grammar: not empty, at most [`MAX_LEN`]
/// bytes, no control or whitespace character.
pub fn check_text(text: &str) -> Result<(), VersionError> {
    if text.is_empty() {
        return Err(VersionError::Empty);
    }
    if text.len() > MAX_LEN {
        return Err(VersionError::TooLong(text.len()));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(VersionError::BadCharacter(shown(text)));
    }
    Ok(())
}

/// A release version parsed from a tag such as `v1.2.3-rc.1+blue`.
///
/// Ordering follows SemVer 2.0 precedence (or CalVer precedence): build metadata is ignored, so
/// `1.0.0+blue` and `1.0.0+green` compare equal.
#[derive(Debug, Clone)]
pub struct Version {
    raw: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Semver(semver::Version),
    Calver(CalVersion),
}

impl Version {
    /// Parse a tag: SemVer 2.0, optionally prefixed by `v` or `V`. `None` when it is not a version.
    pub fn parse(tag: &str) -> Option<Version> {
        check_text(tag).ok()?;
        let text = tag
            .strip_prefix('v')
            .or_else(|| tag.strip_prefix('V'))
            .unwrap_or(tag);
        let semver = semver::Version::parse(text).ok()?;
        Some(Version {
            raw: tag.to_string(),
            kind: Kind::Semver(semver),
        })
    }

    /// Parse a tag with the CalVer `format`, or as SemVer when there is none.
    pub fn parse_with(tag: &str, calver: Option<&Format>) -> Option<Version> {
        match calver {
            None => Version::parse(tag),
            Some(format) if check_text(tag).is_ok() => Some(Version {
                raw: tag.to_string(),
                kind: Kind::Calver(format.parse_tag(tag)?),
            }),
            Some(_) => None,
        }
    }

    /// The tag exactly as published.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The parsed SemVer value (`None` for a CalVer version).
    pub fn semver(&self) -> Option<&semver::Version> {
        match &self.kind {
            Kind::Semver(v) => Some(v),
            Kind::Calver(_) => None,
        }
    }

    /// Whether the version has a pre-release part (`-rc.1`).
    pub fn is_prerelease(&self) -> bool {
        match &self.kind {
            Kind::Semver(v) => !v.pre.is_empty(),
            Kind::Calver(v) => v.is_prerelease(),
        }
    }

    /// The build metadata (`blue` in `v1.2.3+blue`), empty when there is none.
    pub fn build(&self) -> &str {
        match &self.kind {
            Kind::Semver(v) => v.build.as_str(),
            Kind::Calver(v) => v.build(),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.kind, &other.kind) {
            (Kind::Semver(a), Kind::Semver(b)) => a.cmp_precedence(b),
            (Kind::Calver(a), Kind::Calver(b)) => a.cmp_precedence(b),
            // Never mixed within one selector; keep the order total anyway.
            (Kind::Semver(_), Kind::Calver(_)) => Ordering::Less,
            (Kind::Calver(_), Kind::Semver(_)) => Ordering::Greater,
        }
    }
}

/// Which versions a source may offer: pre-releases only on request, and with a slot only the
/// versions whose build metadata names that slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Accept versions with a pre-release part.
    pub prerelease: bool,
    /// Accept only versions whose build metadata equals this slot (`blue` for `v1.2.3+blue`).
    pub slot: Option<String>,
    /// Parse tags with this CalVer format instead of as SemVer.
    pub calver: Option<Format>,
}

impl Selector {
    /// Parse a tag by this selector's version scheme (SemVer, or CalVer when configured).
    pub fn parse(&self, tag: &str) -> Option<Version> {
        Version::parse_with(tag, self.calver.as_ref())
    }

    /// The grammar versions must follow, for messages (`SemVer`, `CalVer YYYY.0M.MICRO`).
    pub fn grammar(&self) -> String {
        match &self.calver {
            Some(format) => format!("CalVer {format}"),
            None => "SemVer".to_string(),
        }
    }

    /// Parse a version given by someone else (a D-Bus caller, the command line, a registry
    /// answer): the text checks of [`check_text`], then this selector's grammar.
    pub fn validate(&self, tag: &str) -> Result<Version, VersionError> {
        check_text(tag)?;
        self.parse(tag).ok_or_else(|| VersionError::Grammar {
            shown: shown(tag),
            grammar: format!("a {} version", self.grammar()),
        })
    }

    /// Whether a version passes the pre-release and slot rules.
    pub fn accepts(&self, version: &Version) -> bool {
        if version.is_prerelease() && !self.prerelease {
            return false;
        }
        match &self.slot {
            Some(slot) => version.build() == slot,
            None => true,
        }
    }

    /// The highest accepted version among `(tag, item)` pairs. Tags that are not versions are
    /// ignored; on equal precedence the first one seen wins. With a slot this is the newest
    /// version of that slot, even when another slot has a newer one.
    pub fn newest<'a, T>(&self, items: impl IntoIterator<Item = (&'a str, T)>) -> Option<(Version, T)> {
        let mut best: Option<(Version, T)> = None;
        for (tag, item) in items {
            let Some(version) = self.parse(tag) else {
                continue;
            };
            if !self.accepts(&version) {
                continue;
            }
            let newer = match &best {
                Some((current, _)) => version > *current,
                None => true,
            };
            if newer {
                best = Some((version, item));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(tag: &str) -> Version {
        Version::parse(tag).expect("valid version")
    }

    #[test]
    fn parses_with_and_without_prefix() {
        assert_eq!(v("v1.2.3").semver(), Some(&semver::Version::new(1, 2, 3)));
        assert_eq!(v("V1.2.3").raw(), "V1.2.3");
        assert_eq!(v("1.2.3").semver(), Some(&semver::Version::new(1, 2, 3)));
        assert!(Version::parse("latest").is_none());
        assert!(Version::parse("v1.2").is_none());
        assert!(Version::parse("vv1.2.3").is_none());
        assert!(Version::parse("").is_none());
    }

    #[test]
    fn prerelease_and_build() {
        let x = v("v1.2.3-rc.1+blue");
        assert!(x.is_prerelease());
        assert_eq!(x.build(), "blue");
        assert!(!v("v1.2.3+blue").is_prerelease());
        assert_eq!(v("v1.2.3").build(), "");
    }

    #[test]
    fn semver_rule_11_ordering() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "v1.0.1",
            "1.1.0",
            "v2.0.0",
            "10.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn build_metadata_ignored_for_order() {
        assert_eq!(v("v1.0.0+blue"), v("1.0.0+green"));
        assert_eq!(v("v1.0.0+blue").cmp(&v("1.0.0")), Ordering::Equal);
    }

    #[test]
    fn newest_skips_prereleases_unless_asked() {
        let tags = ["v1.0.0", "v1.1.0-rc.1", "latest", "v0.9.0"];
        let stable = Selector::default();
        let (ver, idx) = stable.newest(tags.iter().map(|t| (*t, *t))).expect("found");
        assert_eq!(ver.raw(), "v1.0.0");
        assert_eq!(idx, "v1.0.0");
        let pre = Selector {
            prerelease: true,
            ..Selector::default()
        };
        let (ver, _) = pre.newest(tags.iter().map(|t| (*t, ()))).expect("found");
        assert_eq!(ver.raw(), "v1.1.0-rc.1");
    }

    #[test]
    fn newest_of_slot_not_frozen_by_other_slot() {
        let tags = ["v1.3.0+green", "v1.2.0+blue", "v1.1.0+blue", "v1.4.0"];
        let blue = Selector {
            prerelease: false,
            slot: Some("blue".into()),
            ..Selector::default()
        };
        let (ver, _) = blue.newest(tags.iter().map(|t| (*t, ()))).expect("found");
        assert_eq!(ver.raw(), "v1.2.0+blue");
        let red = Selector {
            prerelease: false,
            slot: Some("red".into()),
            ..Selector::default()
        };
        assert!(red.newest(tags.iter().map(|t| (*t, ()))).is_none());
        let any = Selector::default();
        let (ver, _) = any.newest(tags.iter().map(|t| (*t, ()))).expect("found");
        assert_eq!(ver.raw(), "v1.4.0");
    }

    #[test]
    fn ties_go_to_first_seen() {
        let tags = [("v1.0.0+b", 1), ("v1.0.0+a", 2), ("1.0.0", 3)];
        let (ver, item) = Selector::default().newest(tags).expect("found");
        assert_eq!(ver.raw(), "v1.0.0+b");
        assert_eq!(item, 1);
    }

    #[test]
    fn calver_selector_orders_numerically_and_honours_slots() {
        let calver = Some(Format::parse("YYYY.0M.MICRO").expect("format"));
        let tags = [
            "2024.09.3",
            "v2024.10.1",
            "2024.10.2-rc.1",
            "v1.2.3",
            "2024.10.0+blue",
        ];
        let stable = Selector {
            calver: calver.clone(),
            ..Selector::default()
        };
        let (ver, _) = stable.newest(tags.iter().map(|t| (*t, ()))).expect("found");
        assert_eq!(ver.raw(), "v2024.10.1");
        let pre = Selector {
            prerelease: true,
            calver: calver.clone(),
            ..Selector::default()
        };
        let (ver, _) = pre.newest(tags.iter().map(|t| (*t, ()))).expect("found");
        assert_eq!(ver.raw(), "2024.10.2-rc.1");
        let blue = Selector {
            slot: Some("blue".into()),
            calver,
            ..Selector::default()
        };
        let (ver, _) = blue.newest(tags.iter().map(|t| (*t, ()))).expect("found");
        assert_eq!(ver.raw(), "2024.10.0+blue");
    }

    #[test]
    fn hostile_text_is_refused_before_any_grammar() {
        let sel = Selector::default();
        assert_eq!(sel.validate(""), Err(VersionError::Empty));
        for bad in [
            "v1.0.0\n",
            "v1.0.0\u{1b}[31m",
            "v1.0.0 ",
            "\tv1",
            "v1.0.0\0",
            "v1.0.0\u{85}",
        ] {
            let err = sel.validate(bad).expect_err(bad);
            assert!(matches!(err, VersionError::BadCharacter(_)), "{bad:?}: {err}");
            assert!(!err.to_string().chars().any(char::is_control), "{err}");
            assert!(Version::parse(bad).is_none(), "{bad:?}");
        }
        let long = format!("1.0.0-{}", "a".repeat(MAX_LEN));
        assert!(
            semver::Version::parse(&long).is_ok(),
            "the semver crate alone takes it"
        );
        assert_eq!(sel.validate(&long), Err(VersionError::TooLong(long.len())));
        assert!(Version::parse(&long).is_none());
        let edge = format!("1.0.0-{}", "a".repeat(MAX_LEN - 6));
        assert_eq!(edge.len(), MAX_LEN);
        assert!(sel.validate(&edge).is_ok());
        let err = sel.validate("latest").expect_err("grammar").to_string();
        assert_eq!(err, "version \"latest\" is not a SemVer version");
        assert_eq!(sel.validate("v1.2.3+blue").expect("ok").raw(), "v1.2.3+blue");
    }

    #[test]
    fn calver_grammar_is_enforced_with_the_same_text_rules() {
        let sel = Selector {
            calver: Some(Format::parse("YYYY.0M.MICRO").expect("format")),
            ..Selector::default()
        };
        assert!(sel.validate("2024.10.3").is_ok());
        let err = sel
            .validate("v1.2.3")
            .expect_err("semver under calver")
            .to_string();
        assert!(err.contains("CalVer YYYY.0M.MICRO"), "{err}");
        assert!(sel.validate("2024.10.3\r").is_err());
        let long = format!("2024.10.{}", "1".repeat(MAX_LEN));
        assert_eq!(sel.validate(&long), Err(VersionError::TooLong(long.len())));
        // A format whose literal is a control character still cannot let one through.
        let odd = Selector {
            calver: Some(Format::parse("YYYY\u{7}MM").expect("format")),
            ..Selector::default()
        };
        assert!(odd.validate("2024\u{7}10").is_err());
    }

    #[test]
    fn empty_input() {
        let none: Vec<(&str, ())> = Vec::new();
        assert!(Selector::default().newest(none).is_none());
    }
}
