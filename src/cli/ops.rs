//! Operator commands: status, history, deploy, rollback, forget-bad, check-now, config check.

use std::path::Path;

use anyhow::Context;
use zbus::Connection;

use super::args::{AppArgs, BusArgs, HistoryArgs, VersionArgs};
use crate::bus::client::{DeployerClient, WatcherClient};
use crate::bus::BusChoice;
use crate::config::{self, Sources};
use crate::deploy::DeployResult;

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
fn plain(text: &str) -> String {
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

pub async fn status(a: AppArgs) -> anyhow::Result<i32> {
    let conn = connect(&a.bus).await?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    let d = DeployerClient::new(&conn, &app).await?.status_json().await?;
    let w = match WatcherClient::new(&conn, &app).await {
        Ok(c) => c.status_json().await.ok(),
        Err(_) => None,
    };
    if a.json {
        println!("{}", serde_json::json!({ "deployer": d, "watcher": w }));
        return Ok(0);
    }
    let s = |v: &serde_json::Value, k: &str| plain(v.get(k).and_then(|x| x.as_str()).unwrap_or("-"));
    println!("app:       {}", s(&d, "app"));
    println!("mode:      {}", s(&d, "mode"));
    println!("registry:  {}", s(&d, "registry"));
    println!("root:      {}", s(&d, "root"));
    match d.get("live").filter(|v| !v.is_null()) {
        Some(l) => println!(
            "live:      {} (releases/{}, since {})",
            s(l, "version"),
            s(l, "release"),
            s(l, "deployed_at")
        ),
        None => println!("live:      nothing deployed yet"),
    }
    if let Some(p) = d.get("previous").filter(|v| !v.is_null()) {
        println!("previous:  {} (releases/{})", s(p, "version"), s(p, "release"));
    }
    println!("activity:  {}", s(&d, "activity"));
    if let Some(c) = d.get("crash_loop").and_then(|v| v.as_str()) {
        println!("crash loop: {c}");
    }
    if let Some(w) = &w {
        println!("latest:    {}", s(w, "latest"));
        println!("checked:   {}", s(w, "last_check"));
        println!("next:      {}", s(w, "next_check"));
        if let Some(last) = w.get("last").filter(|v| !v.is_null()) {
            println!(
                "last check: {} {} {}",
                s(last, "outcome"),
                s(last, "version"),
                s(last, "detail")
            );
        }
    }
    if let Some(reps) = d
        .get("replicas")
        .and_then(|b| b.as_array())
        .filter(|b| !b.is_empty())
    {
        println!("replicas:");
        for r in reps {
            let backends = r
                .get("backends")
                .and_then(|b| b.as_object())
                .map(|b| {
                    b.iter()
                        .map(|(port, addr)| format!(":{port}->{}", addr.as_str().unwrap_or("-")))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            println!("  {}  {}  {}", s(r, "name"), s(r, "version"), backends);
        }
    }
    if let Some(bad) = d.get("bad").and_then(|b| b.as_array()).filter(|b| !b.is_empty()) {
        println!("bad versions:");
        for b in bad {
            println!("  {}  {}  {}", s(b, "version"), s(b, "at"), s(b, "reason"));
        }
    }
    Ok(0)
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
    for e in h.as_array().into_iter().flatten() {
        let s = |k: &str| e.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
        let ms = e.get("duration_ms").and_then(|x| x.as_u64()).unwrap_or(0);
        println!(
            "{:<25} {:<25} {:<12} {:>8.1}s  {}",
            s("at").chars().take(19).collect::<String>().replace('T', " "),
            format!("{} -> {}", s("from"), s("to")),
            s("result"),
            ms as f64 / 1000.0,
            s("reason")
        );
    }
    Ok(0)
}

pub async fn deploy(a: VersionArgs) -> anyhow::Result<i32> {
    let conn = connect(&a.bus).await?;
    check_version(&a.version)?;
    let app = pick_app(&conn, a.app.as_deref()).await?;
    let r = DeployerClient::new(&conn, &app).await?.deploy(&a.version).await?;
    Ok(print_result(&r))
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

/// `dewy container list`: the running containers of an app, from its deployer.
pub async fn container_list(a: AppArgs) -> anyhow::Result<i32> {
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
    if rows.is_empty() {
        println!("No containers found.");
        return Ok(0);
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
    for (name, upstream, at, _) in &rows {
        println!("{upstream:<w$}  {:<19}  {name}", local(at));
    }
    Ok(0)
}
