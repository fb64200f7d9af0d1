//! The shipping report: after each successful deploy, Go Dewy leaves
//! `shipped_to_<host>_<command>_at_<UTC>.txt` at the release source (a release asset on GitHub,
//! an empty object in S3 or GCS, `Report` on gRPC). [`Shipment`] is what is reported; the event
//! sink that reports each deploy is `notify::shipping`.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest one report may take.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// One deploy to report: what went live, how, where and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// The version (tag) deployed.
    pub version: String,
    /// `server`, `assets` or `container`.
    pub command: String,
    /// The machine's hostname.
    pub host: String,
    pub at: DateTime<Utc>,
}

impl Shipment {
    /// `version` deployed now by `command` on this machine.
    pub fn now(version: &str, command: &str) -> Shipment {
        Shipment {
            version: version.to_string(),
            command: command.to_string(),
            host: crate::host::name(),
            at: Utc::now(),
        }
    }

    /// `shipped_to_<host lower-cased>_<command>_at_<YYYYMMDDTHHMMSS.nnnnnnnnnZ>.txt`. Go Dewy
    /// only lower-cases the host; here any character but letters, digits, `-` and `.` becomes
    /// `-` too, so a name can neither hold a path separator nor an ambiguous `_`.
    pub fn file_name(&self) -> String {
        format!(
            "shipped_to_{}_{}_at_{}.txt",
            clean(&self.host),
            clean(&self.command),
            self.at.format("%Y%m%dT%H%M%S%.9fZ")
        )
    }

    /// The text of the GitHub asset: the file name without `.txt`, `_` read as spaces.
    pub fn sentence(&self) -> String {
        let name = self.file_name();
        name.strip_suffix(".txt").unwrap_or(&name).replace('_', " ")
    }
}

fn clean(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-07-19T01:02:03.000456789Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn names_follow_go_dewy() {
        let s = Shipment {
            version: "v1.0.0".into(),
            command: "server".into(),
            host: "Web-01.Example.com".into(),
            at: at(),
        };
        assert_eq!(
            s.file_name(),
            "shipped_to_web-01.example.com_server_at_20260719T010203.000456789Z.txt"
        );
        assert_eq!(
            s.sentence(),
            "shipped to web-01.example.com server at 20260719T010203.000456789Z"
        );
    }

    #[test]
    fn a_report_is_never_taken_for_the_artifact() {
        let s = Shipment {
            version: "v1.0.0".into(),
            command: "server".into(),
            host: "linux-x86_64-amd64".into(),
            at: at(),
        };
        let name = s.file_name();
        let choose = |names: &[&str]| {
            crate::registry::platform::choose_for(names, None, "linux", "x86_64").map(str::to_string)
        };
        assert_eq!(choose(&[&name]), None, "{name}");
        assert_eq!(
            choose(&[&name, "app_linux_amd64.tar.gz"]).as_deref(),
            Some("app_linux_amd64.tar.gz")
        );
    }

    #[test]
    fn hostile_hostnames_cannot_shape_the_name() {
        let s = Shipment {
            version: "v1".into(),
            command: "assets".into(),
            host: "we/b_1 ..".into(),
            at: at(),
        };
        assert_eq!(
            s.file_name(),
            "shipped_to_we-b-1-.._assets_at_20260719T010203.000456789Z.txt"
        );
        let empty = Shipment {
            host: String::new(),
            ..s
        };
        assert!(empty.file_name().starts_with("shipped_to_unknown_assets_at_"));
    }
}
