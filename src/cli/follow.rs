//! `dewy status --follow`: the deployer's changes as they happen, one line each (or one JSON
//! object per line), until Ctrl-C. A restart of the deployer is shown and followed through.

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use zbus::Connection;

use super::ops::plain;
use crate::bus::client::Change;
use crate::deploy::Status;

/// Print `changes` after the status `shown`, skipping values it already showed.
pub(super) async fn print(
    conn: &Connection,
    app: &str,
    shown: &Status,
    mut changes: BoxStream<'static, Change>,
    json: bool,
) -> anyhow::Result<i32> {
    let name = crate::bus::names::deployer_name(app);
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, name.as_str())])
        .await?;
    let mut activity = shown.activity.clone();
    let mut live = shown.live.as_ref().map(|l| l.version.clone()).unwrap_or_default();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return Ok(0) };
                let fresh = match &change {
                    Change::Activity(a) => std::mem::replace(&mut activity, a.clone()) != *a,
                    Change::Live(v) => std::mem::replace(&mut live, v.clone()) != *v,
                    _ => true,
                };
                if fresh {
                    println!("{}", line(&change, json));
                }
            }
            owner = owners.next() => {
                let Some(owner) = owner else { return Ok(0) };
                let Ok(args) = owner.args() else { continue };
                let event = if args.new_owner().is_some() { "deployer-started" } else { "deployer-stopped" };
                println!("{}", notice(event, json));
            }
            _ = &mut interrupt => return Ok(0),
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn notice(event: &str, json: bool) -> String {
    if json {
        return serde_json::json!({ "at": now(), "event": event }).to_string();
    }
    let text = match event {
        "deployer-started" => "deployer started",
        _ => "deployer stopped",
    };
    format!("{}  {text}", now())
}

/// One change as a line of text or a JSON object.
fn line(change: &Change, json: bool) -> String {
    if json {
        let v = match change {
            Change::Activity(a) => serde_json::json!({ "event": "activity", "activity": a }),
            Change::Live(v) => serde_json::json!({ "event": "live", "version": v }),
            Change::Deployed {
                version,
                previous,
                duration_ms,
            } => serde_json::json!({
                "event": "deployed", "version": version, "previous": previous, "duration_ms": duration_ms
            }),
            Change::Failed {
                version,
                stage,
                error,
                next_step,
            } => serde_json::json!({
                "event": "failed", "version": version, "stage": stage, "error": error, "next_step": next_step
            }),
            Change::RolledBack { from, to, reason } => {
                serde_json::json!({ "event": "rolled-back", "from": from, "to": to, "reason": reason })
            }
        };
        let mut v = v;
        v["at"] = serde_json::Value::String(now());
        return v.to_string();
    }
    let text = match change {
        Change::Activity(a) => format!("activity: {}", plain(a)),
        Change::Live(v) if v.is_empty() => "live: nothing".to_string(),
        Change::Live(v) => format!("live: {}", plain(v)),
        Change::Deployed {
            version,
            previous,
            duration_ms,
        } => {
            let from = match previous.as_str() {
                "" => String::new(),
                p => format!(" (was {})", plain(p)),
            };
            format!(
                "deployed {}{from} in {:.1} s",
                plain(version),
                *duration_ms as f64 / 1000.0
            )
        }
        Change::Failed {
            version,
            stage,
            error,
            next_step,
        } => format!(
            "{} of {} failed: {}; next: {}",
            plain(stage),
            plain(if version.is_empty() { "?" } else { version }),
            plain(error),
            plain(next_step)
        ),
        Change::RolledBack { from, to, reason } => {
            format!(
                "rolled back from {} to {}: {}",
                plain(from),
                plain(to),
                plain(reason)
            )
        }
    };
    format!("{}  {text}", now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_json_lines_parse() {
        let c = Change::Failed {
            version: "v2\u{1b}[2J".into(),
            stage: "deploy".into(),
            error: "bad\rthing".into(),
            next_step: "retry".into(),
        };
        let text = line(&c, false);
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(
            text.contains("deploy of v2\\u{1b}[2J failed: bad\\rthing; next: retry"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&line(&c, true)).expect("json");
        assert_eq!(v["event"], "failed");
        assert_eq!(v["version"], "v2\u{1b}[2J");
        let d = line(
            &Change::Deployed {
                version: "v2".into(),
                previous: "v1".into(),
                duration_ms: 1500,
            },
            false,
        );
        assert!(d.ends_with("deployed v2 (was v1) in 1.5 s"), "{d}");
    }
}
