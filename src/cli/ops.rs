//! Operator commands: deploy, rollback, pause, resume, restart, forget-bad and check-now over the
//! bus, with the connection and app choice they share; status and history, config check and
//! container list are in submodules.

use anyhow::Context;
use zbus::Connection;

use super::args::{AppArgs, BusArgs, DeployArgs, PauseArgs, VersionArgs};
use crate::bus::client::{DeployerClient, WatcherClient};
use crate::bus::BusChoice;
use crate::deploy::DeployResult;

mod config_check;
mod containers;
mod inspect;

pub use config_check::config_check;
pub use containers::container_list;
pub use inspect::{history, status};

async fn connect(bus: &BusArgs) -> anyhow::Result<Connection> {
    let choice: BusChoice = bus.bus.parse().unwrap_or_default();
    choice
        .connect()
        .await
        .with_context(|| format!("connecting to the {choice} bus"))
}

/// The app named on the command line, or the only one running.
async fn pick_app(conn: &Connection, app: Option<&str>) -> anyhow::Result<String> {
    if let Some(a) = app {
        return Ok(a.to_string());
    }
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let prefix = "io.dewy.Deployer.";
    let apps: Vec<String> = dbus
        .list_names()
        .await?
        .into_iter()
        .filter_map(|n| n.as_str().strip_prefix(prefix).map(str::to_string))
        .collect();
    match apps.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no dewy deployer is running on this bus; name the app"),
        many => anyhow::bail!("several apps run ({}); name one", many.join(", ")),
    }
}

/// Text from another process made safe for a terminal: control characters (escape sequences,
/// carriage returns) are shown escaped instead of acted upon.
pub(super) fn plain(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Refuse a version the deployer would refuse anyway, before asking it.
fn check_version(version: &str) -> anyhow::Result<()> {
    crate::registry::version::check_text(version).context("the version given")
}

fn print_result(r: &DeployResult) -> i32 {
    match r {
        DeployResult::Deployed { version, release } => {
            println!("{} is live ({})", plain(version), plain(release));
            0
        }
        DeployResult::Skipped { version, reason } => {
            println!("{}: nothing to do: {}", plain(version), plain(reason));
            0
        }
        DeployResult::Failed { version, error } => {
            eprintln!("{}: failed: {}", plain(version), plain(error));
            1
        }
    }
}

/// A time as the JSON status writes it (RFC 3339, UTC).
fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

pub async fn deploy(d: DeployArgs) -> anyhow::Result<i32> {
    let a = &d.target;
    let conn = connect(&a.bus).await?;
    check_version(&a.version)?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    let overrides = crate::deploy::Overrides {
        pause: d.ignore_pause,
        window: d.ignore_window,
    };
    let r = DeployerClient::new(&conn, &app)
        .await?
        .deploy_with(&a.version, overrides)
        .await?;
    Ok(print_result(&r))
}

pub async fn pause(p: PauseArgs) -> anyhow::Result<i32> {
    let reason = crate::deploy::pause::check_reason(&p.reason).context("--reason")?;
    let a = &p.app;
    let conn = connect(&a.bus).await?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    let (new, pause) = DeployerClient::new(&conn, &app).await?.pause(&reason).await?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "app": app, "paused": pause, "already": !new })
        );
    } else if new {
        println!("{} {}", plain(&app), plain(&pause.describe()));
    } else {
        println!(
            "{} was already {} (unchanged)",
            plain(&app),
            plain(&pause.describe())
        );
    }
    Ok(0)
}

pub async fn resume(a: AppArgs) -> anyhow::Result<i32> {
    let conn = connect(&a.bus).await?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    let since = DeployerClient::new(&conn, &app).await?.resume().await?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "app": app, "resumed": since.is_some(), "paused_since": since })
        );
    } else {
        match since {
            Some(t) => println!(
                "{} resumed (paused since {}); the next check deploys a held-back release",
                plain(&app),
                time(&t)
            ),
            None => println!("{} was not paused", plain(&app)),
        }
    }
    Ok(0)
}

pub async fn rollback(a: AppArgs) -> anyhow::Result<i32> {
    let conn = connect(&a.bus).await?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    let r = DeployerClient::new(&conn, &app).await?.rollback().await?;
    Ok(print_result(&r))
}

pub async fn restart(a: AppArgs) -> anyhow::Result<i32> {
    let conn = connect(&a.bus).await?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    DeployerClient::new(&conn, &app).await?.restart().await?;
    println!("{app} restarted");
    Ok(0)
}

pub async fn forget_bad(a: VersionArgs) -> anyhow::Result<i32> {
    check_version(&a.version)?;
    let conn = connect(&a.bus).await?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    if DeployerClient::new(&conn, &app)
        .await?
        .forget_bad(&a.version)
        .await?
    {
        println!("{} may be deployed again", a.version);
        Ok(0)
    } else {
        println!("{} was not marked bad", a.version);
        Ok(0)
    }
}

pub async fn check_now(a: AppArgs) -> anyhow::Result<i32> {
    let conn = connect(&a.bus).await?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    let (outcome, version, detail) = WatcherClient::new(&conn, &app).await?.check_now().await?;
    println!("{} {} {}", plain(&outcome), plain(&version), plain(&detail));
    Ok(if matches!(outcome.as_str(), "error" | "failed") {
        1
    } else {
        0
    })
}
