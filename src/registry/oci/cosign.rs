//! Fetching the cosign signatures of an image: the `sha256-<hex>.sig` tag of the same repository,
//! its manifest, and each simple-signing layer's payload (checked against its digest) with the
//! signature from the layer's annotation. Sizes are bounded: the registry may be hostile.

use anyhow::{anyhow, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::client::Client;
use crate::registry::CheckError;

/// Media type of a cosign simple-signing payload layer.
pub const SIMPLE_SIGNING_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation of a payload layer that holds the base64 signature of the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media types accepted for the signature manifest (cosign writes an OCI or Docker v2 manifest).
const SIGNATURE_MANIFEST_TYPES: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// Largest signature manifest read.
pub const MAX_MANIFEST: usize = 256 << 10;
/// Largest payload layer read.
pub const MAX_PAYLOAD: usize = 64 << 10;
/// Largest signature annotation accepted (base64 text).
pub const MAX_SIGNATURE: usize = 8 << 10;
/// Most signature layers looked at.
pub const MAX_LAYERS: usize = 32;

/// One cosign signature of an image: the simple-signing payload and its base64 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignSignature {
    /// Digest of the payload layer (`sha256:…`), to name it in messages.
    pub layer: String,
    /// The payload bytes, as signed (JSON naming `critical.image.docker-manifest-digest`).
    pub payload: Vec<u8>,
    /// The `dev.cosignproject.cosign/signature` annotation: base64 of the signature.
    pub signature: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// The cosign signature tag of a manifest digest: `sha256:<hex>` → `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> anyhow::Result<String> {
    let hex = sha256_hex(digest).ok_or_else(|| anyhow!("{digest:?} is not a sha256:<64 hex> digest"))?;
    Ok(format!("sha256-{hex}.sig"))
}

fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// The cosign signatures stored for `digest`; empty when the repository has no signature tag
/// for it. A layer that is not a simple-signing payload, or has no signature annotation, is
/// skipped; a payload whose bytes do not match its digest, or any size beyond the bounds, is an
/// error.
pub(super) async fn fetch(client: &Client, digest: &str) -> Result<Vec<CosignSignature>, CheckError> {
    let tag = signature_tag(digest)?;
    let image = client.location().image();
    let what = format!("reading the signature manifest {image}:{tag}");
    let Some((_, body)) = client
        .get_optional(
            &format!("manifests/{tag}"),
            Some(SIGNATURE_MANIFEST_TYPES),
            &what,
            MAX_MANIFEST,
        )
        .await?
    else {
        return Ok(Vec::new());
    };
    let manifest: Manifest =
        serde_json::from_slice(&body).map_err(|e| anyhow!("{what}: not an image manifest: {e}"))?;
    let layers: Vec<&Layer> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_TYPE && l.annotations.contains_key(SIGNATURE_ANNOTATION))
        .collect();
    if layers.len() > MAX_LAYERS {
        return Err(anyhow!(
            "{what}: {} signature layers, more than {MAX_LAYERS}",
            layers.len()
        )
        .into());
    }
    let mut out = Vec::with_capacity(layers.len());
    for layer in layers {
        out.push(payload(client, &image, layer).await?);
    }
    Ok(out)
}

async fn payload(client: &Client, image: &str, layer: &Layer) -> Result<CosignSignature, CheckError> {
    let what = format!("reading the signature payload {image}@{}", layer.digest);
    let Some(want) = sha256_hex(&layer.digest) else {
        return Err(anyhow!("{what}: the layer digest is not sha256:<64 hex>").into());
    };
    if layer.size > MAX_PAYLOAD as u64 {
        return Err(anyhow!("{what}: {} bytes announced, more than {MAX_PAYLOAD}", layer.size).into());
    }
    let signature = layer
        .annotations
        .get(SIGNATURE_ANNOTATION)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if signature.len() > MAX_SIGNATURE {
        return Err(anyhow!("{what}: signature annotation longer than {MAX_SIGNATURE} bytes").into());
    }
    let Some((_, body)) = client
        .get_optional(&format!("blobs/{}", layer.digest), None, &what, MAX_PAYLOAD)
        .await?
    else {
        return Err(anyhow!("{what}: the registry has no such blob (HTTP 404)").into());
    };
    check_digest(&body, want).map_err(|e| anyhow!("{what}: {e}"))?;
    Ok(CosignSignature {
        layer: layer.digest.clone(),
        payload: body,
        signature,
    })
}

fn check_digest(body: &[u8], want_hex: &str) -> anyhow::Result<()> {
    let got = hex::encode(Sha256::digest(body));
    if !got.eq_ignore_ascii_case(want_hex) {
        bail!("the blob's bytes hash to sha256:{got}, not the digest the manifest names");
    }
    Ok(())
}

#[cfg(test)]
#[path = "cosign_tests.rs"]
mod tests;
