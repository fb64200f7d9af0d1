//! The binaries' entry points: arguments, settings and logging; the daemons' run loops (one file
//! each), the foreground commands (`dewy server|assets|container`) and the operator commands
//! (`dewy status`, `deploy`, `rollback`…) that speak to the daemons over D-Bus.

pub mod args;
mod daemon;
mod deployer_daemon;
mod follow;
mod foreground;
mod observe;
mod ops;
mod proxy_daemon;
mod watcher_daemon;

pub use deployer_daemon::deployer_main;
pub use proxy_daemon::proxy_main;
pub use watcher_daemon::watcher_main;

use clap::Parser;

use crate::config::{ConfigError, Settings};
use crate::EXIT_CONFIG;
use args::{Cli, Command, ConfigCommand};

/// Make a panic in any thread or task end the whole process with [`crate::EXIT_PANIC`].
///
/// tokio catches a panic in a spawned task and goes on without it: a watcher whose polling
/// task died would stay up, look healthy to systemd (the watchdog is fed elsewhere) and never
/// poll again. Ending the process instead lets `Restart=on-failure` bring everything back.
/// Called first thing by every binary.
pub fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(panic = %info, "A panic ends dewy so that systemd restarts it");
        std::process::exit(crate::EXIT_PANIC);
    }));
}

/// A task of a daemon that should run until shutdown has ended: log why, and give the exit
/// status (a panic normally never gets here, see [`exit_on_panic`]).
fn task_ended(what: &str, result: Result<(), tokio::task::JoinError>) -> i32 {
    match result {
        Err(e) if e.is_panic() => {
            tracing::error!(
                task = what,
                "Task panicked; exiting so that systemd restarts dewy"
            );
            eprintln!("Error: the {what} task panicked");
        }
        Err(e) => {
            tracing::error!(task = what, error = %e, "Task stopped; exiting so that systemd restarts dewy");
            eprintln!("Error: the {what} task stopped: {e}");
        }
        Ok(()) => {
            tracing::error!(
                task = what,
                "Task returned; exiting so that systemd restarts dewy"
            );
            eprintln!("Error: the {what} task returned");
        }
    }
    crate::EXIT_PANIC
}

/// `dewy`: the foreground pipeline and the operator commands.
pub fn dewy_main() -> i32 {
    let cli = Cli::parse();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Assets(a) => return rt.block_on(foreground::run(crate::config::Mode::Assets, a)),
        Command::Server(a) => return rt.block_on(foreground::run(crate::config::Mode::Server, a)),
        Command::Container(args::ContainerArgs {
            sub: Some(args::ContainerCommand::List(a)),
            ..
        }) => rt.block_on(ops::container_list(a)),
        Command::Container(a) => return rt.block_on(foreground::run(crate::config::Mode::Container, a.run)),
        Command::Config(ConfigCommand::Check { file, app, offline }) => {
            return ops::config_check(&rt, &file, app.as_deref(), offline)
        }
        Command::Status(a) => rt.block_on(ops::status(a)),
        Command::History(a) => rt.block_on(ops::history(a)),
        Command::Deploy(a) => rt.block_on(ops::deploy(a)),
        Command::Rollback(a) => rt.block_on(ops::rollback(a)),
        Command::Pause(a) => rt.block_on(ops::pause(a)),
        Command::Resume(a) => rt.block_on(ops::resume(a)),
        Command::ForgetBad(a) => rt.block_on(ops::forget_bad(a)),
        Command::Restart(a) => rt.block_on(ops::restart(a)),
        Command::CheckNow(a) => rt.block_on(ops::check_now(a)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("Error: starting the runtime: {e}");
            1
        })
}

/// Open the release source of `settings` (its slot), behind the fleet's shared cache when one is
/// configured (artifacts and, with a TTL, registry answers shared through a bucket).
fn open_registry(settings: &Settings) -> anyhow::Result<std::sync::Arc<dyn crate::registry::Registry>> {
    let opts = crate::registry::OpenOptions {
        slot: settings.slot.clone(),
        ..crate::registry::OpenOptions::default()
    };
    let origin = crate::registry::open(&settings.registry_location, &opts)?;
    let Some(cache) = &settings.cache else {
        return Ok(origin);
    };
    let spec = cache.spec.clone();
    let ttl = spec.registry_ttl;
    let store = crate::cache::shared::open_store(spec, &opts.user_agent)?;
    let node = format!("{}:{}", crate::host::name(), std::process::id());
    Ok(std::sync::Arc::new(
        crate::cache::shared::registry::SharedRegistry::new(
            origin,
            store,
            settings.registry_location.url().as_str(),
            opts.slot.as_deref(),
            ttl,
            node,
        ),
    ))
}

/// Log and print a startup failure; returns the exit code 1.
fn fail(what: &str, e: impl std::fmt::Display) -> i32 {
    tracing::error!(error = %e, "{what}");
    eprintln!("Error: {what}: {e}");
    1
}

/// Print a config error the way operators read it and return EX_CONFIG.
fn config_failure(e: &ConfigError) -> i32 {
    eprintln!("Error: bad configuration: {e}");
    EXIT_CONFIG
}

/// Install logging for a daemon or foreground run.
fn init_logging(settings: &Settings, identifier: &str) -> Result<(), i32> {
    start_logging(
        &settings.log_level,
        settings.log_format,
        identifier,
        &settings.app,
    )
}

/// Install logging at `level` (a name or a filter); an unknown level is a config error.
fn start_logging(
    level: &str,
    format: crate::logging::LogFormat,
    identifier: &str,
    app: &str,
) -> Result<(), i32> {
    let level = match crate::logging::parse_level(level) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: bad configuration: {e}");
            return Err(EXIT_CONFIG);
        }
    };
    crate::logging::init(level, format, identifier, Some(app)).map_err(|e| {
        eprintln!("Error: {e:#}");
        1
    })
}

/// Wait for SIGTERM, SIGINT or SIGQUIT; returns the signal's name.
/// Server mode: SIGUSR1 restarts the app (new generation, then the old one drains), as in Go Dewy.
fn restart_on_sigusr1(deployer: std::sync::Arc<crate::deploy::Deployer>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        return;
    };
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::info!("Restarted receiving by SIGUSR1 signal");
            if let Err(e) = deployer.restart_app().await {
                tracing::error!(error = %format!("{e:#}"), "Restart on SIGUSR1 failed");
            }
        }
    });
}

/// Wait for SIGINT, SIGTERM or SIGQUIT. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that comes while the app is being started is not fatal.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut quit = signal(SignalKind::quit()).ok();
    async move {
        async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(int.as_mut()) => "SIGINT",
            _ = recv(term.as_mut()) => "SIGTERM",
            _ = recv(quit.as_mut()) => "SIGQUIT",
        }
    }
}
