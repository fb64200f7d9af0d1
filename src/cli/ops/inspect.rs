//! `dewy status` and `dewy history`: what the deployer and the watcher report, printed for the
//! operator (or passed on as JSON).

use anyhow::Context;

use super::{connect, pick_app, plain, time};
use crate::bus::client::{DeployerClient, WatcherClient};
use crate::cli::args::{HistoryArgs, StatusArgs};
use crate::deploy::state::{HistoryEntry, Outcome};
use crate::deploy::Status;
use crate::watch::WatchStatus;

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
        Some(changes) => crate::cli::follow::print(&conn, &app, &d, changes, a.json).await,
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
