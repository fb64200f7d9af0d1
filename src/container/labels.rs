//! The labels dewy puts on its containers, and container names.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

pub const MANAGED: &str = "dewy.managed";
pub const APP: &str = "dewy.app";
pub const VERSION: &str = "dewy.version";
pub const REPLICA: &str = "dewy.replica";
pub const DEPLOYED_AT: &str = "dewy.deployed_at";

/// The labels of one replica of `version`.
pub fn for_replica(app: &str, version: &str, replica: usize, at: DateTime<Utc>) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (APP.to_string(), app.to_string()),
        (VERSION.to_string(), version.to_string()),
        (REPLICA.to_string(), replica.to_string()),
        (
            DEPLOYED_AT.to_string(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    ])
}

/// Engine filters selecting the managed containers of `app`.
pub fn filters(app: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{MANAGED}=true"), format!("{APP}={app}")],
    )])
}

/// `<base>-<stamp>-<replica>`, as the Go Dewy names them (the stamp is the deploy's unix
/// seconds, moved on by one when two deploys fall in the same second).
pub fn container_name(base: &str, stamp: i64, replica: usize) -> String {
    format!("{base}-{stamp}-{replica}")
}

/// The stamp in a container name made by [`container_name`].
pub fn stamp_of(name: &str) -> Option<i64> {
    let mut parts = name.rsplitn(3, '-');
    parts.next()?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let l = for_replica("web", "v1.2.0", 2, at);
        assert_eq!(l[MANAGED], "true");
        assert_eq!(l[APP], "web");
        assert_eq!(l[VERSION], "v1.2.0");
        assert_eq!(l[REPLICA], "2");
        assert_eq!(l[DEPLOYED_AT], "2026-01-02T03:04:05Z");
        assert_eq!(
            container_name("web", at.timestamp(), 2),
            format!("web-{}-2", at.timestamp())
        );
        assert_eq!(
            stamp_of(&container_name("my-web", 1700000000, 3)),
            Some(1700000000)
        );
        assert_eq!(stamp_of("web"), None);
        assert_eq!(filters("web")["label"], ["dewy.managed=true", "dewy.app=web"]);
    }
}
