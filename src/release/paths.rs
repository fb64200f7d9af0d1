//! Lexical checks on archive entry names and symlink targets: what may be written where
//! inside a release, decided before anything touches the filesystem.

use std::ffi::CString;

/// Deepest entry path accepted (each level keeps one directory descriptor open).
pub(crate) const MAX_DEPTH: usize = 256;

/// An archive entry name split into components, none of which is empty, `.` or `..`.
/// An empty component list is the release root itself (e.g. the `./` entry).
pub(crate) type Components = Vec<CString>;

/// Splits an archive entry name into safe components.
///
/// Refuses empty and absolute names and any `..` component; drops `.` components and
/// repeated or trailing slashes.
pub(crate) fn parse_entry_path(raw: &[u8]) -> Result<Components, &'static str> {
    if raw.is_empty() {
        return Err("empty path");
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.contains(&0) {
        return Err("NUL byte in path");
    }
    let mut comps = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err("path contains a `..` component"),
            _ => {
                if comps.len() == MAX_DEPTH {
                    return Err("path is too deep");
                }
                // Cannot fail: NUL bytes were rejected above.
                let c = CString::new(comp).map_err(|_| "NUL byte in path")?;
                comps.push(c);
            }
        }
    }
    Ok(comps)
}

/// Checks a symlink target for a link whose parent directory is `link_parent` (components
/// below the release root) and returns the target to write.
///
/// Only relative targets that stay inside the release are accepted. A target whose `..`
/// components all come first is written unchanged; one with a `..` after a normal
/// component (`x/../y`) is written in its lexically normalised form, so that no later
/// symlink at `x` can turn the `..` into an escape.
pub(crate) fn check_symlink_target(link_parent: &[CString], target: &[u8]) -> Result<Vec<u8>, &'static str> {
    if target.is_empty() {
        return Err("is empty");
    }
    if target.first() == Some(&b'/') {
        return Err("is absolute");
    }
    if target.contains(&0) {
        return Err("contains a NUL byte");
    }
    let depth = link_parent.len();
    let mut ups = 0usize;
    let mut names: Vec<&[u8]> = Vec::new();
    let mut rewritten = false;
    for comp in target.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if names.pop().is_some() {
                    rewritten = true;
                } else if ups < depth {
                    ups += 1;
                } else {
                    return Err("escapes the release directory");
                }
            }
            name => names.push(name),
        }
    }
    if !rewritten {
        return Ok(target.to_vec());
    }
    let mut out: Vec<u8> = Vec::with_capacity(target.len());
    for _ in 0..ups {
        out.extend_from_slice(b"../");
    }
    out.extend_from_slice(&names.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    } else if out.ends_with(b"/") {
        out.pop();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(s: &str) -> Components {
        parse_entry_path(s.as_bytes()).expect("valid path")
    }

    #[test]
    fn entry_paths() {
        assert_eq!(comps("./a//b/./c/").len(), 3);
        assert!(comps("./").is_empty());
        assert_eq!(parse_entry_path(b"/etc/x"), Err("absolute path"));
        assert_eq!(
            parse_entry_path(b"a/../../x"),
            Err("path contains a `..` component")
        );
        assert_eq!(parse_entry_path(b""), Err("empty path"));
        let deep = "a/".repeat(MAX_DEPTH + 1);
        assert_eq!(parse_entry_path(deep.as_bytes()), Err("path is too deep"));
    }

    #[test]
    fn symlink_targets() {
        let parent = comps("lib/sub");
        let ok = |t: &str| {
            check_symlink_target(&parent, t.as_bytes()).map(|v| String::from_utf8(v).unwrap_or_default())
        };
        assert_eq!(ok("../../bin/app"), Ok("../../bin/app".to_string()));
        assert_eq!(ok("x"), Ok("x".to_string()));
        assert_eq!(ok("../../.."), Err("escapes the release directory"));
        assert_eq!(ok("/etc/passwd"), Err("is absolute"));
        assert_eq!(ok("x/../../y"), Ok("../y".to_string()));
        assert_eq!(ok("x/.."), Ok(".".to_string()));
        assert_eq!(ok("x/../../../../y"), Err("escapes the release directory"));
        assert_eq!(check_symlink_target(&[], b"."), Ok(b".".to_vec()));
        assert_eq!(
            check_symlink_target(&[], b".."),
            Err("escapes the release directory")
        );
    }
}
