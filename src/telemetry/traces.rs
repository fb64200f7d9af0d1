//! Each deploy as a trace: a root span `dewy.deploy` from `ReleaseFound` (or the first step of
//! an operator's deploy) to `Deployed` or `Failed`, with one child span per step the pipeline
//! timed (`download`, `verify`, `extract`, `hook.before`, `switch`, `restart`, `hook.after`,
//! `clean-up`; `pull` and `rollout` in container mode), each with its own start, end and
//! error status.

use std::sync::Mutex;
use std::time::SystemTime;

use opentelemetry::trace::{Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{SdkTracer, Span};

use crate::notify::event::Restart;
use crate::notify::{Event, Stage, Step};

/// Why a deploy still open is ended when another begins.
const SUPERSEDED: &str = "a newer deploy began before this one ended";

/// The deploy in progress, if any.
pub struct DeployTraces {
    tracer: SdkTracer,
    app: String,
    open: Mutex<Option<Open>>,
}

struct Open {
    version: String,
    root: Span,
    context: SpanContext,
}

impl DeployTraces {
    pub fn new(tracer: SdkTracer, app: &str) -> Self {
        DeployTraces {
            tracer,
            app: app.to_string(),
            open: Mutex::new(None),
        }
    }

    /// Follow `event`; the span context of the deploy it belongs to, if any (for log records).
    pub fn on_event(&self, event: &Event) -> Option<SpanContext> {
        self.on_event_at(event, SystemTime::now())
    }

    fn on_event_at(&self, event: &Event, now: SystemTime) -> Option<SpanContext> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::ReleaseFound { version, previous } => {
                if let Some(old) = open.take() {
                    old.end(now, Some(SUPERSEDED));
                }
                let o = self.begin(version, previous.as_deref(), "watcher", now);
                let context = o.context.clone();
                *open = Some(o);
                Some(context)
            }
            Event::Deployed { version, command, .. } => {
                let mut o = open.take_if(|o| o.version == *version)?;
                o.root
                    .set_attribute(KeyValue::new("dewy.command", command.clone()));
                let context = o.context.clone();
                o.end(now, None);
                Some(context)
            }
            Event::Failed {
                stage: Stage::Deploy,
                version,
                error,
                ..
            } => {
                let o = open.take_if(|o| version.as_ref().is_none_or(|v| *v == o.version))?;
                let context = o.context.clone();
                o.end(now, Some(error));
                Some(context)
            }
            _ => {
                let version = match event {
                    Event::ServerStarted { version }
                    | Event::ServerRestarted {
                        version,
                        reason: Restart::Deploy,
                    } => version.as_str(),
                    _ => event.deploy_version()?,
                };
                let o = open.as_mut().filter(|o| o.version == version)?;
                if let Event::DeployStarted {
                    previous: Some(p), ..
                } = event
                {
                    o.root.set_attribute(KeyValue::new("dewy.previous", p.clone()));
                }
                Some(o.context.clone())
            }
        }
    }

    /// A child span for `step` under its deploy's root (begun here for an operator's deploy,
    /// which has no `ReleaseFound`).
    pub fn on_step(&self, step: &Step) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.as_ref().is_none_or(|o| o.version != step.version) {
            if let Some(old) = open.take() {
                old.end(step.start, Some(SUPERSEDED));
            }
            *open = Some(self.begin(&step.version, None, "operator", step.start));
        }
        let Some(o) = open.as_ref() else {
            return;
        };
        let parent = Context::new().with_remote_span_context(o.context.clone());
        let attributes: Vec<KeyValue> = step
            .attributes
            .iter()
            .map(|(k, v)| KeyValue::new(*k, attribute_value(k, v)))
            .collect();
        let mut span = self
            .tracer
            .span_builder(step.name)
            .with_kind(SpanKind::Internal)
            .with_start_time(step.start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        if let Some(error) = &step.error {
            span.set_status(Status::error(error.clone()));
        }
        span.end_with_timestamp(step.end.max(step.start));
    }

    /// End a deploy still open (dewy is stopping).
    pub fn abandon(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = open.take() {
            o.end(SystemTime::now(), Some("dewy stopped during the deploy"));
        }
    }

    fn begin(&self, version: &str, previous: Option<&str>, trigger: &str, now: SystemTime) -> Open {
        let mut attrs = vec![
            KeyValue::new("dewy.app", self.app.clone()),
            KeyValue::new("dewy.version", version.to_string()),
            KeyValue::new("dewy.trigger", trigger.to_string()),
        ];
        if let Some(p) = previous {
            attrs.push(KeyValue::new("dewy.previous", p.to_string()));
        }
        let root = self
            .tracer
            .span_builder("dewy.deploy")
            .with_kind(SpanKind::Internal)
            .with_start_time(now)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &Context::new());
        let context = root.span_context().clone();
        Open {
            version: version.to_string(),
            root,
            context,
        }
    }
}

/// Exit codes as integers, everything else as text.
fn attribute_value(key: &str, value: &str) -> Value {
    match value.parse::<i64>() {
        Ok(n) if key.ends_with("exit_code") => Value::I64(n),
        _ => Value::from(value.to_string()),
    }
}

impl Open {
    /// End the deploy at `now`, failed when `error` is set.
    fn end(mut self, now: SystemTime, error: Option<&str>) {
        match error {
            Some(e) => self.root.set_status(Status::error(e.to_string())),
            None => self.root.set_status(Status::Ok),
        }
        self.root.end_with_timestamp(now);
    }
}

#[cfg(test)]
mod tests;
