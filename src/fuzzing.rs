//! Entry points for the fuzz targets in `fuzz/`: thin wrappers that feed arbitrary bytes to the
//! parsers dewy runs on input from the network, archives and configuration. Not a stable API.

/// Version tags as a registry lists them or a D-Bus caller sends them: lines of text, each
/// parsed as SemVer; whatever is accepted passes the text rules, and the order is antisymmetric.
pub fn version(data: &[u8]) {
    use crate::registry::version::{check_text, Selector, Version, MAX_LEN};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let selector = Selector::default();
    let mut parsed = Vec::new();
    for line in text.split('\n') {
        let validated = selector.validate(line);
        let plain = Version::parse(line);
        assert_eq!(validated.is_ok(), plain.is_some(), "{line:?}");
        if let Ok(v) = validated {
            assert!(line.len() <= MAX_LEN && check_text(line).is_ok(), "{line:?}");
            assert_eq!(v.raw(), line);
            let _ = (v.is_prerelease(), v.build());
            parsed.push(v);
        } else {
            let err = validated.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
    }
    check_order(&parsed);
    let _ = selector.newest(text.split('\n').map(|t| (t, ())));
}

/// A CalVer format (first line) and tags (the other lines): the format parser never panics,
/// accepted tags pass the text rules, and precedence is a consistent order.
pub fn calver(data: &[u8]) {
    use crate::registry::calver::Format;
    use crate::registry::version::{check_text, Selector};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let Some(format) = lines.next().and_then(|f| Format::parse(f).ok()) else {
        return;
    };
    let selector = Selector {
        calver: Some(format.clone()),
        ..Selector::default()
    };
    let mut parsed = Vec::new();
    for tag in lines {
        let raw = format.parse_tag(tag);
        match selector.validate(tag) {
            Ok(v) => {
                assert!(check_text(tag).is_ok(), "{tag:?}");
                assert!(raw.is_some(), "{tag:?}");
                parsed.push(v);
            }
            Err(_) => assert!(raw.is_none() || check_text(tag).is_err(), "{tag:?}"),
        }
    }
    check_order(&parsed);
}

/// Antisymmetry, reflexivity and transitivity of version precedence over every pair/triple.
fn check_order(versions: &[crate::registry::version::Version]) {
    let n = versions.len().min(12);
    for a in &versions[..n] {
        assert_eq!(a.cmp(a), std::cmp::Ordering::Equal);
        for b in &versions[..n] {
            assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} vs {b}");
            for c in &versions[..n] {
                if a <= b && b <= c {
                    assert!(a <= c, "{a} <= {b} <= {c}");
                }
            }
        }
    }
}
