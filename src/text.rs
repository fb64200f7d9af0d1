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
}
