//! Whose fault a failed deploy is, one type for every mode: the release's (marked bad and not
//! retried), the host's (a full disk, an I/O error: retried, the release untouched), or passing
//! trouble (network, engine, proxy: retried). The deploy pipeline acts on it.

/// Who is to blame for a failed deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The release itself: a bad checksum, a broken archive, an app or image that does not get
    /// ready. The version is marked bad.
    Release,
    /// The host: disk full, quota exceeded, I/O error, read-only filesystem. Retried.
    Host,
    /// Anything else that may pass: the network, the source, the engine, the proxy, a hook the
    /// config says to abort on. Retried.
    Transient,
}

/// A failed deploy step, with whose fault it is.
#[derive(Debug)]
pub struct DeployFailure {
    pub error: anyhow::Error,
    pub fault: Fault,
    /// The SHA-256 (or image digest) of what failed, when known: a bad mark names it.
    pub sha256: Option<String>,
}

impl DeployFailure {
    /// A failure that may pass, unless the error chain shows the host failed.
    pub fn transient(error: anyhow::Error) -> Self {
        let fault = host_or(&error, Fault::Transient);
        Self {
            error,
            fault,
            sha256: None,
        }
    }

    /// A failure of the release, unless the error chain shows the host failed: that is never a
    /// verdict on it.
    pub fn release(error: anyhow::Error, sha256: Option<String>) -> Self {
        let fault = host_or(&error, Fault::Release);
        Self { error, fault, sha256 }
    }

    /// True when the version is to be marked bad.
    pub fn marks_bad(&self) -> bool {
        self.fault == Fault::Release
    }

    /// What happens next, for the operators of `app`, after `version` failed so.
    pub fn next_step(&self, app: &str, version: &str) -> String {
        match self.fault {
            Fault::Release => format!(
                "{version} is marked bad and will not be deployed again; publish a fixed release, or run `dewy forget-bad {app} {version}` to retry it"
            ),
            Fault::Host => format!(
                "the host failed, not the release: nothing is marked bad and the previous release keeps serving; free space or repair the filesystem, dewy retries at the next check (`dewy check-now {app}` to retry now)"
            ),
            Fault::Transient => format!(
                "the previous release keeps serving; dewy retries at the next check (`dewy check-now {app}` to retry now)"
            ),
        }
    }
}

fn host_or(error: &anyhow::Error, otherwise: Fault) -> Fault {
    if crate::release::host_fault(error).is_some() {
        Fault::Host
    } else {
        otherwise
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_the_hosts_fault_whatever_the_step_claims() {
        let full = || {
            anyhow::Error::from(std::io::Error::from_raw_os_error(libc::ENOSPC))
                .context("extracting app.tar.gz")
        };
        assert_eq!(DeployFailure::release(full(), None).fault, Fault::Host);
        assert_eq!(DeployFailure::transient(full()).fault, Fault::Host);
        assert!(!DeployFailure::release(full(), None).marks_bad());
        let broken = anyhow::anyhow!("not a gzip stream");
        let f = DeployFailure::release(broken, Some("ab".into()));
        assert!(f.marks_bad());
        assert!(f.next_step("app", "v2").contains("forget-bad app v2"));
        let host = DeployFailure::transient(full()).next_step("app", "v2");
        assert!(host.contains("nothing is marked bad"), "{host}");
    }
}
