//! minisign and signify signatures: Ed25519 keys in the same framing (`Ed`, a key number, the
//! key). minisign's default prehashed (`ED`) signatures cover the BLAKE2b-512 of the file, hashed
//! in a stream; its legacy (`Ed`) signatures and signify's cover the raw bytes, read whole up to
//! [`MAX_RAW_SIGNED_SIZE`]. minisign's trusted comment is authenticated by a second signature;
//! when it names a file (`file:NAME`) or a version (`version:V`), they must be the ones at hand.

use base64::Engine;
use ed25519_dalek::Signature;

use super::data::Signed;
use super::key::{key_id, EdKey};
use super::{Refusal, RefusalKind, MAX_RAW_SIGNED_SIZE};

/// Which Ed25519 framing a signature file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Minisign,
    Signify,
}

/// What a signature must be about: the file name it was published as and the release version.
pub(super) struct Expect<'a> {
    pub file: &'a str,
    pub version: &'a str,
}

fn b64(line: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(line.trim()).ok()
}

/// The framing of a text signature file starting with `untrusted comment:`, by its contents
/// (and its name: a truncated `.minisig` is still a minisign signature).
pub(super) fn framing(text: &str, name: &str) -> Option<Framing> {
    if !text.starts_with("untrusted comment:") {
        return None;
    }
    let mut lines = text.lines().skip(1);
    let second = lines.next().and_then(b64);
    let third_is_trusted = lines.next().is_some_and(|l| l.starts_with("trusted comment:"));
    if third_is_trusted
        || name.ends_with(".minisig")
        || second.as_deref().is_some_and(|b| b.starts_with(b"ED"))
    {
        Some(Framing::Minisign)
    } else {
        Some(Framing::Signify)
    }
}

/// The parts of a minisign signature file.
struct Minisig {
    id: [u8; 8],
    signature: [u8; 64],
    trusted_comment: String,
    global: [u8; 64],
}

fn parse_minisig(text: &str) -> Result<Minisig, String> {
    let mut lines = text.lines();
    let _untrusted = lines.next().ok_or("empty")?;
    let first = lines.next().ok_or("the signature line is missing")?;
    let first = b64(first).ok_or("the signature line is not base64")?;
    if first.len() != 74 {
        return Err(format!("the signature line holds {} bytes, not 74", first.len()));
    }
    let comment = lines.next().ok_or("the trusted comment is missing")?;
    let comment = comment
        .strip_prefix("trusted comment: ")
        .ok_or("the third line is not a trusted comment")?;
    let global = lines.next().ok_or("the trusted comment's signature is missing")?;
    let global = b64(global).ok_or("the trusted comment's signature is not base64")?;
    let global: [u8; 64] = global
        .try_into()
        .map_err(|g: Vec<u8>| format!("the trusted comment's signature holds {} bytes, not 64", g.len()))?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&first[2..10]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&first[10..74]);
    Ok(Minisig {
        id,
        signature,
        trusted_comment: comment.to_string(),
        global,
    })
}

/// The file and version a trusted comment names that differ from `expect`.
fn comment_mismatch(comment: &str, expect: &Expect) -> Option<String> {
    let bare = |v: &str| v.strip_prefix(['v', 'V']).unwrap_or(v).to_string();
    for token in comment.split_whitespace() {
        if let Some(file) = token.strip_prefix("file:") {
            let base = file.rsplit('/').next().unwrap_or(file);
            if base != expect.file {
                return Some(format!("file {base}, not {}", expect.file));
            }
        } else if let Some(version) = token.strip_prefix("version:") {
            if bare(version) != bare(expect.version) {
                return Some(format!("version {version}, not {}", expect.version));
            }
        }
    }
    None
}

fn trusted_list<'k>(keys: &[(&'k EdKey, &'k str)]) -> String {
    keys.iter()
        .map(|(_, label)| *label)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Check a minisign signature file over `data` with the trusted minisign keys; the label of the
/// key that made it.
pub(super) fn verify_minisign<'k>(
    keys: &[(&'k EdKey, &'k str)],
    text: &str,
    data: Signed,
    expect: &Expect,
) -> Result<&'k str, Refusal> {
    let malformed = |e: String| {
        Refusal::new(
            RefusalKind::Malformed,
            format!("truncated or malformed minisign signature: {e}"),
        )
    };
    let parts = parse_minisig(text).map_err(malformed)?;
    let sig = minisign_verify::Signature::decode(text).map_err(|e| malformed(e.to_string()))?;
    let Some((key, label)) = keys.iter().find(|(k, _)| k.id == parts.id) else {
        return Err(Refusal::new(
            RefusalKind::UntrustedKey,
            format!(
                "signed by minisign key {}, which is not trusted (trusted: {})",
                key_id(&parts.id),
                trusted_list(keys)
            ),
        ));
    };
    let checked = if text
        .lines()
        .nth(1)
        .and_then(b64)
        .is_some_and(|b| b.starts_with(b"ED"))
    {
        let mut verifier = key
            .minisign
            .verify_stream(&sig)
            .map_err(|e| malformed(e.to_string()))?;
        data.stream(|chunk| verifier.update(chunk))?;
        verifier.finalize()
    } else {
        let bytes = data.whole(MAX_RAW_SIGNED_SIZE, "a legacy minisign signature")?;
        key.minisign.verify(&bytes, &sig, true)
    };
    let comment = parts.trusted_comment.as_str();
    match checked {
        Ok(()) => match comment_mismatch(comment, expect) {
            None => Ok(label),
            Some(other) => Err(Refusal::new(
                RefusalKind::Replay,
                format!("valid signature by {label}, but its trusted comment names {other} (\"{comment}\"): a signature replayed from another file or release"),
            )),
        },
        Err(minisign_verify::Error::InvalidSignature) => {
            let mut signed = parts.signature.to_vec();
            signed.extend_from_slice(comment.as_bytes());
            let authentic = key
                .public
                .verify_strict(&signed, &Signature::from_bytes(&parts.global))
                .is_ok();
            match comment_mismatch(comment, expect) {
                Some(other) if authentic => Err(Refusal::new(
                    RefusalKind::Replay,
                    format!(
                        "signature by {label} made for {other} (trusted comment \"{comment}\"), and it does not match {}: a signature replayed from another release",
                        data.name
                    ),
                )),
                _ if authentic => Err(Refusal::new(
                    RefusalKind::BadSignature,
                    format!(
                        "signature by {label} does not match {}: the file was altered, or the signature was made over other bytes (trusted comment \"{comment}\")",
                        data.name
                    ),
                )),
                _ => Err(Refusal::new(
                    RefusalKind::BadSignature,
                    format!(
                        "signature claiming {label} does not match {} and its trusted comment does not verify either: altered signature or file",
                        data.name
                    ),
                )),
            }
        }
        Err(e) => Err(malformed(e.to_string())),
    }
}

/// Check a detached signify signature (`signify -S`) over `data` with the trusted signify keys.
pub(super) fn verify_signify<'k>(
    keys: &[(&'k EdKey, &'k str)],
    text: &str,
    data: Signed,
) -> Result<&'k str, Refusal> {
    let malformed = |e: &str| {
        Refusal::new(
            RefusalKind::Malformed,
            format!("truncated or malformed signify signature: {e}"),
        )
    };
    let mut lines = text.lines();
    let _untrusted = lines.next();
    let bin = lines
        .next()
        .and_then(b64)
        .ok_or_else(|| malformed("the signature line is missing or not base64"))?;
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(malformed(
            "it carries an embedded message (signify -e); publish a detached signature (signify -S without -e)",
        ));
    }
    if bin.len() != 74 || &bin[..2] != b"Ed" {
        return Err(malformed(&format!(
            "the signature line holds {} bytes, expected 74 starting with \"Ed\"",
            bin.len()
        )));
    }
    let Some((key, label)) = keys.iter().find(|(k, _)| k.id[..] == bin[2..10]) else {
        return Err(Refusal::new(
            RefusalKind::UntrustedKey,
            format!(
                "signed by signify key number {}, which is not trusted (trusted: {})",
                hex::encode(&bin[2..10]),
                trusted_list(keys)
            ),
        ));
    };
    let mut raw = [0u8; 64];
    raw.copy_from_slice(&bin[10..74]);
    let bytes = data.whole(MAX_RAW_SIGNED_SIZE, "signify")?;
    key.public
        .verify_strict(&bytes, &Signature::from_bytes(&raw))
        .map_err(|_| {
            Refusal::new(
                RefusalKind::BadSignature,
                format!(
                    "signature by {label} does not match {}: the file was altered, or the signature was made over other bytes",
                    data.name
                ),
            )
        })?;
    Ok(label)
}
