//! D-Bus: bus names and paths, the deployer's and watcher's interfaces, and client proxies.
//!
//! Interfaces (object path → interface, on the bus name of the app's daemon):
//! - `io.dewy.Deployer.<app>`: `/io/dewy/Deployer1` → `io.dewy.Deployer1`
//! - `io.dewy.Watcher.<app>`: `/io/dewy/Watcher1` → `io.dewy.Watcher1`
//! - `io.dewy.Proxy.<app>`: `/io/dewy/Proxy1` → `io.dewy.Proxy1`

mod caller;
pub mod client;
pub mod error;
pub mod names;
pub mod proxy_control;
mod server;
pub mod signals;
pub mod wire;

pub use names::BusChoice;
pub use server::{serve_deployer, serve_proxy, serve_watcher, DeployerIface, ProxyIface, WatcherIface};
