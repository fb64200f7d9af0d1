//! This host's name, as notifications, shipping reports, fleet locks and telemetry give it.

/// The machine's hostname (`gethostname(2)`: the units' `ProcSubset=pid` hides
/// `/proc/sys/kernel/hostname`), or `localhost` when it has none.
pub fn name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
