//! Operator commands: status, history, deploy, rollback, forget-bad, check-now, config check.

use std::path::Path;

use anyhow::Context;
use zbus::Connection;

use super::args::{AppArgs, BusArgs, DeployArgs, HistoryArgs, ListArgs, PauseArgs, StatusArgs, VersionArgs};
use crate::bus::client::{DeployerClient, WatcherClient};
use crate::bus::BusChoice;
use crate::config::{self, Sources};
use crate::deploy::state::{HistoryEntry, Outcome};
use crate::deploy::{DeployResult, Status};
use crate::watch::WatchStatus;

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

pub async fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let a = &args.app;
    let conn = connect(&a.bus).await?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    // Subscribed before the status is read, so that no change in between is missed.
    let changes = match args.follow {
        true => Some(crate::bus::client::follow(&conn, &app).await?),
        false => None,
    };
    let d = DeployerClient::new(&conn, &app).await?.status_json().await?;
    let w = match WatcherClient::new(&conn, &app).await {
        Ok(c) => c.status_json().await.ok(),
        Err(_) => None,
    };
    if a.json {
        println!("{}", serde_json::json!({ "deployer": d, "watcher": w }));
    }
    let d: Status = serde_json::from_value(d).context("reading the deployer's status")?;
    if !a.json {
        print_status(&d, w)?;
    }
    match changes {
        Some(changes) => super::follow::print(&conn, &app, &d, changes, a.json).await,
        None => Ok(0),
    }
}

fn print_status(d: &Status, w: Option<serde_json::Value>) -> anyhow::Result<()> {
    let w: Option<WatchStatus> = w
        .map(serde_json::from_value)
        .transpose()
        .context("reading the watcher's status")?;
    println!("app:       {}", plain(&d.app));
    println!("mode:      {}", plain(&d.mode));
    println!("registry:  {}", plain(&d.registry));
    println!("root:      {}", plain(&d.root));
    match &d.live {
        Some(l) => println!(
            "live:      {} (releases/{}, since {})",
            plain(&l.version),
            plain(&l.release),
            time(&l.deployed_at)
        ),
        None => println!("live:      nothing deployed yet"),
    }
    if let Some(p) = &d.previous {
        println!(
            "previous:  {} (releases/{})",
            plain(&p.version),
            plain(&p.release)
        );
    }
    println!("activity:  {}", plain(&d.activity));
    if let Some(s) = &d.serving {
        println!("serving:   {}", plain(s));
    }
    if let Some(c) = &d.crash_loop {
        println!("crash loop: {}", plain(c));
    }
    if let Some(p) = &d.paused {
        println!("paused:    {}", plain(&p.detail()));
    }
    if let Some(w) = &d.window {
        println!("window:    {}", plain(w));
    }
    if let Some(w) = &d.waiting {
        println!("waiting:   {}", plain(w));
    }
    if let Some(w) = &w {
        println!("latest:    {}", plain(w.latest.as_deref().unwrap_or("-")));
        println!(
            "checked:   {}",
            w.last_check.as_ref().map_or_else(|| "-".into(), time)
        );
        println!(
            "next:      {}",
            w.next_check.as_ref().map_or_else(|| "-".into(), time)
        );
        if let Some(last) = &w.last {
            println!(
                "last check: {} {} {}",
                plain(&last.outcome),
                plain(&last.version),
                plain(&last.detail)
            );
        }
    }
    if !d.replicas.is_empty() {
        println!("replicas:");
        for r in &d.replicas {
            let backends = r
                .backends
                .iter()
                .map(|(port, addr)| format!(":{port}->{addr}"))
                .collect::<Vec<_>>()
                .join(" ");
            println!("  {}  {}  {}", plain(&r.name), plain(&r.version), backends);
        }
    }
    if !d.bad.is_empty() {
        println!("bad versions:");
        for b in &d.bad {
            println!("  {}  {}  {}", plain(&b.version), time(&b.at), plain(&b.reason));
        }
    }
    Ok(())
}

/// A time as the JSON status writes it (RFC 3339, UTC).
fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

pub async fn history(a: HistoryArgs) -> anyhow::Result<i32> {
    let conn = connect(&a.app.bus).await?;
    let app = pick_app(&conn, a.app.app.as_deref()).await?;
    let h = DeployerClient::new(&conn, &app)
        .await?
        .history_json(a.limit)
        .await?;
    if a.app.json {
        println!("{h}");
        return Ok(0);
    }
    println!(
        "{:<25} {:<25} {:<12} {:>9}  REASON",
        "TIME", "FROM -> TO", "RESULT", "DURATION"
    );
    let entries: Vec<HistoryEntry> = serde_json::from_value(h).context("reading the deployer's history")?;
    for e in &entries {
        println!(
            "{:<25} {:<25} {:<12} {:>8.1}s  {}",
            time(&e.at).chars().take(19).collect::<String>().replace('T', " "),
            format!("{} -> {}", plain(e.from.as_deref().unwrap_or("-")), plain(&e.to)),
            outcome(e.result),
            e.duration_ms as f64 / 1000.0,
            plain(&e.reason)
        );
    }
    Ok(0)
}

/// How a history entry's result is written (`deployed`, `rolled-back`…), as in the JSON.
fn outcome(o: Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
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

/// `dewy config check FILE`: validate and print the effective settings (exit 78 when bad), then
/// ask the release source for its newest release (exit 1 when it cannot be reached or refuses
/// the credentials). The findings are TOML comments, so the output stays valid TOML.
pub fn config_check(rt: &tokio::runtime::Runtime, file: &Path, app: Option<&str>, offline: bool) -> i32 {
    let app = app
        .map(str::to_string)
        .or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "app".into());
    let sources = Sources {
        config: Some(file.to_path_buf()),
        ..Default::default()
    };
    let settings = match config::load(&app, &sources) {
        Ok(settings) => settings,
        Err(e) => return super::config_failure(&e),
    };
    match toml::to_string(&settings) {
        Ok(text) => print!("{text}"),
        Err(e) => eprintln!("(cannot print the settings: {e})"),
    }
    if offline {
        return 0;
    }
    let (code, line) = rt.block_on(probe_source(&settings));
    println!("# {line}");
    if code != 0 {
        eprintln!("Error: {line}");
    }
    code
}

/// How long `config check` waits for the source.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Ask the source for its newest release: (exit code, one line for the operator).
async fn probe_source(settings: &config::Settings) -> (i32, String) {
    use crate::registry::CheckError;
    let registry = match super::open_registry(settings) {
        Ok(r) => r,
        Err(e) => return (1, format!("source {}: {e:#}", settings.registry)),
    };
    let answer = tokio::time::timeout(PROBE_TIMEOUT, registry.latest()).await;
    let source = &settings.registry;
    match answer {
        Err(_) => (1, format!("source {source}: no answer within {PROBE_TIMEOUT:?}")),
        Ok(Ok(release)) => (
            0,
            format!(
                "source {source}: reachable; newest release {} ({})",
                release.version, release.artifact
            ),
        ),
        Ok(Err(CheckError::ArtifactNotFound { version, .. })) => (
            0,
            format!("source {source}: reachable; newest release {version} has no artifact for this host yet"),
        ),
        Ok(Err(CheckError::NoRelease(why))) => (0, format!("source {source}: reachable; {why}")),
        Ok(Err(CheckError::RateLimited { retry_after })) => (
            0,
            format!("source {source}: reachable but rate limited (retry after {retry_after:?})"),
        ),
        Ok(Err(CheckError::Other(e))) => (1, format!("source {source}: cannot be used: {e:#}")),
    }
}

/// `dewy container list`: the running containers of an app, from its deployer over the bus, or
/// from the admin API with `--admin-port`.
pub async fn container_list(l: ListArgs) -> anyhow::Result<i32> {
    if let Some(port) = l.admin_port {
        return container_list_admin(port, l.app.json).await;
    }
    let a = l.app;
    let conn = connect(&a.bus).await?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    let mut rows = DeployerClient::new(&conn, &app).await?.containers().await?;
    rows.sort();
    if a.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, upstream, at, version)| {
                serde_json::json!({ "name": name, "upstream": upstream, "deployed_at": at, "version": version })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(0);
    }
    print_containers(&rows);
    Ok(0)
}

/// Go Dewy's `container list`: the admin API of the first instance answering from `port`.
async fn container_list_admin(port: u16, json: bool) -> anyhow::Result<i32> {
    let port = if port == 0 {
        crate::admin::DEFAULT_PORT
    } else {
        port
    };
    let listing = match crate::admin::client::list_containers(port).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return Ok(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string(&listing.containers)?);
        return Ok(0);
    }
    if listing.port != port {
        println!("(Connected to admin API on port {})", listing.port);
    }
    let rows: Vec<(String, String, String, String)> = listing
        .containers
        .into_iter()
        .map(|c| (c.name, c.ip_port, c.deployed_at, c.version))
        .collect();
    print_containers(&rows);
    Ok(0)
}

/// The UPSTREAM, DEPLOY TIME (local time) and NAME table of (name, upstream, deploy time, _).
fn print_containers(rows: &[(String, String, String, String)]) {
    if rows.is_empty() {
        println!("No containers found.");
        return;
    }
    let local = |at: &str| {
        chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|_| at.to_string())
    };
    let w = rows
        .iter()
        .map(|r| r.1.len())
        .max()
        .unwrap_or(0)
        .max("UPSTREAM".len());
    println!("{:<w$}  {:<19}  NAME", "UPSTREAM", "DEPLOY TIME");
    for (name, upstream, at, _) in rows {
        println!("{upstream:<w$}  {:<19}  {name}", local(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_results_print_as_the_json_writes_them() {
        let t = chrono::Utc::now();
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            serde_json::Value::String(time(&t))
        );
        assert_eq!(outcome(Outcome::RolledBack), "rolled-back");
    }
}
