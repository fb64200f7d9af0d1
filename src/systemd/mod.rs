//! systemd integration: sd_notify, service directories and credentials.

pub mod manager;
pub mod sd_notify;

use std::path::PathBuf;

/// The first directory systemd created for `StateDirectory=` (`$STATE_DIRECTORY`), if any.
pub fn state_directory() -> Option<PathBuf> {
    first_path("STATE_DIRECTORY")
}

/// The first directory systemd created for `CacheDirectory=` (`$CACHE_DIRECTORY`), if any.
pub fn cache_directory() -> Option<PathBuf> {
    first_path("CACHE_DIRECTORY")
}

/// The first directory systemd created for `RuntimeDirectory=` (`$RUNTIME_DIRECTORY`), if any.
pub fn runtime_directory() -> Option<PathBuf> {
    first_path("RUNTIME_DIRECTORY")
}

/// A runtime file: `$RUNTIME_DIRECTORY/<name>` under systemd, else `<fallback>/<name>` (the
/// metrics sockets).
pub fn runtime_file(fallback: &std::path::Path, name: &str) -> PathBuf {
    runtime_directory()
        .unwrap_or_else(|| fallback.to_path_buf())
        .join(name)
}

fn first_path(var: &str) -> Option<PathBuf> {
    let v = std::env::var_os(var)?;
    let s = v.to_str()?;
    s.split(':').find(|p| !p.is_empty()).map(PathBuf::from)
}

/// Read a secret passed with `LoadCredential=`/`SetCredential=` (`$CREDENTIALS_DIRECTORY/<name>`).
/// Returns `None` when there is no credential of that name; trailing whitespace is trimmed.
pub fn credential(name: &str) -> Option<String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let text = std::fs::read_to_string(PathBuf::from(dir).join(name)).ok()?;
    let t = text.trim_end();
    (!t.is_empty()).then(|| t.to_string())
}

/// True when the process runs as a systemd service (the manager sets `INVOCATION_ID`, and
/// `NOTIFY_SOCKET` for `Type=notify`).
pub fn under_systemd() -> bool {
    std::env::var_os("INVOCATION_ID").is_some() || std::env::var_os("NOTIFY_SOCKET").is_some()
}
