//! Types as they travel over D-Bus, and their conversions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

use crate::deploy::DeployResult;
use crate::registry::Release;

/// A release on the wire: `(ssssx)`; empty `checksum_url` means none, `published_at` is Unix
/// seconds with 0 meaning unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct WireRelease {
    pub version: String,
    pub artifact: String,
    pub artifact_url: String,
    pub checksum_url: String,
    pub published_at: i64,
}

impl From<&Release> for WireRelease {
    fn from(r: &Release) -> Self {
        Self {
            version: r.version.clone(),
            artifact: r.artifact.clone(),
            artifact_url: r.artifact_url.clone(),
            checksum_url: r.checksum_url.clone().unwrap_or_default(),
            published_at: r.published_at.map_or(0, |t| t.timestamp()),
        }
    }
}

impl From<WireRelease> for Release {
    fn from(w: WireRelease) -> Self {
        Self {
            version: w.version,
            artifact: w.artifact,
            artifact_url: w.artifact_url,
            checksum_url: Some(w.checksum_url).filter(|s| !s.is_empty()),
            published_at: (w.published_at != 0)
                .then(|| DateTime::<Utc>::from_timestamp(w.published_at, 0))
                .flatten(),
        }
    }
}

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
