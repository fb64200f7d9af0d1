//! Release signatures: the keys an operator trusts (`verify = [...]`), checking a release's
//! detached signatures (minisign, signify, cosign blob signatures, OpenPGP) over its artifact or
//! over a checksum file that lists the artifact's SHA-256, cosign signatures of images, and the
//! `min-age` cooldown.
//!
//! Everything here is pure or blocking (file reads and hashing): the deployer calls
//! [`verify_release`] from a blocking task once the artifact is downloaded, with the signatures
//! [`fetch_candidates`] got from the registry; images go through [`verify_image`] with what
//! [`crate::registry::Registry::image_signatures`] returned, before the image is pulled.

mod cooldown;
mod cosign;
mod data;
mod ed25519;
mod key;
mod openpgp;
mod policy;

pub use cooldown::{cooldown_until, Wait};
pub use cosign::{verify_image, verify_image_payload, IMAGE_SIGNATURE_TYPE};
pub use key::{KeyError, KeyKind, TrustedKey};
pub use policy::{fetch_candidates, verify_release, Candidate, Subject};

/// Largest signature file fetched.
pub const MAX_SIGNATURE_SIZE: usize = 64 << 10;
/// Largest checksum file fetched to check a signature over it (as for the plain checksum check).
pub const MAX_CHECKSUM_SIZE: usize = 1 << 20;
/// Largest artifact verified by a scheme that signs the raw bytes rather than a hash of them
/// (signify, and minisign's legacy `-l` signatures): the whole file is read into memory.
pub const MAX_RAW_SIGNED_SIZE: u64 = 64 << 20;

/// Why a release (or an image) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// The source publishes no signature for the artifact or its checksum files.
    NoSignature,
    /// A signature file that is not one dewy reads, or is truncated.
    Malformed,
    /// The artifact is too large for a scheme that signs the raw bytes (signify, legacy minisign).
    TooLarge,
    /// Signed by a key that is not among the trusted ones.
    UntrustedKey,
    /// A signed checksum file that does not list the artifact.
    NotListed,
    /// A signed checksum file that lists another SHA-256 for the artifact.
    ChecksumMismatch,
    /// A signature by a trusted key that does not match the bytes: tampered, or made over another
    /// file (for example another version's artifact of the same name).
    BadSignature,
    /// A valid signature made for another file, version or image digest.
    Replay,
    /// A signature or signed file could not be fetched or read: try again later, this says
    /// nothing about the release.
    Unavailable,
}

impl RefusalKind {
    /// Short name for status and notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::NoSignature => "no signature",
            RefusalKind::Malformed => "malformed signature",
            RefusalKind::TooLarge => "too large for its signature scheme",
            RefusalKind::UntrustedKey => "untrusted key",
            RefusalKind::NotListed => "not listed in the signed checksums",
            RefusalKind::ChecksumMismatch => "checksum mismatch",
            RefusalKind::BadSignature => "bad signature",
            RefusalKind::Replay => "replayed signature",
            RefusalKind::Unavailable => "signature unavailable",
        }
    }
}

/// A release or image refused by the signature policy: what failed, and a message naming the
/// files and keys involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }

    /// Whether the refusal comes from a fetch or read error rather than from the release: the
    /// release should be tried again later, not marked bad.
    pub fn is_transient(&self) -> bool {
        self.kind == RefusalKind::Unavailable
    }
}

/// A release (or image) whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The trusted key that made the signature, as [`TrustedKey::label`] shows it.
    pub key: String,
    /// The signature file (or image signature layer) that verified.
    pub signature: String,
    /// The checksum file the signature covers, which lists the artifact's SHA-256; `None` when
    /// the signature covers the artifact (or the image payload) itself.
    pub via_checksum: Option<String>,
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.via_checksum {
            Some(file) => write!(
                f,
                "{} lists its SHA-256 and is signed by {} ({})",
                file, self.key, self.signature
            ),
            None => write!(f, "signed by {} ({})", self.key, self.signature),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_tools;
#[cfg(test)]
mod tests;
