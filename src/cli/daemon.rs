//! What `dewy-deployer` ([`super::deployer_daemon`]) and `dewy-watcher`
//! ([`super::watcher_daemon`]) both do first: arguments, settings, logging, the registry, the bus
//! and a runtime (`dewy-proxy` is in [`super::proxy_daemon`]).

use std::sync::Arc;

use clap::Parser;

use super::args::DaemonArgs;
use super::{config_failure, fail, init_logging, runtime};
use crate::bus::BusChoice;
use crate::config::{self, Settings, Sources};
use crate::registry;

fn load(args: &DaemonArgs, identifier: &str) -> Result<Settings, i32> {
    let mut sources = Sources {
        config: args.config.clone(),
        // The watcher decides nothing on signatures (the deployer checks them with its own
        // keys), and a `credential:` key is loaded only into the deployer's unit.
        skip_keys: identifier == "dewy-watcher",
        ..Default::default()
    };
    sources.flags.log_level = args.log_level.clone();
    sources.flags.log_format = args.log_format;
    let settings = config::load(&args.app, &sources).map_err(|e| config_failure(&e))?;
    init_logging(&settings, identifier)?;
    Ok(settings)
}

/// What every daemon needs before its own work: arguments, settings with logging, a registry,
/// the bus to use and a runtime.
pub(super) struct Prepared {
    pub(super) settings: Settings,
    pub(super) registry: Arc<dyn registry::Registry>,
    pub(super) bus: BusChoice,
    pub(super) rt: tokio::runtime::Runtime,
}

pub(super) fn prepare(identifier: &str) -> Result<Prepared, i32> {
    let args = DaemonArgs::parse();
    let settings = load(&args, identifier)?;
    let registry =
        super::open_registry(&settings).map_err(|e| fail("opening the registry", format!("{e:#}")))?;
    Ok(Prepared {
        settings,
        registry,
        bus: args.bus.bus.parse().unwrap_or_default(),
        rt: runtime()?,
    })
}
