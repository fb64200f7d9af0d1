//! The message text of each [`Event`], as every notifier sends it, with hook output cut to a
//! readable length.

use std::time::Duration;

use super::{Event, Restart, Stage};
use crate::units::format_duration;

/// Most lines and characters of hook output put in a message.
const OUTPUT_LINES: usize = 50;
const OUTPUT_CHARS: usize = 2000;

impl Event {
    /// The message text, as every notifier sends it.
    pub fn message(&self) -> String {
        match self {
            Event::Started { command } => format!(
                "Automatic shipping started by Dewy (v{}: {command})",
                env!("CARGO_PKG_VERSION")
            ),
            Event::ReleaseFound { version, previous } => match previous {
                Some(p) => format!("New release {version} found ({p} is live)"),
                None => format!("New release {version} found"),
            },
            Event::Downloaded { version } => format!("Downloaded artifact for {version}"),
            Event::DeployStarted { version, previous } => match previous {
                Some(p) => format!("Deploying {version} (replacing {p})"),
                None => format!("Deploying {version}"),
            },
            Event::Hook {
                kind,
                command,
                success,
                exit_code,
                duration,
                output,
                ..
            } => {
                let hook = if kind == "before" {
                    "Before deploy hook"
                } else {
                    "After deploy hook"
                };
                let took = format_duration(round_ms(*duration));
                let mut m = if *success {
                    format!("{hook} succeeded in {took}: `{command}`")
                } else {
                    let code = exit_code.map_or("none".to_string(), |c| c.to_string());
                    format!("{hook} failed (exit code {code}) after {took}: `{command}`")
                };
                if !output.is_empty() {
                    m.push_str("\n```\n");
                    m.push_str(&truncate_output(output));
                    m.push_str("\n```");
                }
                m
            }
            Event::Deployed { version, command, .. } if command == "container" => {
                format!("Container deployed successfully for {version}")
            }
            Event::Deployed {
                version,
                previous,
                duration,
                ..
            } => {
                let took = format_duration(round_ms(*duration));
                match previous {
                    Some(p) => format!("Deployed {version} in {took} (was {p})"),
                    None => format!("Deployed {version} in {took}"),
                }
            }
            Event::RolledBack { from, to, reason } => {
                format!("Rolled back from {from} to {to}: {reason}; {from} is marked bad")
            }
            Event::Failed {
                stage,
                version,
                error,
                next_step,
                ..
            } => {
                let what = match (stage, version) {
                    (Stage::Check, _) => "Registry check failed".to_string(),
                    (Stage::Deploy, Some(v)) => format!("Deploy of {v} failed"),
                    (Stage::Deploy, None) => "Deploy failed".to_string(),
                    (Stage::Rollback, _) => "Rollback failed".to_string(),
                    (Stage::Run, Some(v)) => format!("Server {v} stopped"),
                    (Stage::Run, None) => "Server stopped".to_string(),
                };
                format!("{what}: {error}\nNext step: {next_step}")
            }
            Event::CheckSucceeded { version } => format!("Checked the registry: {version} is the newest"),
            Event::Recovered { failures, last_error } => format!(
                "Recovered after {failures} failure{}; the last one was: {last_error}",
                if *failures == 1 { "" } else { "s" }
            ),
            Event::Digest {
                repeats,
                since,
                error,
            } => format!(
                "The same failure happened {repeats} more time{} since {} (not sent one by one): {error}",
                if *repeats == 1 { "" } else { "s" },
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Event::ServerStarted { version } => format!("Server started for {version}"),
            Event::ServerRestarted { version, reason } => match reason {
                Restart::Deploy => format!("Server restarted for {version}"),
                Restart::Crash => format!("Server restarted for {version} after it exited"),
                other => format!("Server restarted for {version} ({})", other.as_str()),
            },
            Event::ImagePulled { version, .. } => format!("Pulled image for {version}"),
            Event::Paused { reason } if reason.is_empty() => {
                "Deploys paused by an operator; new releases wait for `dewy resume`".to_string()
            }
            Event::Paused { reason } => {
                format!("Deploys paused by an operator: {reason}; new releases wait for `dewy resume`")
            }
            Event::Resumed { since } => format!(
                "Deploys resumed (paused since {})",
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Event::Stopped { signal } => format!("Stop receiving by {signal} signal"),
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    let ms = d.as_millis();
    if ms >= 1000 {
        Duration::from_secs(((ms + 500) / 1000) as u64)
    } else {
        Duration::from_millis(ms as u64)
    }
}

/// Keep the last [`OUTPUT_LINES`] lines and [`OUTPUT_CHARS`] characters, saying what was cut.
pub fn truncate_output(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let skip = lines.len().saturating_sub(OUTPUT_LINES);
    let mut out = lines[skip..].join("\n");
    let chars = out.chars().count();
    let mut cut_chars = 0;
    if chars > OUTPUT_CHARS {
        cut_chars = chars - OUTPUT_CHARS;
        out = out.chars().skip(cut_chars).collect();
    }
    if skip > 0 || cut_chars > 0 {
        out = format!("… ({skip} more lines, {cut_chars} more characters truncated)\n{out}");
    }
    out
}
