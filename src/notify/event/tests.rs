//! Tests of the events' message text and of hook output truncation.

use super::*;

#[test]
fn seed_wording() {
    let e = Event::Downloaded {
        version: "v1.2.3".into(),
    };
    assert_eq!(e.message(), "Downloaded artifact for v1.2.3");
    let s = Event::Started {
        command: "assets".into(),
    };
    assert_eq!(
        s.message(),
        format!(
            "Automatic shipping started by Dewy (v{}: assets)",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn container_wording() {
    let pulled = Event::ImagePulled {
        version: "v1.2.3".into(),
        image: "ghcr.io/o/app:v1.2.3".into(),
    };
    assert_eq!(pulled.message(), "Pulled image for v1.2.3");
    assert_eq!(pulled.kind(), "image-pulled");
    assert_eq!(pulled.deploy_version(), Some("v1.2.3"));
    let deployed = Event::Deployed {
        version: "v1.2.3".into(),
        previous: Some("v1.2.2".into()),
        duration: Duration::from_secs(4),
        command: "container".into(),
    };
    assert_eq!(deployed.message(), "Container deployed successfully for v1.2.3");
}

#[test]
fn pause_wording() {
    let p = Event::Paused {
        reason: "incident 42".into(),
    };
    assert_eq!(p.kind(), "paused");
    assert_eq!(
        p.message(),
        "Deploys paused by an operator: incident 42; new releases wait for `dewy resume`"
    );
    let bare = Event::Paused { reason: "".into() };
    assert_eq!(
        bare.message(),
        "Deploys paused by an operator; new releases wait for `dewy resume`"
    );
    let since = DateTime::parse_from_rfc3339("2026-01-15T10:30:45Z")
        .unwrap()
        .with_timezone(&Utc);
    let r = Event::Resumed { since };
    assert_eq!(r.kind(), "resumed");
    assert_eq!(
        r.message(),
        "Deploys resumed (paused since 2026-01-15 10:30:45 UTC)"
    );
    assert!(!p.is_alert() && !r.is_alert() && p.deploy_version().is_none());
}

#[test]
fn output_is_truncated_from_the_top() {
    let long: String = (0..60).map(|i| format!("line {i}\n")).collect();
    let t = truncate_output(&long);
    assert!(t.starts_with("… (10 more lines"), "{t}");
    assert!(t.ends_with("line 59"), "{t}");
}
