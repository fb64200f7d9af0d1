//! The pipeline's events as OTLP log records: the notification text as the body, the event
//! kind as the event name, and the deploy's trace when the event belongs to one.

use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::SpanContext;
use opentelemetry_sdk::logs::SdkLogger;

use crate::notify::Event;

pub struct EventLogs {
    logger: SdkLogger,
    app: String,
}

impl EventLogs {
    pub fn new(logger: SdkLogger, app: &str) -> Self {
        EventLogs {
            logger,
            app: app.to_string(),
        }
    }

    /// One record for `event` (none for the routine `CheckSucceeded`), linked to `trace`.
    pub fn on_event(&self, event: &Event, trace: Option<SpanContext>) {
        if matches!(event, Event::CheckSucceeded { .. }) {
            return;
        }
        let now = SystemTime::now();
        let (number, text) = severity(event);
        let mut record = self.logger.create_log_record();
        record.set_timestamp(now);
        record.set_observed_timestamp(now);
        record.set_severity_number(number);
        record.set_severity_text(text);
        record.set_event_name(event.kind());
        record.set_body(AnyValue::from(event.message()));
        record.add_attribute("dewy.event", event.kind());
        record.add_attribute("dewy.app", self.app.clone());
        if let Some(version) = event.deploy_version() {
            record.add_attribute("dewy.version", version.to_string());
        }
        if let Some(cx) = trace {
            record.set_trace_context(cx.trace_id(), cx.span_id(), Some(cx.trace_flags()));
        }
        self.logger.emit(record);
    }
}

fn severity(event: &Event) -> (Severity, &'static str) {
    if event.is_error() {
        (Severity::Error, "ERROR")
    } else if matches!(event, Event::RolledBack { .. } | Event::Recovered { .. }) {
        (Severity::Warn, "WARN")
    } else {
        (Severity::Info, "INFO")
    }
}
