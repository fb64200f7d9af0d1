//! dewy: a pull-based continuous-deployment agent for Linux hosts, split into cooperating daemons.
//!
//! The library holds all logic; the binaries in `src/bin` are thin entry points.

// Outside input never meets an `unwrap()`: errors carry context instead (tests may unwrap).
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod artifact;
pub mod bus;
pub mod cache;
pub mod cli;
pub mod config;
pub mod container;
pub mod deploy;
pub mod failure;
pub mod fault_inject;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod proxy;
pub mod registry;
pub mod release;
pub mod signature;
pub mod supervise;
pub mod systemd;
pub mod telemetry;
pub mod text;
pub mod units;
pub mod watch;

/// Exit status for a bad configuration (sysexits EX_CONFIG); units set `RestartPreventExitStatus=78`.
pub const EXIT_CONFIG: i32 = 78;

/// Exit status of a process ended by a panic in any thread or task (sysexits EX_SOFTWARE): a
/// failure that `Restart=on-failure` restarts, unlike [`EXIT_CONFIG`].
pub const EXIT_PANIC: i32 = 70;
