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
