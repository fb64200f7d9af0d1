//! Deploy windows (`[[window]]`): days of the week, a start time, a length and a time zone, in
//! the spirit of Zincati's periodic strategy. Parsed once into [`DeployWindow`]; [`state_at`]
//! says whether a deploy may run at a given instant and, if not, when the next window opens.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::units::{format_duration, DurationValue};

/// The shortest window.
pub const MIN_LENGTH: Duration = Duration::from_secs(1);
/// The longest window: a week (then the window is always open on its days and beyond).
pub const MAX_LENGTH: Duration = Duration::from_secs(7 * 24 * 3600);

/// Day names as the config writes them, Monday first.
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A `[[window]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWindow {
    days: Vec<String>,
    start: String,
    length: DurationValue,
    time_zone: Option<String>,
}

/// The time zone of a window: its name as configured and the zone.
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    pub tz: TimeZone,
}

/// One deploy window: on each of `days`, from `start` (local time in `zone`) for `length`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawWindow")]
pub struct DeployWindow {
    /// Monday first.
    pub days: [bool; 7],
    /// (hour, minute) local time.
    pub start: (u8, u8),
    pub length: Duration,
    pub zone: Zone,
}

impl Serialize for DeployWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let days: Vec<&str> = DAYS
            .iter()
            .zip(self.days)
            .filter_map(|(d, on)| on.then_some(*d))
            .collect();
        let mut st = s.serialize_struct("DeployWindow", 4)?;
        st.serialize_field("days", &days)?;
        st.serialize_field("start", &format!("{:02}:{:02}", self.start.0, self.start.1))?;
        st.serialize_field("length", &format_duration(self.length))?;
        st.serialize_field("time-zone", &self.zone.name)?;
        st.end()
    }
}

impl TryFrom<RawWindow> for DeployWindow {
    type Error = String;

    fn try_from(raw: RawWindow) -> Result<Self, String> {
        let mut days = [false; 7];
        if raw.days.is_empty() {
            return Err("window.days is empty; name at least one day (mon … sun)".into());
        }
        for d in &raw.days {
            days[day_index(d)?] = true;
        }
        let start = parse_start(&raw.start)?;
        let length = raw.length.0;
        if length < MIN_LENGTH || length > MAX_LENGTH {
            return Err(format!(
                "window.length {} is not between 1s and 7d",
                format_duration(length)
            ));
        }
        let zone = zone(raw.time_zone.as_deref().unwrap_or("UTC"))?;
        Ok(DeployWindow {
            days,
            start,
            length,
            zone,
        })
    }
}

fn day_index(name: &str) -> Result<usize, String> {
    let lower = name.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| *d == lower)
        .or_else(|| FULL_DAYS.iter().position(|d| *d == lower))
        .ok_or_else(|| {
            format!(
                "window.days: unknown day {} (mon, tue, wed, thu, fri, sat, sun, or the full names)",
                crate::text::shown(name)
            )
        })
}

/// `HH:MM` (or `H:MM`), 00:00 to 23:59.
fn parse_start(text: &str) -> Result<(u8, u8), String> {
    let bad = || {
        format!(
            "window.start {} is not a time of day HH:MM (00:00 to 23:59)",
            crate::text::shown(text)
        )
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str, max: u8| -> Option<u8> {
        if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u8>().ok().filter(|v| *v <= max)
    };
    if m.len() != 2 {
        return Err(bad());
    }
    Ok((digits(h, 23).ok_or_else(bad)?, digits(m, 59).ok_or_else(bad)?))
}

/// `UTC`, or an IANA name looked up in the system's time zone database.
fn zone(name: &str) -> Result<Zone, String> {
    if name.eq_ignore_ascii_case("UTC") {
        return Ok(Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        });
    }
    let tz = TimeZone::get(name).map_err(|e| {
        format!(
            "window.time-zone: unknown time zone {} (an IANA name such as Europe/Berlin, or UTC; \
             names are looked up in the system's zoneinfo, package tzdata): {e}",
            crate::text::shown(name)
        )
    })?;
    Ok(Zone {
        name: name.to_string(),
        tz,
    })
}

/// Whether deploys may run at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// A window is open until then (the latest end of the windows open now).
    Open { until: DateTime<Utc> },
    /// Every window is closed; the next opens then.
    Closed { opens: DateTime<Utc> },
}

/// Where the windows stand at `now`; `None` when there are none (deploys run at any time).
pub fn state_at(windows: &[DeployWindow], now: DateTime<Utc>) -> Option<WindowState> {
    let mut open_until: Option<DateTime<Utc>> = None;
    let mut next: Option<DateTime<Utc>> = None;
    for w in windows {
        for (start, end) in w.occurrences_around(now) {
            if start <= now && now < end {
                open_until = open_until.max(Some(end));
            } else if start > now {
                next = Some(next.map_or(start, |n| n.min(start)));
            }
        }
    }
    if let Some(until) = open_until {
        return Some(WindowState::Open { until });
    }
    // Every window has a day, so one opens within eight days; the far future stands in when the
    // calendar runs out.
    next.or(if windows.is_empty() {
        None
    } else {
        Some(DateTime::<Utc>::MAX_UTC)
    })
    .map(|opens| WindowState::Closed { opens })
}

impl DeployWindow {
    /// The window's (start, end) instants whose start day is within eight days of `now`'s local
    /// date either way: every opening that can contain `now`, and the next one after it.
    fn occurrences_around(&self, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let Ok(ts) = jiff::Timestamp::new(now.timestamp(), now.timestamp_subsec_nanos() as i32) else {
            return Vec::new();
        };
        let today = ts.to_zoned(self.zone.tz.clone()).date();
        let mut day = today;
        for _ in 0..8 {
            match day.yesterday() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        let length = chrono::Duration::from_std(self.length).unwrap_or(chrono::Duration::MAX);
        let mut out = Vec::new();
        for _ in 0..17 {
            if self.days[weekday_index(day.weekday())] {
                if let Some(start) = self.start_on(day) {
                    let end = start
                        .checked_add_signed(length)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC);
                    out.push((start, end));
                }
            }
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        out
    }

    /// The instant the window starts on local date `day`. A start time that does not exist that
    /// day (the clocks jump over it) is taken as the same time after the jump (02:30 becomes
    /// 03:30); one that happens twice (the clocks go back) is the first.
    fn start_on(&self, day: Date) -> Option<DateTime<Utc>> {
        let local = day.at(self.start.0 as i8, self.start.1 as i8, 0, 0);
        let ts = self
            .zone
            .tz
            .to_ambiguous_zoned(local)
            .compatible()
            .ok()?
            .timestamp();
        DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().max(0) as u32)
    }
}

fn weekday_index(w: Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
