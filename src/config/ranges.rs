//! The allowed range of every duration in the settings, checked when the settings are loaded so
//! that an absurd value is a config error naming the key rather than an overflow later on.

use std::time::Duration;

use super::ConfigError;
use crate::units::format_duration;

/// The smallest and largest value a duration key accepts (both included).
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub key: &'static str,
    pub min: Duration,
    pub max: Duration,
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

pub const INTERVAL: Range = Range {
    key: "interval",
    min: secs(1),
    max: secs(7 * DAY),
};
pub const GRACE_PERIOD: Range = Range {
    key: "grace-period",
    min: Duration::ZERO,
    max: secs(30 * DAY),
};
pub const HOOK_TIMEOUT: Range = Range {
    key: "hook-timeout",
    min: secs(1),
    max: secs(DAY),
};
pub const HEALTH_TIMEOUT: Range = Range {
    key: "health-timeout",
    min: Duration::from_millis(100),
    max: secs(HOUR),
};
pub const DRAIN_TIME: Range = Range {
    key: "drain-time",
    min: Duration::ZERO,
    max: secs(HOUR),
};
pub const ALIVE_DELAY: Range = Range {
    key: "alive-delay",
    min: Duration::ZERO,
    max: secs(10 * 60),
};
/// Zero: a crash loop is never blamed on the release (no rollback).
pub const BLAME_WINDOW: Range = Range {
    key: "blame-window",
    min: Duration::ZERO,
    max: secs(30 * DAY),
};
pub const PROXY_IDLE_TIMEOUT: Range = Range {
    key: "proxy-idle-timeout",
    min: Duration::ZERO,
    max: secs(7 * DAY),
};
/// Zero: no cooldown.
pub const MIN_AGE: Range = Range {
    key: "min-age",
    min: Duration::ZERO,
    max: secs(30 * DAY),
};
/// `timeout=` of a notifier URL.
pub const NOTIFIER_TIMEOUT: Range = Range {
    key: "notifier timeout",
    min: Duration::from_millis(100),
    max: secs(10 * 60),
};
/// `registry-ttl=` of a shared cache URL (zero: off).
pub const REGISTRY_TTL: Range = Range {
    key: "cache registry-ttl",
    min: Duration::ZERO,
    max: secs(DAY),
};

/// Every range, for the documentation test.
pub const ALL: [Range; 10] = [
    INTERVAL,
    GRACE_PERIOD,
    HOOK_TIMEOUT,
    HEALTH_TIMEOUT,
    DRAIN_TIME,
    ALIVE_DELAY,
    PROXY_IDLE_TIMEOUT,
    MIN_AGE,
    NOTIFIER_TIMEOUT,
    REGISTRY_TTL,
];

/// How long the hosts of the wave before must have run a release (`soak`).
pub const SOAK: Range = Range {
    key: "soak",
    min: Duration::ZERO,
    max: secs(30 * DAY),
};

impl Range {
    /// `value` when it lies in the range, else a message naming the key and the range.
    pub fn check(&self, value: Duration) -> Result<Duration, String> {
        if (self.min..=self.max).contains(&value) {
            return Ok(value);
        }
        let shown = if value == crate::units::TOO_LARGE {
            "a value too large to represent".to_string()
        } else {
            format_duration(value)
        };
        Err(format!(
            "{} = {shown} is out of range: use {} to {}",
            self.key,
            format_duration(self.min),
            format_duration(self.max)
        ))
    }

    /// The value of an optional key, `default` when it is not set, checked.
    pub fn resolve(
        &self,
        value: Option<crate::units::DurationValue>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        self.check(value.map_or(default, |d| d.0))
            .map_err(ConfigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_messages_name_key_and_range() {
        assert_eq!(INTERVAL.check(secs(1)), Ok(secs(1)));
        assert_eq!(INTERVAL.check(secs(7 * DAY)), Ok(secs(7 * DAY)));
        let e = INTERVAL.check(Duration::from_millis(500)).unwrap_err();
        assert_eq!(e, "interval = 500ms is out of range: use 1s to 7d");
        let e = INTERVAL.check(crate::units::TOO_LARGE).unwrap_err();
        assert!(e.starts_with("interval = a value too large"), "{e}");
        assert!(e.ends_with("use 1s to 7d"), "{e}");
        for r in ALL {
            assert!(r.min <= r.max, "{}", r.key);
            assert!(r.check(r.max + Duration::from_millis(1)).is_err(), "{}", r.key);
        }
    }

    #[test]
    fn the_documentation_lists_every_range() {
        let doc = include_str!("../../docs/configuration.md");
        for r in ALL {
            let row = format!(
                "| `{}` | {} | {} |",
                r.key,
                format_duration(r.min),
                format_duration(r.max)
            );
            assert!(doc.contains(&row), "docs/configuration.md lacks the row {row}");
        }
    }
}
