//! The real signing tools for the tests: minisign, signify, gpg and OpenSSL (cosign's format),
//! each making keys and signatures in a temporary directory. A missing tool fails the test with
//! the package to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::TrustedKey;

/// Run `cmd`, failing the test with its output when it cannot start or fails.
pub fn run(cmd: &mut Command, package: &str) -> Output {
    let shown = format!("{cmd:?}");
    let out = match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{shown}: not installed; the signature tests need it: apt-get install {package}")
        }
        Err(e) => panic!("{shown}: {e}"),
    };
    assert!(
        out.status.success(),
        "{shown} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn key(spec: &str) -> TrustedKey {
    TrustedKey::parse_with(spec, None).unwrap_or_else(|e| panic!("{e}"))
}

/// A minisign key pair without a password.
pub struct Minisign {
    pub public: PathBuf,
    secret: PathBuf,
}

impl Minisign {
    pub fn generate(dir: &Path, name: &str) -> Minisign {
        let public = dir.join(format!("{name}.pub"));
        let secret = dir.join(format!("{name}.key"));
        run(
            Command::new("minisign")
                .arg("-G")
                .arg("-W")
                .arg("-p")
                .arg(&public)
                .arg("-s")
                .arg(&secret),
            "minisign",
        );
        Minisign { public, secret }
    }

    /// `minisign-file:PATH`.
    pub fn key(&self) -> TrustedKey {
        key(&format!("minisign-file:{}", self.public.display()))
    }

    /// The key line of the `.pub` file.
    pub fn base64(&self) -> String {
        let text = std::fs::read_to_string(&self.public).expect("read pub");
        text.lines().nth(1).expect("key line").to_string()
    }

    /// Sign `file` into `sig` with extra flags (`-l`, `-t COMMENT`); returns `sig`.
    pub fn sign(&self, file: &Path, sig: &Path, extra: &[&str]) -> PathBuf {
        run(
            Command::new("minisign")
                .arg("-S")
                .args(extra)
                .arg("-s")
                .arg(&self.secret)
                .arg("-x")
                .arg(sig)
                .arg("-m")
                .arg(file),
            "minisign",
        );
        sig.to_path_buf()
    }
}

/// A signify key pair without a passphrase.
pub struct Signify {
    pub public: PathBuf,
    secret: PathBuf,
}

impl Signify {
    pub fn generate(dir: &Path, name: &str) -> Signify {
        let public = dir.join(format!("{name}.pub"));
        let secret = dir.join(format!("{name}.sec"));
        run(
            Command::new("signify-openbsd")
                .arg("-G")
                .arg("-n")
                .arg("-p")
                .arg(&public)
                .arg("-s")
                .arg(&secret),
            "signify-openbsd",
        );
        Signify { public, secret }
    }

    pub fn key(&self) -> TrustedKey {
        key(&format!("signify-file:{}", self.public.display()))
    }

    pub fn sign(&self, file: &Path, sig: &Path) -> PathBuf {
        run(
            Command::new("signify-openbsd")
                .arg("-S")
                .arg("-s")
                .arg(&self.secret)
                .arg("-m")
                .arg(file)
                .arg("-x")
                .arg(sig),
            "signify-openbsd",
        );
        sig.to_path_buf()
    }
}

/// A P-256 key made with OpenSSL, signing as `cosign sign-blob --key` does.
pub struct Cosign {
    pub public: PathBuf,
    secret: PathBuf,
}

impl Cosign {
    pub fn generate(dir: &Path, name: &str) -> Cosign {
        let secret = dir.join(format!("{name}.key.pem"));
        let public = dir.join(format!("{name}.pub"));
        run(
            Command::new("openssl")
                .args(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out"])
                .arg(&secret),
            "openssl",
        );
        run(
            Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&secret)
                .arg("-out")
                .arg(&public),
            "openssl",
        );
        Cosign { public, secret }
    }

    pub fn key(&self) -> TrustedKey {
        key(&format!("cosign:{}", self.public.display()))
    }

    /// The DER signature of `file` (`openssl dgst -sha256 -sign`).
    pub fn sign_der(&self, file: &Path) -> Vec<u8> {
        run(
            Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&self.secret)
                .arg(file),
            "openssl",
        )
        .stdout
    }

    /// `openssl dgst -sha256 -sign KEY FILE | base64 -w0`, written to `sig`.
    pub fn sign(&self, file: &Path, sig: &Path) -> PathBuf {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(self.sign_der(file));
        std::fs::write(sig, text).expect("write sig");
        sig.to_path_buf()
    }
}

/// A GnuPG home with one key; its agent is stopped on drop.
pub struct Gpg {
    home: PathBuf,
    pub fingerprint: String,
    _dir: tempfile::TempDir,
}

impl Gpg {
    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &self.home).args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c
    }

    /// A key of `algo` (`ed25519`, `rsa2048`…); with `subkey`, the primary only certifies and a
    /// subkey of the same algorithm signs.
    pub fn generate(name: &str, algo: &str, subkey: bool) -> Gpg {
        let dir = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let home = dir.path().to_path_buf();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
        let mut g = Gpg {
            home,
            fingerprint: String::new(),
            _dir: dir,
        };
        let uid = format!("{name} <{name}@example.org>");
        let usage = if subkey { "cert" } else { "sign" };
        run(
            g.gpg().args(["--quick-gen-key", &uid, algo, usage, "never"]),
            "gnupg",
        );
        let out = run(g.gpg().args(["--with-colons", "--list-keys", &uid]), "gnupg");
        let listing = String::from_utf8_lossy(&out.stdout).to_string();
        g.fingerprint = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .expect("fingerprint")
            .to_string();
        if subkey {
            run(
                g.gpg()
                    .args(["--quick-add-key", &g.fingerprint, algo, "sign", "never"]),
                "gnupg",
            );
        }
        g
    }

    /// Export the public key to `path`, armored or binary.
    pub fn export(&self, path: &Path, armor: bool) -> PathBuf {
        let mut c = self.gpg();
        if armor {
            c.arg("--armor");
        }
        c.arg("--output").arg(path).args(["--export", &self.fingerprint]);
        run(&mut c, "gnupg");
        path.to_path_buf()
    }

    pub fn key(&self, dir: &Path, armor: bool) -> TrustedKey {
        let path = self.export(
            &dir.join(format!(
                "{}.{}",
                self.fingerprint,
                if armor { "asc" } else { "gpg" }
            )),
            armor,
        );
        key(&format!("openpgp:{}", path.display()))
    }

    /// A detached signature of `file` into `sig`, armored or binary.
    pub fn sign(&self, file: &Path, sig: &Path, armor: bool) -> PathBuf {
        let mut c = self.gpg();
        c.args(["--local-user", &self.fingerprint]);
        if armor {
            c.arg("--armor");
        }
        c.arg("--output").arg(sig).arg("--detach-sign").arg(file);
        run(&mut c, "gnupg");
        sig.to_path_buf()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
