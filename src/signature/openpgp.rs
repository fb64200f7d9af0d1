//! OpenPGP detached signatures (`gpg --detach-sign`, armored or binary) checked with rPGP against
//! the trusted certificates: their primary key or a subkey bound for signing, found by the
//! signature's issuer; the signed bytes are hashed in a stream.

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, VerifyingKey};

use super::data::Signed;
use super::{Refusal, RefusalKind};

/// Whether `bytes` look like an OpenPGP signature: armored, or a binary packet.
pub(super) fn looks_like(bytes: &[u8]) -> bool {
    bytes.starts_with(b"-----BEGIN PGP SIGNATURE-----") || bytes.first().is_some_and(|b| b & 0x80 != 0)
}

fn parse(bytes: &[u8]) -> Result<Vec<Signature>, Refusal> {
    let malformed = |e: String| {
        Refusal::new(
            RefusalKind::Malformed,
            format!("truncated or malformed OpenPGP signature: {e}"),
        )
    };
    let (sigs, _) = DetachedSignature::from_reader_many(std::io::Cursor::new(bytes))
        .map_err(|e| malformed(e.to_string()))?;
    let mut out = Vec::new();
    for sig in sigs {
        let sig = sig.map_err(|e| malformed(e.to_string()))?.signature;
        match sig.typ() {
            Some(SignatureType::Binary | SignatureType::Text) => out.push(sig),
            other => {
                return Err(malformed(format!(
                    "a {other:?} signature, not a signature of data"
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(malformed("no signature in it".into()));
    }
    Ok(out)
}

/// Whether `sig` names `key` as its issuer (by fingerprint or key id).
fn issued_by(sig: &Signature, key: &impl KeyDetails) -> bool {
    let fp = key.fingerprint();
    let id = key.legacy_key_id();
    sig.issuer_fingerprint().iter().any(|f| **f == fp) || sig.issuer_key_id().iter().any(|i| **i == id)
}

fn issuers(sig: &Signature) -> String {
    let mut names: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|f| hex::encode_upper(f.as_bytes()))
        .collect();
    if names.is_empty() {
        names = sig
            .issuer_key_id()
            .iter()
            .map(|i| hex::encode_upper(i.as_ref()))
            .collect();
    }
    if names.is_empty() {
        "an unnamed key".into()
    } else {
        format!("key {}", names.join(", "))
    }
}

/// The keys of `cert` that may make data signatures: the primary key, and subkeys whose binding
/// signature allows signing.
fn signing_keys(cert: &SignedPublicKey) -> Vec<&dyn VerifyingKeyDetails> {
    let mut keys: Vec<&dyn VerifyingKeyDetails> = vec![&cert.primary_key];
    for sub in &cert.public_subkeys {
        if sub.signatures.iter().any(|s| s.key_flags().sign()) {
            keys.push(&sub.key);
        }
    }
    keys
}

/// A key that can check a signature, as an object.
trait VerifyingKeyDetails {
    fn check(&self, sig: &Signature, data: &mut dyn std::io::Read) -> pgp::errors::Result<()>;
    fn matches(&self, sig: &Signature) -> bool;
}

impl<K: VerifyingKey + KeyDetails> VerifyingKeyDetails for K {
    fn check(&self, sig: &Signature, data: &mut dyn std::io::Read) -> pgp::errors::Result<()> {
        sig.verify(self, data)
    }
    fn matches(&self, sig: &Signature) -> bool {
        issued_by(sig, self)
    }
}

/// Check an OpenPGP signature file over `data` with the trusted certificates (each with its
/// label); the label of the one that made it.
pub(super) fn verify<'k>(
    certs: &[(&'k SignedPublicKey, &'k str)],
    bytes: &[u8],
    data: Signed,
) -> Result<&'k str, Refusal> {
    let sigs = parse(bytes)?;
    let mut refusals = Vec::new();
    for sig in &sigs {
        let signer = certs.iter().find_map(|(cert, label)| {
            signing_keys(cert)
                .into_iter()
                .find(|k| k.matches(sig))
                .map(|k| (k, *label))
        });
        let Some((key, label)) = signer else {
            let labels: Vec<&str> = certs.iter().map(|(_, l)| *l).collect();
            refusals.push(Refusal::new(
                RefusalKind::UntrustedKey,
                format!(
                    "signed by OpenPGP {}, which is not trusted (trusted: {})",
                    issuers(sig),
                    labels.join(", ")
                ),
            ));
            continue;
        };
        let mut reader = data.reader()?;
        match key.check(sig, &mut reader) {
            Ok(()) => return Ok(label),
            Err(e) => refusals.push(Refusal::new(
                RefusalKind::BadSignature,
                format!(
                    "signature by {label} does not match {}: the file was altered, or the signature was made over other bytes ({e})",
                    data.name
                ),
            )),
        }
    }
    Err(refusals
        .into_iter()
        .max_by_key(|r| r.kind)
        .unwrap_or_else(|| Refusal::new(RefusalKind::Malformed, "no signature in it")))
}
