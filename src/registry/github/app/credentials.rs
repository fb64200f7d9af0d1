//! The GitHub App's identity: its ids and RSA private key, from the environment, a key file or
//! systemd credentials, and the key's PEM (PKCS#1 or PKCS#8) decoded into a signing key.

use std::fmt;
use std::io::Read;

use anyhow::{anyhow, bail, Context};
use ring::signature::RsaKeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

/// Largest private key file read (an RSA 4096 PEM is about 3.3 KiB).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The app's identity as configured.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_id: String,
    pub installation_id: String,
    /// The PEM text of the private key.
    pub private_key_pem: String,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

impl AppCredentials {
    /// From `GITHUB_APP_ID`, `GITHUB_APP_INSTALLATION_ID` and `GITHUB_APP_PRIVATE_KEY` (PEM text)
    /// or `GITHUB_APP_PRIVATE_KEY_PATH`, each else the systemd credential `github-app-id`,
    /// `github-app-installation-id` or `github-app-private-key`. `None` when no app id is set;
    /// an error when the rest is missing.
    pub fn from_env() -> anyhow::Result<Option<AppCredentials>> {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let cred = crate::systemd::credential;
        let Some(app_id) = env("GITHUB_APP_ID").or_else(|| cred("github-app-id")) else {
            return Ok(None);
        };
        let installation_id = env("GITHUB_APP_INSTALLATION_ID")
            .or_else(|| cred("github-app-installation-id"))
            .context(
                "GITHUB_APP_ID is set but GITHUB_APP_INSTALLATION_ID (or the credential github-app-installation-id) is not",
            )?;
        let private_key_pem = match (env("GITHUB_APP_PRIVATE_KEY"), env("GITHUB_APP_PRIVATE_KEY_PATH")) {
            (Some(pem), _) => unescape_newlines(&pem),
            (None, Some(path)) => read_key_file(&path)?,
            (None, None) => cred("github-app-private-key").context(
                "GITHUB_APP_ID is set but neither GITHUB_APP_PRIVATE_KEY, GITHUB_APP_PRIVATE_KEY_PATH nor the credential github-app-private-key is",
            )?,
        };
        Ok(Some(AppCredentials {
            app_id,
            installation_id,
            private_key_pem,
        }))
    }
}

/// A PEM put in one environment line with `\n` escapes (as env files and CI secrets often
/// hold it) gets its line breaks back.
fn unescape_newlines(pem: &str) -> String {
    if pem.contains('\n') || !pem.contains("\\n") {
        return pem.to_string();
    }
    pem.replace("\\n", "\n")
}

fn read_key_file(path: &str) -> anyhow::Result<String> {
    let what = || format!("reading GITHUB_APP_PRIVATE_KEY_PATH {path}");
    let file = std::fs::File::open(path).with_context(what)?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .with_context(what)?;
    if text.len() as u64 > MAX_KEY_FILE {
        bail!("{}: larger than {MAX_KEY_FILE} bytes, not a private key", what());
    }
    Ok(text)
}

/// An RSA private key from PEM: `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8).
pub fn load_key(pem: &str) -> anyhow::Result<RsaKeyPair> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        anyhow!(
            "the GitHub App private key is not a PEM \"RSA PRIVATE KEY\" (PKCS#1) or \"PRIVATE KEY\" (PKCS#8) block ({e})"
        )
    })?;
    let (kind, key) = match &der {
        PrivateKeyDer::Pkcs1(k) => ("PKCS#1", RsaKeyPair::from_der(k.secret_pkcs1_der())),
        PrivateKeyDer::Pkcs8(k) => ("PKCS#8", RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())),
        PrivateKeyDer::Sec1(_) => {
            bail!("the GitHub App private key is an EC key; GitHub Apps sign with RSA keys")
        }
        _ => bail!("the GitHub App private key is of an unknown kind; GitHub Apps sign with RSA keys"),
    };
    key.map_err(|e| anyhow!("the GitHub App private key ({kind}) is not a usable RSA key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_newlines_are_restored_once() {
        assert_eq!(
            unescape_newlines("-----BEGIN X-----\\nAAAA\\n-----END X-----"),
            "-----BEGIN X-----\nAAAA\n-----END X-----"
        );
        assert_eq!(
            unescape_newlines("a\nb\\nc"),
            "a\nb\\nc",
            "real line breaks: left alone"
        );
    }

    #[test]
    fn non_rsa_and_broken_keys_are_refused_clearly() {
        let ec = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBYr\n-----END EC PRIVATE KEY-----\n";
        let e = load_key(ec).expect_err("EC").to_string();
        assert!(e.contains("EC key") || e.contains("not a PEM"), "{e}");
        let e = load_key("not a key").expect_err("text").to_string();
        assert!(e.contains("PKCS#1"), "{e}");
        let e = load_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .expect_err("garbage DER")
            .to_string();
        assert!(e.contains("not a usable RSA key"), "{e}");
        let e = load_key("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n")
            .expect_err("no end")
            .to_string();
        assert!(e.contains("PEM"), "{e}");
    }
}
