//! Command-line definitions (clap) for `dewy` and the daemons, with the Go Dewy's flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Layer, Mode, Readiness};
use crate::logging::LogFormat;
use crate::units::{ByteSize, DurationValue};

/// dewy: pull-based continuous deployment for Linux hosts.
#[derive(Debug, Parser)]
#[command(name = "dewy", version, about, long_about = None, disable_version_flag = true)]
pub struct Cli {
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    pub version: Option<bool>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy release files into releases/ + current (no process management).
    Assets(RunArgs),
    /// Deploy and run a server app with zero-downtime restarts.
    Server(RunArgs),
    /// Deploy OCI images as containers behind dewy's proxy (`dewy container list` lists them).
    Container(ContainerArgs),
    /// Show what is live, the last check and the bad versions of an app (`--follow`: then each
    /// deploy, failure, rollback and change of activity as it happens).
    Status(StatusArgs),
    /// Show the deploy history of an app.
    History(HistoryArgs),
    /// Deploy a given version now (even one marked bad; refused while paused unless
    /// --ignore-pause, and outside every deploy window unless --ignore-window).
    Deploy(DeployArgs),
    /// Make the previous release live again; the current version is marked bad.
    Rollback(AppArgs),
    /// Restart the app (server mode) without a deploy and without dropping connections.
    Restart(AppArgs),
    /// Allow a version marked bad to be deployed again (with a fleet store, its fleet-wide mark
    /// is cleared too).
    ForgetBad(VersionArgs),
    /// Hold back the releases the watcher finds until `dewy resume` (kept across restarts; the
    /// live release keeps serving).
    Pause(PauseArgs),
    /// End a pause: the next check deploys a release that was held back.
    Resume(AppArgs),
    /// Check the registry now instead of waiting for the interval.
    CheckNow(AppArgs),
    /// Config file tools.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (with its drop-ins), print the effective settings, and check that the
    /// release source answers with these credentials.
    Check {
        /// The config file, e.g. /etc/dewy/app.toml.
        file: PathBuf,
        /// App name (defaults to the file name without .toml).
        #[arg(long)]
        app: Option<String>,
        /// Only validate the file: do not ask the registry (and shared cache) for the newest release.
        #[arg(long)]
        offline: bool,
    },
}

/// `dewy container [flags] [-- docker-run options]` or `dewy container list [APP]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ContainerArgs {
    #[command(subcommand)]
    pub sub: Option<ContainerCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List the running containers of an app (UPSTREAM, DEPLOY TIME, NAME).
    List(ListArgs),
}

/// `dewy container list [APP] [--admin-port N]`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Ask the admin API on 127.0.0.1 (ports N to N+9, as Go Dewy does) instead of the bus;
    /// without a value: 17539.
    #[arg(long = "admin-port", num_args = 0..=1, default_missing_value = "17539")]
    pub admin_port: Option<u16>,
}

/// Which bus the clients and daemons use.
#[derive(Debug, Clone, Args)]
pub struct BusArgs {
    /// D-Bus to use: system, session, or a bus address (unix:path=…).
    #[arg(long, env = "DEWY_BUS", default_value = "system")]
    pub bus: String,
}

#[derive(Debug, Args)]
pub struct AppArgs {
    /// App name (the systemd instance name); optional when one app runs.
    pub app: Option<String>,
    #[command(flatten)]
    pub bus: BusArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Keep running and print each deploy, failure, rollback and change of activity as the
    /// deployer announces it on the bus (one line each; JSON lines with --json). Ctrl-C ends it.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// How many entries.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// The version tag, e.g. v1.2.3.
    pub version: String,
    /// App name; optional when one app runs.
    #[arg(long, short = 'a')]
    pub app: Option<String>,
    #[command(flatten)]
    pub bus: BusArgs,
}

/// `dewy deploy VERSION [--app APP] [--ignore-pause] [--ignore-window]`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub target: VersionArgs,
    /// Deploy even though the app is paused (`dewy pause`); the pause stays in force.
    #[arg(long = "ignore-pause")]
    pub ignore_pause: bool,
    /// Deploy even though every deploy window (`[[window]]`) is closed.
    #[arg(long = "ignore-window")]
    pub ignore_window: bool,
}

/// `dewy pause [APP] [--reason TEXT]`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Why (shown in `dewy status` and the notification; at most 500 characters).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// The Go Dewy's flags for `assets`, `server` and `container`, plus dewy's own.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Registry URL: ghr://owner/repo, file:///dir, s3://, gs://, img://, grpc://host:port.
    #[arg(long)]
    pub registry: Option<String>,
    /// Poll interval: seconds, or a duration such as 30s or 5m.
    #[arg(short = 'i', long)]
    pub interval: Option<DurationValue>,
    /// Log level: debug, info, warn, error.
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Log format: text, json, journal or auto.
    #[arg(short = 'f', long = "log-format")]
    pub log_format: Option<LogFormat>,
    /// Shell command run before the new release goes live (cwd: the release).
    #[arg(long = "before-deploy-hook")]
    pub before_deploy_hook: Option<String>,
    /// Shell command run after the new release went live (cwd: the release).
    #[arg(long = "after-deploy-hook")]
    pub after_deploy_hook: Option<String>,
    /// Deploy only versions whose build metadata is this slot (v1.2.3+blue).
    #[arg(short = 's', long)]
    pub slot: Option<String>,
    /// CalVer format of the tags, e.g. YYYY.0M.0D.MICRO.
    #[arg(long)]
    pub calver: Option<String>,
    /// Port(s) of the app (server) or proxy:container mapping (container).
    #[arg(short = 'p', long)]
    pub port: Vec<String>,
    /// Notifier URL (slack://, slack+https://, mail://, smtp://, webhook+https://); repeatable.
    #[arg(long)]
    pub notifier: Vec<String>,
    /// Also serve the Prometheus metrics on this loopback address (e.g. 127.0.0.1:9101).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Turn OpenTelemetry on (with --otlp-endpoint: metrics, deploy traces and event logs).
    #[arg(long)]
    pub telemetry: bool,
    /// OTLP/gRPC collector as host:port (TLS with the system roots; turns telemetry on).
    #[arg(long = "otlp-endpoint", value_name = "HOST:PORT")]
    pub otlp_endpoint: Option<String>,
    /// Plaintext gRPC to the OTLP collector.
    #[arg(long = "otlp-insecure")]
    pub otlp_insecure: bool,
    /// Shared cache URL (s3://, gs://).
    #[arg(short = 'c', long)]
    pub cache: Option<String>,
    /// App name (default: derived from the registry URL).
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Config file (TOML); flags override its keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory holding releases/ and current (default: the working directory).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Artifact cache directory (default: ROOT/.dewy/cache).
    #[arg(long = "cache-dir")]
    pub cache_dir: Option<PathBuf>,
    /// Releases kept in releases/.
    #[arg(long = "keep-releases")]
    pub keep_releases: Option<usize>,
    /// How long a release may lack its artifact before that is an error.
    #[arg(long = "grace-period")]
    pub grace_period: Option<DurationValue>,
    /// Hook timeout.
    #[arg(long = "hook-timeout")]
    pub hook_timeout: Option<DurationValue>,
    /// Largest artifact downloaded.
    #[arg(long = "max-artifact-size")]
    pub max_artifact_size: Option<ByteSize>,
    /// Largest expanded size of an archive.
    #[arg(long = "max-extracted-size")]
    pub max_extracted_size: Option<ByteSize>,
    /// D-Bus on which the foreground run also publishes its interfaces: auto, none, system,
    /// session or an address.
    #[arg(long, env = "DEWY_BUS", default_value = "auto")]
    pub bus: String,
    /// Server mode: how a new generation proves it is ready: auto, notify, health or alive.
    #[arg(long)]
    pub readiness: Option<Readiness>,
    /// Server mode: HTTP path probed on the new generation's private probe socket.
    #[arg(long = "health-path")]
    pub health_path: Option<String>,
    /// Server mode: how long a new generation may take to become ready (seconds or 30s, 1m).
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<DurationValue>,
    /// Server mode: how long the old generation may drain before SIGKILL.
    #[arg(long = "drain-time")]
    pub drain_time: Option<DurationValue>,
    /// Container mode: how many replicas run.
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Container mode: the command given to the image (replaces its CMD); repeat for arguments.
    #[arg(long)]
    pub cmd: Vec<String>,
    /// Container mode: images of the app's repository kept.
    #[arg(long = "keep-images")]
    pub keep_images: Option<usize>,
    /// Container mode: keep or remove the containers when dewy stops (default: keep under
    /// systemd, remove in the foreground).
    #[arg(long = "on-stop")]
    pub on_stop: Option<crate::config::container::OnStop>,
    /// Container mode: close a proxied TCP connection or upgraded HTTP connection after this long
    /// without traffic either way (seconds or 5m; 0 disables; default 300).
    #[arg(long = "proxy-idle-timeout")]
    pub proxy_idle_timeout: Option<DurationValue>,
    /// Container mode: most client connections the proxy keeps open; past it new ones are
    /// answered 503 (default: derived from the file descriptor limit).
    #[arg(long = "proxy-max-connections")]
    pub proxy_max_connections: Option<usize>,
    /// Server mode: `alive` readiness delay.
    #[arg(long = "alive-delay")]
    pub alive_delay: Option<DurationValue>,
    /// Server mode: a crash loop this soon after the release went live rolls it back and marks
    /// it bad; later it is blamed on the environment and the app is restarted (0: never roll back).
    #[arg(long = "blame-window")]
    pub blame_window: Option<DurationValue>,
    /// A key trusted to sign releases and images (minisign:BASE64, minisign-file:PATH,
    /// signify-file:PATH, cosign:PEM, openpgp:PATH, or credential:NAME); repeatable. With any,
    /// a release no listed key signed is refused (see the signing guide).
    #[arg(long)]
    pub verify: Vec<String>,
    /// Deploy a release only once it is this old (by its publication time, else by when dewy
    /// first saw it), e.g. 1h.
    #[arg(long = "min-age")]
    pub min_age: Option<DurationValue>,
    /// Serve the read-only admin API (/api/status, /api/containers, /metrics) on 127.0.0.1 at
    /// the first free port of ten from this one (default 17539; always on in container mode).
    #[arg(long = "admin-port")]
    pub admin_port: Option<u16>,
    /// Write the shipping report (shipped_to_HOST_COMMAND_at_TIME.txt) to the release source
    /// after each deploy: true (default) or false.
    #[arg(long, value_name = "BOOL")]
    pub report: Option<bool>,
    /// Container mode: the engine whose socket is used when DOCKER_HOST is not set: docker
    /// (default) or podman.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Command and arguments of the app (server mode), or extra `docker run` options
    /// (container mode), after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

impl RunArgs {
    /// The flags as a config layer (they override config files).
    pub fn layer(&self, mode: Mode) -> Layer {
        Layer {
            mode: Some(mode),
            registry: self.registry.clone(),
            interval: self.interval,
            grace_period: self.grace_period,
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            root: self.root.clone(),
            cache_dir: self.cache_dir.clone(),
            keep_releases: self.keep_releases,
            before_deploy_hook: self.before_deploy_hook.clone(),
            after_deploy_hook: self.after_deploy_hook.clone(),
            hook_timeout: self.hook_timeout,
            max_artifact_size: self.max_artifact_size,
            max_extracted_size: self.max_extracted_size,
            slot: self.slot.clone(),
            calver: self.calver.clone(),
            cache: self.cache.clone(),
            notifier: (!self.notifier.is_empty()).then(|| self.notifier.clone()),
            metrics_listen: self.metrics_listen.clone(),
            telemetry: self.telemetry.then_some(true),
            otlp_endpoint: self.otlp_endpoint.clone(),
            otlp_insecure: self.otlp_insecure.then_some(true),
            port: (!self.port.is_empty()).then(|| self.port.clone()),
            command: (!self.command.is_empty() && mode != Mode::Container).then(|| self.command.clone()),
            run_options: (!self.command.is_empty() && mode == Mode::Container).then(|| self.command.clone()),
            replicas: self.replicas,
            cmd: (!self.cmd.is_empty()).then(|| self.cmd.clone()),
            keep_images: self.keep_images,
            on_stop: self.on_stop,
            proxy_idle_timeout: self.proxy_idle_timeout,
            proxy_max_connections: self.proxy_max_connections,
            readiness: self.readiness,
            health_path: self.health_path.clone(),
            health_timeout: self.health_timeout,
            drain_time: self.drain_time,
            alive_delay: self.alive_delay,
            blame_window: self.blame_window,
            verify: (!self.verify.is_empty()).then(|| self.verify.clone()),
            min_age: self.min_age,
            admin_port: self.admin_port,
            report: self.report,
            runtime: self.runtime.clone(),
            ..Layer::default()
        }
    }
}

/// Arguments shared by `dewy-deployer`, `dewy-watcher` and `dewy-proxy`.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct DaemonArgs {
    /// App name (the systemd instance name, `%i`).
    pub app: String,
    /// Config file (default: /etc/dewy/APP.toml with drop-ins).
    #[arg(long, env = "DEWY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub bus: BusArgs,
    /// Log level override.
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Log format override (auto picks the journal under systemd).
    #[arg(short = 'f', long = "log-format")]
    pub log_format: Option<LogFormat>,
}
