//! Published SHA-256 checksums: finding an artifact's digest in `sha256sum` output, BSD-style
//! `SHA256 (name) = hex` lines, or a file holding a bare digest.

/// Whether `s` is a SHA-256 digest in hex.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A listed file name without `./` prefixes or the `sha256sum` escape marker.
fn clean_name(name: &str) -> &str {
    let mut name = name.trim();
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    name
}

/// `(name, digest)` of one checksum line, if it is one.
fn parse_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    // BSD style: SHA256 (name) = hex
    if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (name, hex) = rest.rsplit_once(") = ")?;
        let hex = hex.trim();
        return is_sha256_hex(hex).then(|| (clean_name(name), hex));
    }
    // GNU style: hex, then "  name" (text) or " *name" (binary); a leading '\' marks escapes.
    let line = line.strip_prefix('\\').unwrap_or(line);
    let (hex, rest) = line.split_once(char::is_whitespace)?;
    if !is_sha256_hex(hex) {
        return None;
    }
    let rest = rest.trim_start();
    let name = rest.strip_prefix('*').unwrap_or(rest);
    Some((clean_name(name), hex))
}

/// The expected SHA-256 (lower-case hex) of `artifact` in a checksum file's text.
///
/// Understands `sha256sum` output (`<hex>  <name>`, `<hex> *<name>`), BSD style
/// `SHA256 (<name>) = <hex>`, and a file holding only a digest (`<artifact>.sha256`). Names
/// may carry a `./` prefix; a listed path whose last component is the artifact also counts
/// when no entry names it exactly.
pub fn parse_expected(text: &str, artifact: &str) -> Option<String> {
    let trimmed = text.trim();
    if is_sha256_hex(trimmed) {
        return Some(trimmed.to_ascii_lowercase());
    }
    let entries: Vec<(&str, &str)> = trimmed.lines().filter_map(parse_line).collect();
    let exact = entries.iter().find(|(name, _)| *name == artifact);
    let by_basename = || {
        entries
            .iter()
            .find(|(name, _)| name.rsplit('/').next() == Some(artifact))
    };
    exact
        .or_else(by_basename)
        .map(|(_, hex)| hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn gnu_text_and_binary_lines() {
        let text = format!("{A}  app_linux_arm64.tar.gz\n{B} *app_linux_amd64.tar.gz\n");
        assert_eq!(
            parse_expected(&text, "app_linux_arm64.tar.gz").as_deref(),
            Some(A)
        );
        assert_eq!(
            parse_expected(&text, "app_linux_amd64.tar.gz"),
            Some(B.to_ascii_lowercase())
        );
        assert_eq!(parse_expected(&text, "app_darwin.tar.gz"), None);
    }

    #[test]
    fn bsd_style_and_dot_slash() {
        let text = format!("SHA256 (./app.zip) = {B}\r\nSHA256 (other) = {A}\r\n");
        assert_eq!(parse_expected(&text, "app.zip"), Some(B.to_ascii_lowercase()));
        let text = format!("{A}  ./dist/app.zip\n");
        assert_eq!(parse_expected(&text, "app.zip").as_deref(), Some(A));
        assert_eq!(parse_expected(&text, "dist/app.zip").as_deref(), Some(A));
    }

    #[test]
    fn bare_digest() {
        assert_eq!(
            parse_expected(&format!("{B}\n"), "anything"),
            Some(B.to_ascii_lowercase())
        );
        assert_eq!(parse_expected("deadbeef\n", "x"), None);
        assert_eq!(parse_expected("", "x"), None);
    }

    #[test]
    fn exact_name_beats_basename_and_junk_is_ignored() {
        let text = format!("# comment\n{A}  sub/app.zip\nnot a line\n{B}  app.zip\n");
        assert_eq!(parse_expected(&text, "app.zip"), Some(B.to_ascii_lowercase()));
        let md5 = "0123456789abcdef0123456789abcdef  app.zip";
        assert_eq!(parse_expected(md5, "app.zip"), None);
    }
}
