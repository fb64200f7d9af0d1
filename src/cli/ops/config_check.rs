//! `dewy config check FILE`: the effective settings as TOML, then a probe of the release source.

use std::path::Path;

use crate::config::{self, Sources};

/// `dewy config check FILE`: validate and print the effective settings (exit 78 when bad), then
/// ask the release source for its newest release (exit 1 when it cannot be reached or refuses
/// the credentials). The findings are TOML comments, so the output stays valid TOML.
pub fn config_check(rt: &tokio::runtime::Runtime, file: &Path, app: Option<&str>, offline: bool) -> i32 {
    let app = app
        .map(str::to_string)
        .or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "app".into());
    let sources = Sources {
        config: Some(file.to_path_buf()),
        ..Default::default()
    };
    let settings = match config::load(&app, &sources) {
        Ok(settings) => settings,
        Err(e) => return crate::cli::config_failure(&e),
    };
    match toml::to_string(&settings) {
        Ok(text) => print!("{text}"),
        Err(e) => eprintln!("(cannot print the settings: {e})"),
    }
    if offline {
        return 0;
    }
    let (code, line) = rt.block_on(probe_source(&settings));
    println!("# {line}");
    if code != 0 {
        eprintln!("Error: {line}");
    }
    code
}

/// How long `config check` waits for the source.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Ask the source for its newest release: (exit code, one line for the operator).
async fn probe_source(settings: &config::Settings) -> (i32, String) {
    use crate::registry::CheckError;
    let registry = match crate::cli::open_registry(settings) {
        Ok(r) => r,
        Err(e) => return (1, format!("source {}: {e:#}", settings.registry)),
    };
    let answer = tokio::time::timeout(PROBE_TIMEOUT, registry.latest()).await;
    let source = &settings.registry;
    match answer {
        Err(_) => (1, format!("source {source}: no answer within {PROBE_TIMEOUT:?}")),
        Ok(Ok(release)) => (
            0,
            format!(
                "source {source}: reachable; newest release {} ({})",
                release.version, release.artifact
            ),
        ),
        Ok(Err(CheckError::ArtifactNotFound { version, .. })) => (
            0,
            format!("source {source}: reachable; newest release {version} has no artifact for this host yet"),
        ),
        Ok(Err(CheckError::NoRelease(why))) => (0, format!("source {source}: reachable; {why}")),
        Ok(Err(CheckError::RateLimited { retry_after })) => (
            0,
            format!("source {source}: reachable but rate limited (retry after {retry_after:?})"),
        ),
        Ok(Err(CheckError::Other(e))) => (1, format!("source {source}: cannot be used: {e:#}")),
    }
}
