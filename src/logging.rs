//! Logging setup: the journal under systemd, otherwise `text` or `json` lines on stderr.
//!
//! Events that matter to operators carry a fixed `message_id` (journal `MESSAGE_ID`) per kind.
//! Fields named `dewy_*` become the journal fields `DEWY_*`; on stderr they are shown without
//! the prefix (`cache_key=…`), as the Go Dewy prints them.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::{bail, Context};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Journal `MESSAGE_ID` of registry checks (new release found, check failed).
pub const MSG_CHECK: &str = "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e60";
/// Journal `MESSAGE_ID` of downloads ("Cached artifact").
pub const MSG_DOWNLOAD: &str = "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e61";
/// Journal `MESSAGE_ID` of deploy steps (extract, symlink switch, deployed).
pub const MSG_DEPLOY: &str = "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e62";
/// Journal `MESSAGE_ID` of skipped deploys.
pub const MSG_SKIP: &str = "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e63";
/// Journal `MESSAGE_ID` of hook runs.
pub const MSG_HOOK: &str = "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e64";
/// Journal `MESSAGE_ID` of failures (check, download, deploy).
pub const MSG_FAILURE: &str = "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e65";
/// Journal `MESSAGE_ID` of rollbacks.
pub const MSG_ROLLBACK: &str = "5d3c2a1f0b8e4c7d9a6b1e2f3c4d5e66";

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// The journal when stderr is connected to it, text otherwise.
    Auto,
    /// `time=… level=… msg="…" key=value` lines on stderr.
    Text,
    /// One JSON object per line on stderr (`time`, `level`, `msg` and the fields).
    Json,
    /// The native journal protocol, with structured fields.
    Journal,
}

impl std::str::FromStr for LogFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            "journal" => Ok(Self::Journal),
            other => bail!("unknown log format {other:?} (expected auto, text, json or journal)"),
        }
    }
}

/// Parse a log level the way the Go Dewy spells them (`debug`, `info`, `warn`, `error`).
pub fn parse_level(s: &str) -> anyhow::Result<Level> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Ok(Level::TRACE),
        "debug" => Ok(Level::DEBUG),
        "info" => Ok(Level::INFO),
        "warn" | "warning" => Ok(Level::WARN),
        "error" => Ok(Level::ERROR),
        other => bail!("unknown log level {other:?} (expected debug, info, warn or error)"),
    }
}

/// True when stderr is a journal stream set up by systemd (`JOURNAL_STREAM` matches stderr).
pub fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = nix::sys::stat::fstat(2) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(meta.st_dev) && ino.parse::<u64>().ok() == Some(meta.st_ino)
}

/// Install the global subscriber. `identifier` is the journal's `SYSLOG_IDENTIFIER`;
/// `app` is attached to every journal entry as `DEWY_APP`.
pub fn init(level: Level, format: LogFormat, identifier: &str, app: Option<&str>) -> anyhow::Result<()> {
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .with_env_var("DEWY_LOG")
        .from_env_lossy()
        .add_directive("zbus=warn".parse().context("log filter")?)
        .add_directive("hyper=warn".parse().context("log filter")?)
        .add_directive("reqwest=warn".parse().context("log filter")?);
    let use_journal = match format {
        LogFormat::Journal => true,
        LogFormat::Auto => stderr_is_journal(),
        _ => false,
    };
    if use_journal {
        let mut layer = tracing_journald::layer()
            .context("connecting to the journal")?
            .with_field_prefix(None)
            .with_syslog_identifier(identifier.to_string());
        if let Some(app) = app {
            layer = layer.with_custom_fields([("DEWY_APP", app.as_bytes())]);
        }
        tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init()
            .context("installing the logger")?;
    } else {
        let json = format == LogFormat::Json;
        tracing_subscriber::registry()
            .with(filter)
            .with(LineLayer { json })
            .try_init()
            .context("installing the logger")?;
    }
    Ok(())
}

/// Writes one line per event on stderr, as text or JSON.
struct LineLayer {
    json: bool,
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let level = event.metadata().level().as_str();
        let line = if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("time".into(), time.into());
            obj.insert("level".into(), level.into());
            obj.insert("msg".into(), fields.message.clone().into());
            for (k, v) in fields.pairs {
                obj.insert(k, v);
            }
            serde_json::Value::Object(obj).to_string()
        } else {
            let mut s = format!("time={time} level={level} msg={}", quote(&fields.message));
            for (k, v) in fields.pairs {
                if k == "message_id" {
                    continue;
                }
                let text = match v {
                    serde_json::Value::String(s) => quote(&s),
                    other => other.to_string(),
                };
                let _ = write!(s, " {k}={text}");
            }
            s
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '=') {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    pairs: Vec<(String, serde_json::Value)>,
}

impl FieldCollector {
    fn push(&mut self, field: &Field, value: serde_json::Value) {
        let name = field.name();
        let name = name.strip_prefix("dewy_").unwrap_or(name);
        self.pairs.push((name.to_string(), value));
    }
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.push(field, value.into());
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.push(field, format!("{value:?}").into());
        }
    }
}
