//! `min-age`: a release is deployed only once it is at least that old, by its publication time at
//! the source or, when the source gives none, by when dewy first saw it. A release of unknown age
//! counts as too young.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A release that must wait: until when (unknown when its age is unknown), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// When the release is old enough; `None` when neither its publication nor its first-seen
    /// time is known (the caller should record the first-seen time and ask again).
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.until {
            Some(t) => write!(
                f,
                "waiting for cooldown until {}: {}",
                t.to_rfc3339(),
                self.reason
            ),
            None => write!(f, "waiting for cooldown: {}", self.reason),
        }
    }
}

/// Whether a release may be deployed at `now` under `min_age`: `Ok` once it is at least
/// `min_age` old, counted from `published_at` (the source's publication time) or, without one,
/// from `first_seen`; otherwise the [`Wait`].
pub fn cooldown_until(
    published_at: Option<DateTime<Utc>>,
    first_seen: Option<DateTime<Utc>>,
    min_age: Duration,
    now: DateTime<Utc>,
) -> Result<(), Wait> {
    if min_age.is_zero() {
        return Ok(());
    }
    let (since, what) = match (published_at, first_seen) {
        (Some(t), _) => (t, "published"),
        (None, Some(t)) => (t, "first seen (the source gives no publication time)"),
        (None, None) => {
            return Err(Wait {
                until: None,
                reason: format!(
                    "the release's age is unknown (no publication time, not seen before) and min-age is {}",
                    crate::units::format_duration(min_age)
                ),
            })
        }
    };
    let age = chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
    let until = since.checked_add_signed(age).unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now >= until {
        return Ok(());
    }
    Err(Wait {
        until: Some(until),
        reason: format!(
            "{what} at {}, younger than min-age {}",
            since.to_rfc3339(),
            crate::units::format_duration(min_age)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("time")
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn published_release_waits_until_old_enough() {
        let wait = cooldown_until(Some(t(0)), None, HOUR, t(600)).expect_err("too young");
        assert_eq!(wait.until, Some(t(3600)));
        assert!(
            wait.reason.contains("published at") && wait.reason.contains("1h"),
            "{}",
            wait.reason
        );
        assert!(
            wait.to_string().starts_with("waiting for cooldown until "),
            "{wait}"
        );
        assert_eq!(cooldown_until(Some(t(0)), None, HOUR, t(3600)), Ok(()));
        assert_eq!(cooldown_until(Some(t(0)), None, HOUR, t(7200)), Ok(()));
    }

    #[test]
    fn publication_time_wins_over_first_seen() {
        assert_eq!(cooldown_until(Some(t(0)), Some(t(3000)), HOUR, t(3700)), Ok(()));
        let wait = cooldown_until(Some(t(3000)), Some(t(0)), HOUR, t(3700)).expect_err("young");
        assert_eq!(wait.until, Some(t(6600)));
    }

    #[test]
    fn first_seen_counts_when_the_source_gives_no_time() {
        let wait = cooldown_until(None, Some(t(100)), HOUR, t(200)).expect_err("young");
        assert_eq!(wait.until, Some(t(3700)));
        assert!(wait.reason.contains("first seen"), "{}", wait.reason);
        assert_eq!(cooldown_until(None, Some(t(100)), HOUR, t(3700)), Ok(()));
    }

    #[test]
    fn unknown_age_is_too_young_and_zero_is_off() {
        let wait = cooldown_until(None, None, HOUR, t(0)).expect_err("unknown");
        assert_eq!(wait.until, None);
        assert!(wait.reason.contains("unknown"), "{}", wait.reason);
        assert_eq!(cooldown_until(None, None, Duration::ZERO, t(0)), Ok(()));
    }

    #[test]
    fn a_publication_time_in_the_future_waits_from_then() {
        let wait = cooldown_until(Some(t(10_000)), None, HOUR, t(0)).expect_err("future");
        assert_eq!(wait.until, Some(t(13_600)));
        let far = cooldown_until(Some(DateTime::<Utc>::MAX_UTC), None, HOUR, t(0)).expect_err("far");
        assert_eq!(far.until, Some(DateTime::<Utc>::MAX_UTC));
    }
}
