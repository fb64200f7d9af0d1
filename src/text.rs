//! Text from outside (a registry, a config file, a lock server, another host) made safe to log
//! and show: quoted and escaped, or with its control characters blanked, and bounded.

/// Most characters [`shown`] keeps.
pub const SHOWN_LEN: usize = 128;

/// `text` in a form safe to log and show: quoted, escapes for control characters, cut after
/// [`SHOWN_LEN`] characters.
pub fn shown(text: &str) -> String {
    if text.chars().count() <= SHOWN_LEN {
        return format!("{text:?}");
    }
    let cut: String = text.chars().take(SHOWN_LEN).collect();
    format!("{cut:?}…")
}

/// `text` as it reads, with each control character (a newline, an escape…) made a blank and at
/// most `limit` characters kept: for messages that quote another program's answer.
pub fn blanked(text: &str, limit: usize) -> String {
    text.chars()
        .take(limit)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A URL as it may be shown in a message: its password replaced by `***`. Text that is not a
/// valid URL with a host part (`u:pw@h` parses as the scheme `u` and an opaque path) goes
/// through [`unparsed_url_redacted`].
pub fn url_redacted(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if !url.cannot_be_a_base() => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        _ => unparsed_url_redacted(text),
    }
}

/// Text meant as a URL that did not parse, as it may be shown: where a password in it ends
/// cannot be known, so everything from the scheme's `://` (or the start) to the last `@` is
/// replaced by `***`.
pub fn unparsed_url_redacted(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    match text[start..].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(SHOWN_LEN + 10);
        let s = shown(&long);
        assert!(s.ends_with('…') && s.len() < long.len(), "{s}");
    }

    #[test]
    fn blanked_blanks_and_bounds() {
        assert_eq!(blanked("a\nb\u{1b}[2J", 100), "a b [2J");
        assert_eq!(blanked(&"é".repeat(900), 500).chars().count(), 500);
    }

    #[test]
    fn url_passwords_are_not_shown_parsed_or_not() {
        assert_eq!(url_redacted("etcd://u:pw@h:2379/x"), "etcd://u:***@h:2379/x");
        assert_eq!(url_redacted("https://h/x"), "https://h/x");
        // Unparsable (a space in the port, a bad host): the whole user part goes.
        for bad in [
            "etcd://u:p w@h:2379/x",
            "https://u:p/w@[h/x",
            "u:pw@h",
            "mail://u:a@b@h:x/to",
        ] {
            let shown = url_redacted(bad);
            assert!(
                !shown.contains("pw") && !shown.contains("p w") && !shown.contains("a@b"),
                "{bad} -> {shown}"
            );
            assert!(shown.contains("***@"), "{bad} -> {shown}");
        }
        assert_eq!(unparsed_url_redacted("not a url"), "not a url");
    }
}
