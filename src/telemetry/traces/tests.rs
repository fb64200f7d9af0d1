//! The span trees built from a deploy's events and steps.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, Status, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

use super::DeployTraces;
use crate::notify::{Event, Stage, Step};

fn setup() -> (DeployTraces, InMemorySpanExporter, SdkTracerProvider) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (DeployTraces::new(provider.tracer("t"), "web"), exporter, provider)
}

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
}

fn step(name: &'static str, from: u64, to: u64, error: Option<&str>) -> Step {
    Step {
        version: "v2".into(),
        name,
        start: at(from),
        end: at(to),
        error: error.map(str::to_string),
        attributes: if name.starts_with("hook") {
            vec![
                ("dewy.hook.command", "echo hi".into()),
                ("dewy.hook.exit_code", "3".into()),
            ]
        } else {
            Vec::new()
        },
    }
}

fn roots(spans: &[SpanData]) -> Vec<&SpanData> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == SpanId::INVALID)
        .collect()
}

/// (name, start ms, end ms) of the children of `root`, in start order.
fn children(spans: &[SpanData], root: &SpanData) -> Vec<(String, u64, u64)> {
    let ms = |t: SystemTime| t.duration_since(at(0)).expect("after").as_millis() as u64;
    let mut out: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == root.span_context.span_id())
        .map(|s| {
            assert_eq!(s.span_context.trace_id(), root.span_context.trace_id());
            (s.name.to_string(), ms(s.start_time), ms(s.end_time))
        })
        .collect();
    out.sort_by_key(|c| c.1);
    out
}

#[test]
fn a_server_deploy_is_one_tree_of_its_steps() {
    let (t, exporter, _p) = setup();
    let found = Event::ReleaseFound {
        version: "v2".into(),
        previous: Some("v1".into()),
    };
    let cx = t.on_event_at(&found, at(0)).expect("a deploy began");
    for s in [
        step("download", 5, 900, None),
        step("verify", 900, 1000, None),
        step("extract", 1010, 1200, None),
        step("hook.before", 1200, 1500, None),
        step("switch", 1500, 1510, None),
        step("restart", 1510, 2500, None),
        step("hook.after", 2600, 2700, Some("exit code 3")),
        step("clean-up", 2700, 2750, None),
    ] {
        t.on_step(&s);
    }
    let hook = Event::Hook {
        version: "v2".into(),
        kind: "after".into(),
        command: "echo hi".into(),
        success: false,
        exit_code: Some(3),
        duration: Duration::from_millis(100),
        output: String::new(),
    };
    assert_eq!(t.on_event_at(&hook, at(2700)), Some(cx.clone()));
    let done = Event::Deployed {
        version: "v2".into(),
        previous: Some("v1".into()),
        duration: Duration::from_millis(2800),
        command: "server".into(),
    };
    assert_eq!(t.on_event_at(&done, at(2800)), Some(cx.clone()));
    let spans = exporter.get_finished_spans().expect("spans");
    let roots = roots(&spans);
    assert_eq!(roots.len(), 1, "{spans:#?}");
    let root = roots[0];
    assert_eq!(root.name, "dewy.deploy");
    assert_eq!(root.span_context.span_id(), cx.span_id());
    assert_eq!((root.start_time, root.end_time), (at(0), at(2800)));
    assert_eq!(root.status, Status::Ok);
    assert_eq!(
        children(&spans, root),
        [
            ("download".to_string(), 5, 900),
            ("verify".to_string(), 900, 1000),
            ("extract".to_string(), 1010, 1200),
            ("hook.before".to_string(), 1200, 1500),
            ("switch".to_string(), 1500, 1510),
            ("restart".to_string(), 1510, 2500),
            ("hook.after".to_string(), 2600, 2700),
            ("clean-up".to_string(), 2700, 2750),
        ]
    );
    let after = spans.iter().find(|s| s.name == "hook.after").expect("after");
    assert_eq!(after.status, Status::error("exit code 3"));
    assert!(after
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "dewy.hook.exit_code" && kv.value == Value::I64(3)));
    let attr = |key: &str| {
        root.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().to_string())
    };
    assert_eq!(attr("dewy.version").as_deref(), Some("v2"));
    assert_eq!(attr("dewy.previous").as_deref(), Some("v1"));
    assert_eq!(attr("dewy.trigger").as_deref(), Some("watcher"));
    assert_eq!(attr("dewy.command").as_deref(), Some("server"));
    // Events after the end belong to no deploy.
    assert!(t.on_event_at(&hook, at(2900)).is_none());
}

#[test]
fn a_failed_operator_deploy_begins_at_its_first_step_and_ends_with_the_error() {
    let (t, exporter, _p) = setup();
    t.on_step(&step("download", 100, 300, None));
    let started = Event::DeployStarted {
        version: "v2".into(),
        previous: Some("v1".into()),
    };
    assert!(t.on_event_at(&started, at(310)).is_some());
    t.on_step(&step("extract", 310, 400, Some("disk full")));
    let failed = Event::Failed {
        stage: Stage::Deploy,
        version: Some("v2".into()),
        error: "disk full".into(),
        next_step: "free space".into(),
        command: "assets".into(),
    };
    assert!(t.on_event_at(&failed, at(410)).is_some());
    let spans = exporter.get_finished_spans().expect("spans");
    let root = spans.iter().find(|s| s.name == "dewy.deploy").expect("root");
    assert_eq!(root.status, Status::error("disk full"));
    assert_eq!(root.start_time, at(100));
    assert_eq!(
        children(&spans, root),
        [
            ("download".to_string(), 100, 300),
            ("extract".to_string(), 310, 400)
        ]
    );
    let extract = spans.iter().find(|s| s.name == "extract").expect("extract");
    assert_eq!(extract.status, Status::error("disk full"));
    for (key, value) in [("dewy.trigger", "operator"), ("dewy.previous", "v1")] {
        assert!(
            root.attributes
                .iter()
                .any(|kv| kv.key.as_str() == key && kv.value.as_str() == value),
            "{key}: {:?}",
            root.attributes
        );
    }
}

#[test]
fn a_new_deploy_ends_one_left_open_and_each_is_its_own_trace() {
    let (t, exporter, _p) = setup();
    let found = |v: &str| Event::ReleaseFound {
        version: v.into(),
        previous: None,
    };
    let first = t.on_event_at(&found("v2"), at(0)).expect("v2");
    let second = t.on_event_at(&found("v3"), at(50)).expect("v3");
    assert_ne!(first.trace_id(), second.trace_id());
    t.abandon();
    let spans = exporter.get_finished_spans().expect("spans");
    let roots = roots(&spans);
    assert_eq!(roots.len(), 2, "{spans:#?}");
    assert!(roots.iter().all(|r| matches!(r.status, Status::Error { .. })));
    // Outside a deploy, events are not linked to any trace.
    assert!(t
        .on_event_at(
            &Event::Started {
                command: "assets".into()
            },
            at(60)
        )
        .is_none());
}
