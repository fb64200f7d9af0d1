//! Entry points for the fuzz targets in `fuzz/`: thin wrappers that feed arbitrary bytes to the
//! parsers dewy runs on input from the network, archives and configuration. Not a stable API.

/// Config loader: TOML text of one app's file → validated settings, printed back the way
/// `dewy config check` prints them. Must refuse bad input with an error, never panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/etc/dewy/app.toml");
    if let Ok(settings) = crate::config::from_text("app", path, text) {
        let _ = toml::to_string(&settings);
    }
}

#[cfg(test)]
mod tests {
    /// The `config` target's seed corpus, cut at every byte and with single bytes replaced by
    /// characters that matter to TOML and to dewy's values: no panic (the fuzzer goes further).
    #[test]
    fn config_seeds_and_their_simple_mutations_do_not_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config");
        let mut seeds = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/config") {
            let seed = std::fs::read(entry.expect("corpus entry").path()).expect("seed");
            seeds += 1;
            for cut in 0..=seed.len() {
                super::config(&seed[..cut]);
            }
            for i in 0..seed.len() {
                for b in *b"9\"=[,\n" {
                    let mut m = seed.clone();
                    m[i] = b;
                    super::config(&m);
                }
            }
        }
        assert!(seeds >= 4, "{seeds} seeds in {}", dir.display());
    }
}
