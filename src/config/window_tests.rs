//! Deploy windows: parsing with errors that name the key, and the window maths (windows crossing
//! midnight and the end of the week, daylight-saving changes, several windows).

use std::path::Path;

use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn windows(toml: &str) -> Vec<DeployWindow> {
    let text = format!("registry = \"file:///srv/releases\"\n{toml}");
    crate::config::from_text("app", Path::new("/etc/dewy/app.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .window
}

fn error(toml: &str) -> String {
    let text = format!("registry = \"file:///srv/releases\"\n{toml}");
    match crate::config::from_text("app", Path::new("/etc/dewy/app.toml"), &text) {
        Ok(s) => panic!("accepted: {:?}", s.window),
        Err(e) => e.to_string(),
    }
}

fn open(until: &str) -> Option<WindowState> {
    Some(WindowState::Open { until: at(until) })
}

fn closed(opens: &str) -> Option<WindowState> {
    Some(WindowState::Closed { opens: at(opens) })
}

#[test]
fn windows_parse_into_typed_values() {
    let w = windows(
        "[[window]]\ndays = [\"Mon\", \"friday\"]\nstart = \"9:05\"\nlength = \"1h30m\"\n\
         [[window]]\ndays = [\"sun\"]\nstart = \"23:00\"\nlength = 7200\ntime-zone = \"Europe/Berlin\"\n",
    );
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].days, [true, false, false, false, true, false, false]);
    assert_eq!(w[0].start, (9, 5));
    assert_eq!(w[0].length, Duration::from_secs(5400));
    assert_eq!(w[0].zone.name, "UTC", "UTC by default");
    assert_eq!(w[1].zone.name, "Europe/Berlin");
    assert_eq!(w[1].length, Duration::from_secs(7200));
    assert!(windows("").is_empty(), "no windows: deploys at any time");
    // `config check` prints them back as they are read.
    let shown = toml::to_string(&w[0]).unwrap();
    assert_eq!(
        shown,
        "days = [\"mon\", \"fri\"]\nstart = \"09:05\"\nlength = \"1h30m\"\ntime-zone = \"UTC\"\n"
    );
    let again: DeployWindow = toml::from_str(&shown).unwrap();
    assert_eq!(
        (again.days, again.start, again.length),
        (w[0].days, w[0].start, w[0].length)
    );
}

#[test]
fn bad_windows_are_refused_naming_the_key() {
    let win = |body: &str| format!("\n[[window]]\n{body}\n");
    let ok_rest = "start = \"22:00\"\nlength = \"1h\"";
    for (body, want) in [
        (
            format!("days = [\"funday\"]\n{ok_rest}"),
            "window.days: unknown day \"funday\"",
        ),
        (format!("days = []\n{ok_rest}"), "window.days is empty"),
        (
            "days = [\"mon\"]\nstart = \"24:00\"\nlength = \"1h\"".to_string(),
            "window.start \"24:00\" is not a time of day HH:MM",
        ),
        (
            "days = [\"mon\"]\nstart = \"7:5\"\nlength = \"1h\"".to_string(),
            "window.start \"7:5\"",
        ),
        (
            "days = [\"mon\"]\nstart = \"noon\"\nlength = \"1h\"".to_string(),
            "window.start \"noon\"",
        ),
        (
            "days = [\"mon\"]\nstart = \"-1:00\"\nlength = \"1h\"".to_string(),
            "window.start \"-1:00\"",
        ),
        (
            "days = [\"mon\"]\nstart = \"22:00\"\nlength = \"0s\"".to_string(),
            "window.length 0s is not between 1s and 7d",
        ),
        (
            "days = [\"mon\"]\nstart = \"22:00\"\nlength = \"8d\"".to_string(),
            "window.length",
        ),
        (
            format!("days = [\"mon\"]\n{ok_rest}\ntime-zone = \"Mars/Olympus_Mons\""),
            "window.time-zone: unknown time zone \"Mars/Olympus_Mons\"",
        ),
        (
            format!("days = [\"mon\"]\n{ok_rest}\ntime-zone = \"../../etc/passwd\""),
            "window.time-zone: unknown time zone",
        ),
        (format!("days = [\"mon\"]\n{ok_rest}\nlenght = \"1h\""), "lenght"),
        ("days = [\"mon\"]\nlength = \"1h\"".to_string(), "start"),
    ] {
        let err = error(&win(&body));
        assert!(err.starts_with("/etc/dewy/app.toml:"), "{err}");
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

#[test]
fn a_window_shorter_than_a_second_is_refused() {
    for short in ["500ms", "0.5s", "0.0000001s"] {
        let err = error(&format!(
            "\n[[window]]\ndays = [\"mon\"]\nstart = \"22:00\"\nlength = \"{short}\"\n"
        ));
        assert!(
            err.contains("window.length") && err.contains("is not between 1s and 7d"),
            "{err}"
        );
    }
    let w = windows("[[window]]\ndays = [\"mon\"]\nstart = \"22:00\"\nlength = \"1s\"\n");
    assert_eq!(w[0].length, MIN_LENGTH);
}

#[test]
fn no_windows_means_always() {
    assert_eq!(state_at(&[], at("2026-01-05T12:00:00Z")), None);
}

#[test]
fn a_window_crossing_midnight_stays_open_into_the_next_day() {
    // Weekdays 22:00 UTC for 3 hours (2026-01-05 is a Monday).
    let w = windows("[[window]]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nstart = \"22:00\"\nlength = \"3h\"\n");
    assert_eq!(
        state_at(&w, at("2026-01-05T21:59:59Z")),
        closed("2026-01-05T22:00:00Z")
    );
    assert_eq!(
        state_at(&w, at("2026-01-05T22:00:00Z")),
        open("2026-01-06T01:00:00Z")
    );
    assert_eq!(
        state_at(&w, at("2026-01-06T00:30:00Z")),
        open("2026-01-06T01:00:00Z")
    );
    assert_eq!(
        state_at(&w, at("2026-01-06T01:00:00Z")),
        closed("2026-01-06T22:00:00Z")
    );
    // Friday's window runs into Saturday; then nothing until Monday.
    assert_eq!(
        state_at(&w, at("2026-01-10T00:59:00Z")),
        open("2026-01-10T01:00:00Z")
    );
    assert_eq!(
        state_at(&w, at("2026-01-10T12:00:00Z")),
        closed("2026-01-12T22:00:00Z")
    );
}

#[test]
fn a_sunday_window_wraps_into_monday_and_the_next_week() {
    let w = windows("[[window]]\ndays = [\"sun\"]\nstart = \"23:30\"\nlength = \"2h\"\n");
    assert_eq!(
        state_at(&w, at("2026-01-11T23:00:00Z")),
        closed("2026-01-11T23:30:00Z")
    );
    assert_eq!(
        state_at(&w, at("2026-01-12T01:00:00Z")),
        open("2026-01-12T01:30:00Z")
    );
    assert_eq!(
        state_at(&w, at("2026-01-12T01:30:00Z")),
        closed("2026-01-18T23:30:00Z")
    );
    // A week-long window never closes.
    let always = windows("[[window]]\ndays = [\"mon\"]\nstart = \"00:00\"\nlength = \"7d\"\n");
    for t in [
        "2026-01-05T00:00:00Z",
        "2026-01-08T13:00:00Z",
        "2026-01-11T23:59:59Z",
    ] {
        assert!(
            matches!(state_at(&always, at(t)), Some(WindowState::Open { .. })),
            "{t}"
        );
    }
}

#[test]
fn local_times_follow_daylight_saving_changes() {
    // New York: 09:00 local is 14:00 UTC in winter, 13:00 UTC in summer.
    let ny = windows(
        "[[window]]\ndays = [\"sun\"]\nstart = \"09:00\"\nlength = \"1h\"\ntime-zone = \"America/New_York\"\n",
    );
    assert_eq!(
        state_at(&ny, at("2026-01-11T12:00:00Z")),
        closed("2026-01-11T14:00:00Z")
    );
    assert_eq!(
        state_at(&ny, at("2026-07-05T12:00:00Z")),
        closed("2026-07-05T13:00:00Z")
    );
    // The change itself (2026-03-08, 02:00 -> 03:00): 09:00 that day is already summer time.
    assert_eq!(
        state_at(&ny, at("2026-03-08T06:00:00Z")),
        closed("2026-03-08T13:00:00Z")
    );

    // Berlin springs forward on 2026-03-29 at 02:00 -> 03:00: 02:30 does not exist that day and
    // is taken as 03:30 CEST (01:30 UTC); the length is elapsed time.
    let gap = windows(
        "[[window]]\ndays = [\"sun\"]\nstart = \"02:30\"\nlength = \"1h\"\ntime-zone = \"Europe/Berlin\"\n",
    );
    assert_eq!(
        state_at(&gap, at("2026-03-29T01:00:00Z")),
        closed("2026-03-29T01:30:00Z")
    );
    assert_eq!(
        state_at(&gap, at("2026-03-29T01:30:00Z")),
        open("2026-03-29T02:30:00Z")
    );
    // The Sunday before, 02:30 CET is 01:30 UTC; the Sunday after, 02:30 CEST is 00:30 UTC.
    assert_eq!(
        state_at(&gap, at("2026-03-22T01:45:00Z")),
        open("2026-03-22T02:30:00Z")
    );
    assert_eq!(
        state_at(&gap, at("2026-04-05T00:45:00Z")),
        open("2026-04-05T01:30:00Z")
    );

    // Berlin falls back on 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice; the window starts
    // at the first (CEST, 00:30 UTC) and lasts one hour of elapsed time.
    assert_eq!(
        state_at(&gap, at("2026-10-25T00:00:00Z")),
        closed("2026-10-25T00:30:00Z")
    );
    assert_eq!(
        state_at(&gap, at("2026-10-25T01:00:00Z")),
        open("2026-10-25T01:30:00Z")
    );
    assert_eq!(
        state_at(&gap, at("2026-10-25T01:30:00Z")),
        closed("2026-11-01T01:30:00Z")
    );
}

#[test]
fn several_windows_the_earliest_opening_and_the_latest_end() {
    let w = windows(
        "[[window]]\ndays = [\"mon\"]\nstart = \"10:00\"\nlength = \"2h\"\n\
         [[window]]\ndays = [\"mon\"]\nstart = \"11:00\"\nlength = \"3h\"\n\
         [[window]]\ndays = [\"mon\"]\nstart = \"07:00\"\nlength = \"30m\"\ntime-zone = \"Asia/Tokyo\"\n",
    );
    // 07:00 in Tokyo on Monday is 22:00 UTC on Sunday.
    assert_eq!(
        state_at(&w, at("2026-01-11T21:00:00Z")),
        closed("2026-01-11T22:00:00Z")
    );
    assert_eq!(
        state_at(&w, at("2026-01-05T09:00:00Z")),
        closed("2026-01-05T10:00:00Z")
    );
    assert_eq!(
        state_at(&w, at("2026-01-05T11:30:00Z")),
        open("2026-01-05T14:00:00Z")
    );
    assert_eq!(
        state_at(&w, at("2026-01-05T14:00:00Z")),
        closed("2026-01-11T22:00:00Z")
    );
}

#[test]
fn the_state_is_consistent_minute_by_minute_across_a_daylight_saving_change() {
    // For two weeks around Berlin's spring change, sampled every 7 minutes: a closed state's
    // opening is open and the second before it closed; an open state's end is closed.
    let w = windows(
        "[[window]]\ndays = [\"sat\", \"sun\"]\nstart = \"01:45\"\nlength = \"95m\"\ntime-zone = \"Europe/Berlin\"\n",
    );
    let second = chrono::Duration::seconds(1);
    let mut t = at("2026-03-21T00:00:00Z");
    let mut openings = 0;
    while t < at("2026-04-04T00:00:00Z") {
        match state_at(&w, t).expect("windows") {
            WindowState::Closed { opens } => {
                assert!(opens > t, "{t}");
                assert!(
                    matches!(state_at(&w, opens), Some(WindowState::Open { .. })),
                    "{opens}"
                );
                assert!(
                    matches!(state_at(&w, opens - second), Some(WindowState::Closed { opens: o }) if o == opens),
                    "{opens}"
                );
            }
            WindowState::Open { until } => {
                openings += 1;
                assert!(
                    until > t && until - t <= chrono::Duration::minutes(95),
                    "{t} {until}"
                );
                assert!(
                    matches!(state_at(&w, until), Some(WindowState::Closed { .. })),
                    "{until}"
                );
            }
        }
        t += chrono::Duration::minutes(7);
    }
    assert!(openings > 0);
}
