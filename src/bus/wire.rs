//! Types as they travel over D-Bus, and their conversions. A release never travels: the
//! watcher nominates a version by its text and the deployer resolves it from its own source.

use crate::deploy::DeployResult;

/// A deploy result on the wire: `(sss)` = (result, version, detail).
pub type WireResult = (String, String, String);

/// Encode a deploy result.
pub fn encode_result(r: &DeployResult) -> WireResult {
    match r {
        DeployResult::Deployed { version, release } => ("deployed".into(), version.clone(), release.clone()),
        DeployResult::Skipped { version, reason } => ("skipped".into(), version.clone(), reason.clone()),
        DeployResult::Failed { version, error } => ("failed".into(), version.clone(), error.clone()),
    }
}

/// Decode a deploy result.
pub fn decode_result((kind, version, detail): WireResult) -> anyhow::Result<DeployResult> {
    Ok(match kind.as_str() {
        "deployed" => DeployResult::Deployed {
            version,
            release: detail,
        },
        "skipped" => DeployResult::Skipped {
            version,
            reason: detail,
        },
        "failed" => DeployResult::Failed {
            version,
            error: detail,
        },
        other => anyhow::bail!("unknown deploy result {other:?} from the deployer"),
    })
}
