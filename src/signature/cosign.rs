//! cosign's key-based signatures: ECDSA P-256 over the SHA-256 of the signed bytes, published as
//! base64 of the DER signature (`cosign sign-blob --key`, byte for byte what
//! `openssl dgst -sha256 -sign key.pem FILE | base64 -w0` writes). Image signatures sign a
//! simple-signing JSON payload that names the image's manifest digest.

use base64::Engine;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::key::Material;
use super::{Refusal, RefusalKind, TrustedKey, Verified};
use crate::registry::oci::cosign::CosignSignature;

/// `critical.type` of a cosign image signature payload.
pub const IMAGE_SIGNATURE_TYPE: &str = "cosign container image signature";

/// Whether `bytes` look like a cosign signature: base64 text of a DER signature (or of raw
/// `r||s`), or the DER bytes themselves.
pub(super) fn looks_like(bytes: &[u8]) -> bool {
    let base64_text = std::str::from_utf8(bytes).is_ok_and(|t| {
        let t = t.trim();
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    });
    base64_text || bytes.first() == Some(&0x30)
}

/// The signature in a cosign `.sig` file or annotation.
pub(super) fn decode(bytes: &[u8]) -> Result<Signature, String> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    let raw = match text.and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok()) {
        Some(raw) => raw,
        None if bytes.first() == Some(&0x30) => bytes.to_vec(),
        None => return Err("neither base64 text nor a DER signature".into()),
    };
    if raw.len() == 64 {
        return Signature::from_slice(&raw).map_err(|e| format!("not an ECDSA P-256 signature: {e}"));
    }
    Signature::from_der(&raw)
        .map_err(|e| format!("not a DER ECDSA P-256 signature ({} bytes): {e}", raw.len()))
}

/// The trusted cosign keys with their labels.
pub(super) fn keys(keys: &[TrustedKey]) -> Vec<(&VerifyingKey, &str)> {
    keys.iter()
        .filter_map(|k| match &k.material {
            Material::Cosign(v) => Some((v, k.label())),
            _ => None,
        })
        .collect()
}

/// The label of the first key whose signature `sig` is over a message of SHA-256 `digest`.
pub(super) fn verify_digest<'k>(
    keys: &[(&VerifyingKey, &'k str)],
    digest: &[u8; 32],
    sig: &Signature,
) -> Option<&'k str> {
    // Accept both forms of s: OpenSSL and cosign's Go library do not normalize it.
    let normalized = sig.normalize_s();
    keys.iter().find_map(|(key, label)| {
        let ok = key.verify_prehash(digest, sig).is_ok()
            || normalized.is_some_and(|n| key.verify_prehash(digest, &n).is_ok());
        ok.then_some(*label)
    })
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    #[serde(rename = "type")]
    typ: String,
    image: ImageRef,
}

#[derive(Deserialize)]
struct ImageRef {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Check one cosign image signature: `signature_b64` (the layer's
/// `dev.cosignproject.cosign/signature` annotation) must be a trusted cosign key's signature of
/// `payload`, a simple-signing payload of type [`IMAGE_SIGNATURE_TYPE`] whose
/// `critical.image.docker-manifest-digest` is `digest`, the manifest dewy is about to run.
pub fn verify_image_payload(
    keys: &[TrustedKey],
    payload: &[u8],
    signature_b64: &str,
    digest: &str,
) -> Result<Verified, Refusal> {
    let trusted = self::keys(keys);
    if trusted.is_empty() {
        return Err(Refusal::new(
            RefusalKind::UntrustedKey,
            "image signatures are cosign signatures and no cosign key is trusted (verify = [\"cosign:/path/to/cosign.pub\"])",
        ));
    }
    let sig = decode(signature_b64.as_bytes()).map_err(|e| {
        Refusal::new(
            RefusalKind::Malformed,
            format!("truncated or malformed image signature: {e}"),
        )
    })?;
    let hash: [u8; 32] = Sha256::digest(payload).into();
    let Some(label) = verify_digest(&trusted, &hash, &sig) else {
        let labels: Vec<&str> = trusted.iter().map(|(_, l)| *l).collect();
        return Err(Refusal::new(
            RefusalKind::BadSignature,
            format!(
                "the image signature does not verify with any trusted cosign key ({}): signed by another key, or the payload was altered",
                labels.join(", ")
            ),
        ));
    };
    let parsed: Payload = serde_json::from_slice(payload).map_err(|e| {
        Refusal::new(
            RefusalKind::Malformed,
            format!("the payload signed by {label} is not a cosign simple-signing payload: {e}"),
        )
    })?;
    if parsed.critical.typ != IMAGE_SIGNATURE_TYPE {
        return Err(Refusal::new(
            RefusalKind::Malformed,
            format!(
                "the payload signed by {label} has type {:?}, not {IMAGE_SIGNATURE_TYPE:?}",
                parsed.critical.typ
            ),
        ));
    }
    if parsed.critical.image.digest != digest {
        return Err(Refusal::new(
            RefusalKind::Replay,
            format!(
                "the signature by {label} is for image {}, not {digest}: a signature replayed from another image",
                parsed.critical.image.digest
            ),
        ));
    }
    Ok(Verified {
        key: label.to_string(),
        signature: String::new(),
        via_checksum: None,
    })
}

/// Check the cosign signatures stored for image `digest` (as
/// [`crate::registry::Registry::image_signatures`] returns them): any one verifying is enough.
pub fn verify_image(
    keys: &[TrustedKey],
    image: &str,
    digest: &str,
    signatures: &[CosignSignature],
) -> Result<Verified, Refusal> {
    if signatures.is_empty() {
        return Err(Refusal::new(
            RefusalKind::NoSignature,
            format!(
                "{image}@{digest} has no cosign signature (no tag {})",
                sig_tag(digest)
            ),
        ));
    }
    let mut refusals = Vec::new();
    for s in signatures {
        match verify_image_payload(keys, &s.payload, &s.signature, digest) {
            Ok(v) => {
                return Ok(Verified {
                    signature: format!("{} layer {}", sig_tag(digest), s.layer),
                    ..v
                })
            }
            Err(r) => refusals.push((format!("layer {}", s.layer), r)),
        }
    }
    Err(super::policy::combine(&format!("{image}@{digest}"), refusals))
}

fn sig_tag(digest: &str) -> String {
    crate::registry::oci::cosign::signature_tag(digest).unwrap_or_else(|_| format!("{digest}.sig"))
}
