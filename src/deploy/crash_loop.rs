//! Server mode: what a crash loop of the live release means. A release that crash-loops soon
//! after it went live is blamed (rolled back, marked bad); one that served past `blame-window`
//! crashes because something around it broke (restarted with backoff, nothing marked bad); a
//! rollback never lands on a version that is marked bad, so two releases cannot flip-flop.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::state::{BadVersion, Live};

/// What the deployer does about a crash loop of the live release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The live release is at fault: make `previous` live and mark the live one bad.
    RollBack,
    /// Keep the live release and let the supervisor restart it with capped backoff; mark nothing
    /// bad. The text says why there is no rollback.
    Keep(String),
    /// The crash loop is not of the live release (a deploy or rollback came first): ignore it.
    Stale,
}

/// Decide for a crash loop of `version`, given the state and the time `now`.
pub(super) fn verdict(
    version: &str,
    live: Option<&Live>,
    previous: Option<&Live>,
    bad: &BTreeMap<String, BadVersion>,
    blame_window: Duration,
    now: DateTime<Utc>,
) -> Verdict {
    let Some(live) = live.filter(|l| l.version == version) else {
        return Verdict::Stale;
    };
    let served = (now - live.deployed_at).to_std().unwrap_or_default();
    if blame_window.is_zero() {
        return Verdict::Keep("blame-window is 0: crash loops never roll back".into());
    }
    if served >= blame_window {
        return Verdict::Keep(format!(
            "{version} served for {} before it started crashing (blame-window {}): the environment \
             broke, not the release",
            crate::units::format_duration(round_secs(served)),
            crate::units::format_duration(blame_window)
        ));
    }
    let Some(previous) = previous else {
        return Verdict::Keep("there is no previous release to roll back to".into());
    };
    if previous.version == live.version {
        return Verdict::Keep("the previous release is the same version".into());
    }
    if let Some(b) = bad.get(&previous.version) {
        return Verdict::Keep(format!(
            "the previous release {} is marked bad ({}): rolling back onto it would flip-flop",
            previous.version, b.reason
        ));
    }
    Verdict::RollBack
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(version: &str, ago: Duration) -> Live {
        Live {
            version: version.into(),
            cache_key: format!("k-{version}"),
            artifact_url: String::new(),
            release: format!("r-{version}"),
            sha256: None,
            deployed_at: Utc::now() - chrono::Duration::from_std(ago).unwrap(),
        }
    }

    fn bad(version: &str) -> BTreeMap<String, BadVersion> {
        BTreeMap::from([(
            version.to_string(),
            BadVersion {
                version: version.into(),
                artifact_url: String::new(),
                sha256: None,
                reason: "crashed 3 times".into(),
                at: Utc::now(),
            },
        )])
    }

    const WINDOW: Duration = Duration::from_secs(600);

    #[test]
    fn a_young_release_with_a_good_previous_one_is_rolled_back() {
        let (v2, v1) = (
            live("v2", Duration::from_secs(5)),
            live("v1", Duration::from_secs(9000)),
        );
        let v = verdict("v2", Some(&v2), Some(&v1), &BTreeMap::new(), WINDOW, Utc::now());
        assert_eq!(v, Verdict::RollBack);
    }

    #[test]
    fn never_onto_a_bad_version_nor_without_one() {
        let (v1, v2) = (
            live("v1", Duration::from_secs(5)),
            live("v2", Duration::from_secs(60)),
        );
        let Verdict::Keep(why) = verdict("v1", Some(&v1), Some(&v2), &bad("v2"), WINDOW, Utc::now()) else {
            panic!("rolled back onto a bad version");
        };
        assert!(why.contains("v2 is marked bad"), "{why}");
        let Verdict::Keep(why) = verdict("v1", Some(&v1), None, &BTreeMap::new(), WINDOW, Utc::now()) else {
            panic!("rolled back onto nothing");
        };
        assert!(why.contains("no previous release"), "{why}");
    }

    #[test]
    fn a_release_that_served_past_the_window_is_not_blamed() {
        let (v2, v1) = (
            live("v2", Duration::from_secs(700)),
            live("v1", Duration::from_secs(9000)),
        );
        let Verdict::Keep(why) = verdict("v2", Some(&v2), Some(&v1), &BTreeMap::new(), WINDOW, Utc::now())
        else {
            panic!("blamed a release that served 700 s");
        };
        assert!(
            why.contains("served for 11m40s") && why.contains("blame-window 10m"),
            "{why}"
        );
        let zero = verdict(
            "v2",
            Some(&v2),
            Some(&v1),
            &BTreeMap::new(),
            Duration::ZERO,
            Utc::now(),
        );
        assert!(matches!(zero, Verdict::Keep(_)), "{zero:?}");
    }

    #[test]
    fn a_loop_of_a_version_no_longer_live_is_ignored() {
        let (v2, v1) = (
            live("v2", Duration::from_secs(5)),
            live("v1", Duration::from_secs(9000)),
        );
        let v = verdict("v1", Some(&v2), Some(&v1), &BTreeMap::new(), WINDOW, Utc::now());
        assert_eq!(v, Verdict::Stale);
        assert_eq!(
            verdict("v1", None, None, &BTreeMap::new(), WINDOW, Utc::now()),
            Verdict::Stale
        );
    }
}
