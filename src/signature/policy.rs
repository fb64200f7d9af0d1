//! The release policy: with trusted keys set, a release is deployed only when one of the
//! signatures it publishes verifies with one of them, over the artifact itself or over a checksum
//! file that lists the artifact's SHA-256. Any one valid signature by any trusted key is enough
//! (several keys allow rotation); otherwise the refusal names what failed, file by file.

use std::cell::OnceCell;
use std::path::Path;

use pgp::composed::SignedPublicKey;

use super::data::Signed;
use super::ed25519::{self, Expect, Framing};
use super::key::{EdKey, KeyKind, Material};
use super::{cosign, openpgp, Refusal, RefusalKind, TrustedKey, Verified};
use super::{MAX_CHECKSUM_SIZE, MAX_SIGNATURE_SIZE};
use crate::registry::{Registry, Release};

/// One signature the release publishes, as fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The signature's file name (`app.tar.gz.minisig`).
    pub name: String,
    /// The signature file's bytes, or why they could not be fetched.
    pub signature: Result<Vec<u8>, String>,
    /// The file name it signs.
    pub signs: String,
    /// The signed checksum file's bytes (or why they could not be fetched); `None` when the
    /// signature signs the artifact.
    pub checksum: Option<Result<Vec<u8>, String>>,
}

/// The release being checked: its version, and the artifact as downloaded.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The release version (`v1.2.3`), matched against a minisign trusted comment's `version:`.
    pub version: &'a str,
    /// The artifact's file name in the release.
    pub artifact: &'a str,
    /// The downloaded artifact (read in a stream; not modified).
    pub path: &'a Path,
}

/// Fetch each signature `release` publishes and, for a signature of a checksum file, that file
/// (each bounded in size). A fetch error is kept in the candidate: [`verify_release`] reports it
/// as [`RefusalKind::Unavailable`] unless another signature verifies.
pub async fn fetch_candidates(registry: &dyn Registry, release: &Release) -> Vec<Candidate> {
    let mut out = Vec::with_capacity(release.signatures.len());
    for asset in &release.signatures {
        let signature = crate::artifact::fetch_small(registry, &asset.url, MAX_SIGNATURE_SIZE)
            .await
            .map_err(|e| format!("{e:#}"));
        let checksum = if asset.signs == release.artifact {
            None
        } else {
            Some(
                crate::artifact::fetch_small(registry, &asset.signs_url, MAX_CHECKSUM_SIZE)
                    .await
                    .map_err(|e| format!("{e:#}")),
            )
        };
        out.push(Candidate {
            name: asset.name.clone(),
            signature,
            signs: asset.signs.clone(),
            checksum,
        });
    }
    out
}

/// The trusted keys sorted by scheme, each with its label.
struct Keyring<'k> {
    minisign: Vec<(&'k EdKey, &'k str)>,
    signify: Vec<(&'k EdKey, &'k str)>,
    openpgp: Vec<(&'k SignedPublicKey, &'k str)>,
    all: &'k [TrustedKey],
}

impl<'k> Keyring<'k> {
    fn new(keys: &'k [TrustedKey]) -> Keyring<'k> {
        let mut ring = Keyring {
            minisign: Vec::new(),
            signify: Vec::new(),
            openpgp: Vec::new(),
            all: keys,
        };
        for key in keys {
            match &key.material {
                Material::Minisign(k) => ring.minisign.push((k, key.label())),
                Material::Signify(k) => ring.signify.push((k, key.label())),
                Material::OpenPgp(certs) => ring.openpgp.extend(certs.iter().map(|c| (c, key.label()))),
                Material::Cosign(_) => {}
            }
        }
        ring
    }

    fn has(&self, kind: KeyKind) -> bool {
        self.all.iter().any(|k| k.kind() == kind)
    }
}

fn no_key(kind: KeyKind) -> Refusal {
    Refusal::new(
        RefusalKind::UntrustedKey,
        format!("a {kind} signature, and no {kind} key is trusted"),
    )
}

/// Check `data` against one signature file; the label of the key that made it.
fn check<'k>(
    ring: &Keyring<'k>,
    name: &str,
    sig: &[u8],
    data: Signed,
    version: &str,
) -> Result<&'k str, Refusal> {
    if sig.is_empty() {
        return Err(Refusal::new(RefusalKind::Malformed, "empty signature file"));
    }
    let text = std::str::from_utf8(sig).ok();
    if let Some(framing) = text.and_then(|t| ed25519::framing(t, name)) {
        let text = text.unwrap_or_default();
        return match framing {
            Framing::Minisign if ring.has(KeyKind::Minisign) => {
                let expect = Expect {
                    file: data.name,
                    version,
                };
                ed25519::verify_minisign(&ring.minisign, text, data, &expect)
            }
            Framing::Minisign => Err(no_key(KeyKind::Minisign)),
            Framing::Signify if ring.has(KeyKind::Signify) => {
                ed25519::verify_signify(&ring.signify, text, data)
            }
            Framing::Signify => Err(no_key(KeyKind::Signify)),
        };
    }
    if openpgp::looks_like(sig) {
        if !ring.has(KeyKind::OpenPgp) {
            return Err(no_key(KeyKind::OpenPgp));
        }
        return openpgp::verify(&ring.openpgp, sig, data);
    }
    if cosign::looks_like(sig) {
        let keys = cosign::keys(ring.all);
        if keys.is_empty() {
            return Err(no_key(KeyKind::Cosign));
        }
        let parsed = cosign::decode(sig).map_err(|e| {
            Refusal::new(
                RefusalKind::Malformed,
                format!("truncated or malformed cosign signature: {e}"),
            )
        })?;
        let hash = data.sha256()?;
        return cosign::verify_digest(&keys, &hash, &parsed).ok_or_else(|| {
            let labels: Vec<&str> = keys.iter().map(|(_, l)| *l).collect();
            Refusal::new(
                RefusalKind::BadSignature,
                format!(
                    "cosign signature does not verify over {} with any trusted cosign key ({}): signed by another key, or the file was altered",
                    data.name,
                    labels.join(", ")
                ),
            )
        });
    }
    Err(Refusal::new(
        RefusalKind::Malformed,
        "not a minisign, signify, OpenPGP or cosign signature (or truncated)",
    ))
}

/// Decide whether the release is signed by a trusted key. `candidates` are the signatures it
/// publishes ([`fetch_candidates`]); the artifact at `subject.path` must be the downloaded file.
/// Blocking: it reads and hashes the artifact (run it with `spawn_blocking`).
pub fn verify_release(
    keys: &[TrustedKey],
    subject: &Subject,
    candidates: &[Candidate],
) -> Result<Verified, Refusal> {
    if candidates.is_empty() {
        let suffixes = crate::registry::platform::SIGNATURE_SUFFIXES.join(", ");
        return Err(Refusal::new(
            RefusalKind::NoSignature,
            format!(
                "release {} publishes no signature for {} (looked for {}{{{suffixes}}} and the same for its checksum files)",
                subject.version, subject.artifact, subject.artifact
            ),
        ));
    }
    let ring = Keyring::new(keys);
    let artifact_sha: OnceCell<Result<[u8; 32], Refusal>> = OnceCell::new();
    let artifact = Signed::file(subject.artifact, subject.path);
    let mut refusals = Vec::new();
    for c in candidates {
        let sig = match &c.signature {
            Ok(sig) => sig,
            Err(e) => {
                refusals.push((
                    c.name.clone(),
                    Refusal::new(RefusalKind::Unavailable, format!("not fetched: {e}")),
                ));
                continue;
            }
        };
        let outcome = match &c.checksum {
            None if c.signs == subject.artifact => {
                check(&ring, &c.name, sig, artifact, subject.version).map(|label| Verified {
                    key: label.to_string(),
                    signature: c.name.clone(),
                    via_checksum: None,
                })
            }
            None => Err(Refusal::new(
                RefusalKind::Unavailable,
                format!("signs {}, which was not fetched", c.signs),
            )),
            Some(Err(e)) => Err(Refusal::new(
                RefusalKind::Unavailable,
                format!("signs {}, which could not be fetched: {e}", c.signs),
            )),
            Some(Ok(sums)) => check(
                &ring,
                &c.name,
                sig,
                Signed::bytes(&c.signs, sums),
                subject.version,
            )
            .and_then(|label| listed(subject, &c.signs, sums, &artifact, &artifact_sha).map(|()| label))
            .map(|label| Verified {
                key: label.to_string(),
                signature: c.name.clone(),
                via_checksum: Some(c.signs.clone()),
            }),
        };
        match outcome {
            Ok(v) => return Ok(v),
            Err(r) => refusals.push((c.name.clone(), r)),
        }
    }
    Err(combine(
        &format!("release {} ({})", subject.version, subject.artifact),
        refusals,
    ))
}

/// A signed checksum file must list the artifact with its actual SHA-256.
fn listed(
    subject: &Subject,
    file: &str,
    sums: &[u8],
    artifact: &Signed,
    sha: &OnceCell<Result<[u8; 32], Refusal>>,
) -> Result<(), Refusal> {
    let text = String::from_utf8_lossy(sums);
    let Some(expected) = crate::artifact::checksum::parse_expected(&text, subject.artifact) else {
        return Err(Refusal::new(
            RefusalKind::NotListed,
            format!("{file} is signed but does not list {}", subject.artifact),
        ));
    };
    let actual = hex::encode(sha.get_or_init(|| artifact.sha256()).clone()?);
    if expected != actual {
        return Err(Refusal::new(
            RefusalKind::ChecksumMismatch,
            format!(
                "{file} is signed but lists sha256 {expected} for {}, whose sha256 is {actual}: altered artifact, or the checksum file of another release",
                subject.artifact
            ),
        ));
    }
    Ok(())
}

/// One refusal for a release or image from each signature's: the most telling kind (a fetch
/// error first, as it leaves the question open), with every signature's reason.
pub(super) fn combine(what: &str, refusals: Vec<(String, Refusal)>) -> Refusal {
    let kind = refusals
        .iter()
        .map(|(_, r)| r.kind)
        .max()
        .unwrap_or(RefusalKind::NoSignature);
    let reasons: Vec<String> = refusals
        .iter()
        .map(|(name, r)| format!("{name}: {}", r.message))
        .collect();
    Refusal::new(
        kind,
        format!("{what} refused ({}): {}", kind.as_str(), reasons.join("; ")),
    )
}
