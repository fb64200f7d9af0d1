//! The release, asset and upload shapes of the GitHub REST API, as far as dewy reads them.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A release asset to upload.
#[derive(Debug, Clone)]
pub struct NewAsset {
    pub name: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A release as the API returns it (fields dewy reads).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiRelease {
    /// Where assets are uploaded (`https://uploads.github.com/…/assets{?name,label}`).
    #[serde(default)]
    pub upload_url: Option<String>,
    pub tag_name: String,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub prerelease: bool,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub published_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub assets: Vec<ApiAsset>,
}

/// A release asset as the API returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiAsset {
    pub name: String,
    /// API URL of the asset (`…/releases/assets/{id}`).
    pub url: String,
    /// `uploaded` once complete; `open` while an upload is in progress.
    #[serde(default)]
    pub state: Option<String>,
}

impl ApiAsset {
    /// Whether the asset's upload is complete.
    pub fn is_uploaded(&self) -> bool {
        !matches!(self.state.as_deref(), Some(s) if s != "uploaded")
    }
}
