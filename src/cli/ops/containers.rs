//! `dewy container list`: the app's containers from its deployer over the bus, or from Go
//! Dewy's admin API.

use super::{connect, pick_app};
use crate::bus::client::DeployerClient;
use crate::cli::args::ListArgs;

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
