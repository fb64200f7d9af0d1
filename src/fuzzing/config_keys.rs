//! Fuzzing the config keys that are parsed on their own, past TOML: the `fleet-lock` URL (both
//! the FleetLock and the etcd form) and the same text as a `fleet-store`, `[[window]]` tables and the `[app-properties]` table. Each
//! entry point checks what the parsers promise: the ranges the docs give, values shown back by
//! `dewy config check` that parse to the same values, and passwords kept out of messages.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::etcd_lock::{self, EtcdLock};
use crate::config::fleet_store::{self, StoreBackend};
use crate::config::window::{self, DeployWindow, WindowState};
use crate::config::{app_unit, fleet_lock};

/// The password put in every `fleet-lock` URL that has one, to look for in what comes out.
const PASSWORD: &str = "Pw-4Fz9q";

/// `fleet-lock` (first line), `fleet-group` (second line, when there is one) and `fleet-id`
/// (third line): parsed as written, and again with any password replaced by one that must not
/// appear in a message or in the URL kept for display.
pub fn fleet_lock(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let url = lines.next().unwrap_or_default();
    let (group, id) = (lines.next(), lines.next());
    fleet_lock_checked(url, group, id);
    fleet_store_checked(url, id);
    // The password text already in the input (in a host or a path, where it is shown rightly),
    // also once a URL parser dropped tabs and line breaks and decoded percent escapes.
    let bare: String = text
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let decoded = percent_encoding::percent_decode_str(&bare).decode_utf8_lossy();
    if bare.contains(PASSWORD) || decoded.contains(PASSWORD) {
        return;
    }
    if let Ok(mut u) = url::Url::parse(url) {
        if u.password().is_some() && u.set_password(Some(PASSWORD)).is_ok() {
            let said = fleet_lock_checked(u.as_str(), group, id);
            assert!(!said.contains(PASSWORD), "the password is shown: {said}");
            let said = fleet_store_checked(u.as_str(), id);
            assert!(!said.contains(PASSWORD), "the store's password is shown: {said}");
        }
    }
    // The same text with a password right after its first `://`, when that makes a URL that
    // does not parse (a parser that fails cannot say where the password ends) or one whose
    // password it is (not when that `://` was in the path: `https:/h/x://…`).
    let with = url.replacen("://", &format!("://u:{PASSWORD}@"), 1);
    let credential = match url::Url::parse(&with) {
        Ok(u) => u.password().is_some_and(|p| p.contains(PASSWORD)),
        Err(_) => true,
    };
    if url.contains("://") && credential {
        let said = fleet_lock_checked(&with, group, id);
        assert!(!said.contains(PASSWORD), "the password is shown: {said}");
        let said = fleet_store_checked(&with, id);
        assert!(!said.contains(PASSWORD), "the store's password is shown: {said}");
    }
}

/// Parse the text as a `fleet-store` (wave 1) and check the result; returns what a user sees.
fn fleet_store_checked(url: &str, id: Option<&str>) -> String {
    let keys = fleet_store::Keys {
        store: Some(url),
        id,
        wave: Some(1),
        ..fleet_store::Keys::default()
    };
    let store = match fleet_store::parse(keys, "app") {
        Err(e) => return e.to_string(),
        Ok(None) => {
            assert!(url.trim().is_empty(), "{url:?} read as no fleet-store");
            return String::new();
        }
        Ok(Some(store)) => store,
    };
    assert!(
        matches!(store.url.password(), None | Some("***")),
        "{} keeps its password",
        store.url
    );
    assert_eq!(
        (store.wave, store.canary_hosts, store.soak),
        (Some(1), 1, fleet_store::DEFAULT_SOAK)
    );
    match &store.backend {
        StoreBackend::Etcd(etcd) => {
            assert!(store.url.query_pairs().all(|(k, _)| k != "slots" && k != "ttl"));
            check_etcd(etcd);
        }
        StoreBackend::Objects(spec) => {
            assert!(matches!(store.url.scheme(), "s3" | "gs"), "{}", store.url);
            assert!(!spec.bucket.is_empty() && spec.registry_ttl.is_none(), "{spec:?}");
            assert!(spec.prefix.is_empty() || spec.prefix.ends_with('/'), "{spec:?}");
        }
    }
    toml::to_string(&store).expect("settings serialize")
}

/// Parse one `fleet-lock` setting and check the result; returns what a user sees of it (the
/// error, or the settings as `dewy config check` shows them).
fn fleet_lock_checked(url: &str, group: Option<&str>, id: Option<&str>) -> String {
    let lock = match fleet_lock::parse(Some(url), group, id, "app") {
        Err(e) => return e.to_string(),
        Ok(None) => {
            assert!(url.trim().is_empty(), "{url:?} read as no fleet-lock");
            return String::new();
        }
        Ok(Some(lock)) => lock,
    };
    for name in [&lock.group, &lock.id] {
        assert!(
            (1..=128).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
            "{name:?}"
        );
    }
    match &lock.etcd {
        None => {
            let u = &lock.url;
            assert!(
                matches!(u.scheme(), "http" | "https") && u.host_str().is_some(),
                "{u}"
            );
            assert!(u.query().is_none() && u.fragment().is_none(), "{u}");
            assert!(u.username().is_empty() && u.password().is_none(), "{u}");
            assert!(u.path().ends_with('/'), "{u}");
            for call in ["v1/pre-reboot", "v1/steady-state"] {
                let joined = u.join(call).expect("a protocol URL");
                assert!(
                    joined.as_str().starts_with(u.as_str()),
                    "{joined} is not under {u}"
                );
            }
            // The URL kept is one the parser takes back as it is.
            let again = fleet_lock::parse(Some(u.as_str()), Some(&lock.group), Some(&lock.id), "app")
                .unwrap_or_else(|e| panic!("{u} is refused: {e}"))
                .expect("a fleet lock");
            assert_eq!(again.url, lock.url);
            assert!(again.etcd.is_none());
        }
        Some(etcd) => {
            assert_eq!(lock.group, fleet_lock::DEFAULT_GROUP);
            assert!(
                matches!(lock.url.password(), None | Some("***")),
                "{} keeps its password",
                lock.url
            );
            check_etcd(etcd);
        }
    }
    serde_json::to_string(&lock).expect("settings serialize")
}

/// What an etcd lock must be, and that the URL rendered from it reads back the same.
fn check_etcd(l: &EtcdLock) {
    assert!((1..=etcd_lock::MAX_SLOTS).contains(&l.slots), "{l:?}");
    assert!(
        (etcd_lock::MIN_TTL..=etcd_lock::MAX_TTL).contains(&l.ttl),
        "{l:?}"
    );
    assert!(
        l.prefix.len() >= 3
            && l.prefix.starts_with('/')
            && l.prefix.ends_with('/')
            && !l.prefix.contains("//"),
        "{l:?}"
    );
    let (scheme, authority) = match (l.tls, l.endpoint.split_once("://")) {
        (true, Some(("https", rest))) => ("etcds", rest),
        (false, Some(("http", rest))) => ("etcd", rest),
        _ => panic!("endpoint and tls disagree: {l:?}"),
    };
    let dialled = url::Url::parse(&l.endpoint)
        .unwrap_or_else(|e| panic!("the endpoint {} is not a URL ({e})", l.endpoint));
    assert!(dialled.host_str().is_some_and(|h| !h.is_empty()), "{l:?}");
    let user = l.user.as_ref().map_or(String::new(), |(u, p)| {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        format!("{}:{}@", enc(u), enc(p))
    });
    let rendered = format!(
        "{scheme}://{user}{authority}{}?slots={}&ttl={}",
        l.prefix,
        l.slots,
        l.ttl.as_secs()
    );
    let u = url::Url::parse(&rendered).unwrap_or_else(|e| panic!("{rendered}: {e}"));
    let again = etcd_lock::parse(&rendered, &u).unwrap_or_else(|e| panic!("{rendered} is refused: {e}"));
    assert_eq!(&again, l, "{rendered}");
}

/// `[[window]]` tables as a config file has them.
#[derive(Deserialize, Serialize)]
struct Windows {
    #[serde(default)]
    window: Vec<DeployWindow>,
}

/// The instant the windows are asked about when the input does not give one.
const NOW: i64 = 1_700_000_000;
/// Windows whose state is computed (the state is a week's arithmetic for each).
const MAX_STATE_WINDOWS: usize = 4;

/// An instant (Unix seconds, first line) and TOML text with `[[window]]` tables (the rest).
/// Accepted windows are within the documented ranges, show back as the same windows, and the
/// state at the instant is consistent: an open window ends later, a closed one opens later and
/// is open then.
pub fn window(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, toml_text) = text.split_once('\n').unwrap_or((text, ""));
    let now = first
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .or_else(|| DateTime::from_timestamp(NOW, 0))
        .expect("a valid instant");
    let Ok(parsed) = toml::from_str::<Windows>(toml_text) else {
        return;
    };
    for w in &parsed.window {
        assert!(w.days.iter().any(|d| *d), "{w:?}");
        assert!(w.start.0 <= 23 && w.start.1 <= 59, "{w:?}");
        assert!(
            (Duration::from_secs(1)..=window::MAX_LENGTH).contains(&w.length),
            "a length outside 1s to 7d accepted: {:?}",
            w.length
        );
    }
    let shown = toml::to_string(&parsed).expect("windows serialize");
    let again = toml::from_str::<Windows>(&shown).unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert_eq!(again.window.len(), parsed.window.len(), "{shown}");
    for (a, w) in again.window.iter().zip(&parsed.window) {
        // Lengths are shown to the millisecond.
        let shown_length = Duration::from_millis(u64::try_from(w.length.as_millis()).unwrap_or(u64::MAX));
        assert_eq!(
            (a.days, a.start, a.length, &a.zone.name),
            (w.days, w.start, shown_length, &w.zone.name),
            "{shown}"
        );
    }
    let ws = &parsed.window[..parsed.window.len().min(MAX_STATE_WINDOWS)];
    match window::state_at(ws, now) {
        None => assert!(ws.is_empty()),
        Some(WindowState::Open { until }) => assert!(until > now, "open until {until}, at {now}"),
        Some(WindowState::Closed { opens }) => {
            assert!(opens > now, "closed, opening at {opens}, at {now}");
            if opens < DateTime::<Utc>::MAX_UTC {
                assert!(
                    matches!(window::state_at(ws, opens), Some(WindowState::Open { .. })),
                    "said to open at {opens} (asked at {now}) but closed then"
                );
            }
        }
    }
}

/// TOML text of an `[app-properties]` table. Every key accepted is converted exactly (no limit
/// becomes another), and the text `dewy config check` shows for it reads back the same.
pub fn app_properties(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = toml::from_str::<BTreeMap<String, toml::Value>>(text) else {
        return;
    };
    let props = match app_unit::parse(&table) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.to_string().contains("app-properties."), "{e}");
            return;
        }
    };
    assert_eq!(props.len(), table.len());
    for (key, p) in table.keys().zip(&props) {
        assert!(p.value > 0, "{p:?}");
        let value = p
            .shown
            .strip_prefix(&format!("{key} = "))
            .unwrap_or_else(|| panic!("{key}: shown as {:?}", p.shown));
        let expected = match p.name {
            "CPUQuotaPerSecUSec" => {
                let percent: u64 = value
                    .strip_suffix('%')
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{key}: shown as {:?}", p.shown));
                percent.checked_mul(10_000)
            }
            "MemoryMax" | "MemoryHigh" | "TasksMax" | "CPUWeight" | "IOWeight" => Some(p.value),
            other => panic!("{key} became the unknown property {other}"),
        };
        assert_eq!(
            Some(p.value),
            expected,
            "{key} = {value:?} is not converted exactly"
        );
        let one = BTreeMap::from([(key.clone(), toml::Value::String(value.to_string()))]);
        let again = app_unit::parse(&one).unwrap_or_else(|e| panic!("{:?} is refused: {e}", p.shown));
        assert_eq!(again.as_slice(), std::slice::from_ref(p));
    }
}
