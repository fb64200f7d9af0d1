//! Trusted keys as written in the configuration: `minisign:<base64>`, `minisign-file:PATH`,
//! `signify-file:PATH`, `cosign:PATH`, `openpgp:PATH` and `credential:NAME`; a PATH may itself be
//! `credential:NAME` (`$CREDENTIALS_DIRECTORY/NAME`). Files are read when the key is parsed.

use std::path::{Path, PathBuf};

use base64::Engine;
use p256::pkcs8::DecodePublicKey;
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::types::KeyDetails;

/// Largest key file read.
const MAX_KEY_FILE: u64 = 1 << 20;

/// The signature scheme a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Minisign,
    Signify,
    Cosign,
    OpenPgp,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::Minisign => "minisign",
            KeyKind::Signify => "signify",
            KeyKind::Cosign => "cosign",
            KeyKind::OpenPgp => "OpenPGP",
        })
    }
}

/// A key named by `verify`, parsed and ready to check signatures.
#[derive(Clone)]
pub struct TrustedKey {
    spec: String,
    label: String,
    pub(super) material: Material,
}

/// An Ed25519 key in the minisign/signify framing: `Ed`, an 8-byte key number, the public key.
#[derive(Clone)]
pub(super) struct EdKey {
    pub id: [u8; 8],
    pub public: ed25519_dalek::VerifyingKey,
    pub minisign: minisign_verify::PublicKey,
}

#[derive(Clone)]
pub(super) enum Material {
    Minisign(EdKey),
    Signify(EdKey),
    Cosign(p256::ecdsa::VerifyingKey),
    OpenPgp(Vec<SignedPublicKey>),
}

/// A key that cannot be used; the message names the key as written.
#[derive(Debug, thiserror::Error)]
#[error("verify key {shown}: {message}")]
pub struct KeyError {
    shown: String,
    message: String,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedKey({})", self.label)
    }
}

impl serde::Serialize for TrustedKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spec)
    }
}

impl TrustedKey {
    /// Parse a key as written in the configuration, reading its file (or systemd credential from
    /// `$CREDENTIALS_DIRECTORY`).
    pub fn parse(spec: &str) -> Result<TrustedKey, KeyError> {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        Self::parse_with(spec, dir.as_deref())
    }

    /// [`TrustedKey::parse`] with the credentials directory given.
    pub fn parse_with(spec: &str, credentials: Option<&Path>) -> Result<TrustedKey, KeyError> {
        let spec = spec.trim();
        let fail = |message: String| KeyError {
            shown: shown(spec),
            message,
        };
        let (kind, rest) = spec.split_once(':').ok_or_else(|| {
            fail("expected KIND:VALUE (minisign:, minisign-file:, signify-file:, cosign:, openpgp: or credential:)".into())
        })?;
        let rest = rest.trim();
        let (material, label) = match kind {
            "minisign" => {
                let key = ed_key(rest).map_err(fail)?;
                let label = format!("minisign key {}", key_id(&key.id));
                (Material::Minisign(key), label)
            }
            "minisign-file" | "signify-file" | "cosign" | "openpgp" => {
                let (bytes, place) = read_location(rest, credentials).map_err(fail)?;
                from_bytes(kind, &bytes, &place).map_err(fail)?
            }
            "credential" => {
                let (bytes, place) = read_location(spec, credentials).map_err(fail)?;
                let kind = detect(&bytes).map_err(|e| fail(format!("{place}: {e}")))?;
                from_bytes(kind, &bytes, &place).map_err(fail)?
            }
            other => {
                return Err(fail(format!(
                    "unknown key kind {other:?} (minisign:, minisign-file:, signify-file:, cosign:, openpgp: or credential:)"
                )))
            }
        };
        Ok(TrustedKey {
            spec: spec.to_string(),
            label,
            material,
        })
    }

    /// The key's scheme.
    pub fn kind(&self) -> KeyKind {
        match self.material {
            Material::Minisign(_) => KeyKind::Minisign,
            Material::Signify(_) => KeyKind::Signify,
            Material::Cosign(_) => KeyKind::Cosign,
            Material::OpenPgp(_) => KeyKind::OpenPgp,
        }
    }

    /// How messages name the key (`minisign key 1A2B…`, `cosign key /etc/dewy/keys/cosign.pub`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The key as written in the configuration.
    pub fn spec(&self) -> &str {
        &self.spec
    }
}

/// A long inline key shown by its start only.
fn shown(spec: &str) -> String {
    let first = spec.lines().next().unwrap_or_default();
    if first.chars().count() > 60 || spec.lines().count() > 1 {
        format!("\"{}…\"", first.chars().take(60).collect::<String>())
    } else {
        format!("\"{first}\"")
    }
}

/// minisign's way of showing a key number: the 8 bytes as a little-endian integer in hex.
pub(super) fn key_id(id: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*id))
}

/// Read `credential:NAME` or a path; returns the bytes and how to name where they came from.
fn read_location(location: &str, credentials: Option<&Path>) -> Result<(Vec<u8>, String), String> {
    let path = match location.strip_prefix("credential:") {
        Some(name) => {
            let name = name.trim();
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(format!("invalid credential name {name:?}"));
            }
            let dir = credentials.ok_or_else(|| {
                format!("credential {name}: $CREDENTIALS_DIRECTORY is not set (LoadCredential={name}:… in the unit)")
            })?;
            dir.join(name)
        }
        None if location.is_empty() => return Err("no file given".into()),
        None => PathBuf::from(location),
    };
    let place = path.display().to_string();
    let meta = std::fs::metadata(&path).map_err(|e| format!("{place}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{place} is not a file"));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(format!("{place} is larger than {MAX_KEY_FILE} bytes"));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{place}: {e}"))?;
    Ok((bytes, place))
}

/// The kind of a key file given as a bare `credential:NAME`, from its contents.
fn detect(bytes: &[u8]) -> Result<&'static str, String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start();
    if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        Ok("cosign")
    } else if text.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        || bytes.first().is_some_and(|b| b & 0x80 != 0)
    {
        Ok("openpgp")
    } else if text.starts_with("untrusted comment: signify") {
        Ok("signify-file")
    } else if text.starts_with("untrusted comment:") || base64_key(text.trim()).is_ok() {
        Ok("minisign-file")
    } else {
        Err("not a minisign, signify, cosign (PEM) or OpenPGP public key".into())
    }
}

fn from_bytes(kind: &str, bytes: &[u8], place: &str) -> Result<(Material, String), String> {
    let text = || std::str::from_utf8(bytes).map_err(|_| format!("{place} is not text"));
    match kind {
        "minisign-file" => {
            let key = ed_key(text()?).map_err(|e| format!("{place}: {e}"))?;
            let label = format!("minisign key {} ({place})", key_id(&key.id));
            Ok((Material::Minisign(key), label))
        }
        "signify-file" => {
            let key = ed_key(text()?).map_err(|e| format!("{place}: {e}"))?;
            Ok((Material::Signify(key), format!("signify key {place}")))
        }
        "cosign" => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_pem(text()?.trim())
                .map_err(|e| format!("{place}: not a PEM ECDSA P-256 public key (cosign.pub): {e}"))?;
            Ok((Material::Cosign(key), format!("cosign key {place}")))
        }
        _ => {
            let certs = openpgp_certs(bytes).map_err(|e| format!("{place}: {e}"))?;
            let fingerprints: Vec<String> = certs
                .iter()
                .map(|c| hex::encode_upper(c.fingerprint().as_bytes()))
                .collect();
            let label = format!("OpenPGP key {} ({place})", fingerprints.join(", "));
            Ok((Material::OpenPgp(certs), label))
        }
    }
}

/// The base64 key line of a minisign or signify `.pub`, or the whole two-line file.
fn ed_key(text: &str) -> Result<EdKey, String> {
    let text = text.trim();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().ok_or("empty key")?;
    let line = if first.starts_with("untrusted comment:") {
        lines
            .next()
            .ok_or("the key line after the untrusted comment is missing")?
    } else {
        first
    };
    if lines.next().is_some() {
        return Err("extra lines after the key".into());
    }
    base64_key(line)
}

fn base64_key(line: &str) -> Result<EdKey, String> {
    let bin = base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|e| format!("the key is not base64: {e}"))?;
    if bin.len() != 42 || &bin[..2] != b"Ed" {
        return Err(format!(
            "not an Ed25519 public key of minisign or signify ({} bytes, expected 42 starting with \"Ed\")",
            bin.len()
        ));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bin[2..10]);
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&bin[10..42]);
    let public =
        ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|e| format!("invalid Ed25519 key: {e}"))?;
    let minisign = minisign_verify::PublicKey::from_base64(line).map_err(|e| format!("invalid key: {e}"))?;
    Ok(EdKey { id, public, minisign })
}

/// Every certificate of an armored or binary OpenPGP key file, each with valid self-signatures.
fn openpgp_certs(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
    let (certs, _) = SignedPublicKey::from_reader_many(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not an OpenPGP public key: {e}"))?;
    let mut out = Vec::new();
    for cert in certs {
        let cert = cert.map_err(|e| format!("not an OpenPGP public key: {e}"))?;
        cert.verify_bindings().map_err(|e| {
            format!(
                "OpenPGP key {}: its self-signatures do not verify: {e}",
                hex::encode_upper(cert.fingerprint().as_bytes())
            )
        })?;
        if !cert.details.revocation_signatures.is_empty() {
            return Err(format!(
                "OpenPGP key {} is revoked",
                hex::encode_upper(cert.fingerprint().as_bytes())
            ));
        }
        out.push(cert);
    }
    if out.is_empty() {
        return Err("no OpenPGP public key in it".into());
    }
    Ok(out)
}
