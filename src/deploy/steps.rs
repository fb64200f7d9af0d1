//! The timing of a deploy's steps for tracing: the pipeline runs a deploy inside [`scope`],
//! and the steps inside it (in the pipeline or in a runtime) are timed with [`timed`],
//! [`timed_sync`] or [`record`] and reported to the event sinks as [`Step`]s. Outside a scope
//! (a rollback, the tests of a runtime) nothing is reported.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use crate::failure::DeployFailure;
use crate::notify::{EventSink, Step};

/// The deploy the current task is doing, and where its steps go.
#[derive(Clone)]
pub struct Scope {
    version: String,
    sink: Arc<dyn EventSink>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Run `fut` (the deploy of `version`) with its steps reported to `sink`.
pub async fn scope<F: Future>(version: &str, sink: Option<Arc<dyn EventSink>>, fut: F) -> F::Output {
    match sink {
        Some(sink) => {
            let scope = Scope {
                version: version.to_string(),
                sink,
            };
            SCOPE.scope(scope, fut).await
        }
        None => fut.await,
    }
}

/// What a failed step says about itself.
pub trait StepError {
    fn describe(&self) -> String;
}

impl StepError for DeployFailure {
    fn describe(&self) -> String {
        format!("{:#}", self.error)
    }
}

impl StepError for anyhow::Error {
    fn describe(&self) -> String {
        format!("{self:#}")
    }
}

/// Run step `name` and report how long it took and whether it failed.
pub async fn timed<T, E: StepError>(
    name: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let start = SystemTime::now();
    let out = fut.await;
    record(
        name,
        start,
        out.as_ref().err().map(StepError::describe),
        Vec::new(),
    );
    out
}

/// [`timed`] for a step that does not wait.
pub fn timed_sync<T, E: StepError>(name: &'static str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let start = SystemTime::now();
    let out = f();
    record(
        name,
        start,
        out.as_ref().err().map(StepError::describe),
        Vec::new(),
    );
    out
}

/// Report step `name`, begun at `start` and ending now.
pub fn record(
    name: &'static str,
    start: SystemTime,
    error: Option<String>,
    attributes: Vec<(&'static str, String)>,
) {
    let end = SystemTime::now();
    let _ = SCOPE.try_with(|s| {
        s.sink.step(&Step {
            version: s.version.clone(),
            name,
            start,
            end: end.max(start),
            error,
            attributes,
        })
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::notify::Event;

    #[derive(Default)]
    struct Steps(Mutex<Vec<Step>>);

    impl EventSink for Steps {
        fn emit(&self, _event: Event) {}
        fn step(&self, step: &Step) {
            self.0.lock().expect("lock").push(step.clone());
        }
    }

    #[tokio::test]
    async fn steps_in_a_scope_are_reported_with_their_errors() {
        let sink = Arc::new(Steps::default());
        let out = scope("v2", Some(sink.clone()), async {
            let a: Result<u8, anyhow::Error> = timed("download", async { Ok(1) }).await;
            let b: Result<u8, anyhow::Error> = timed_sync("switch", || Err(anyhow::anyhow!("no link")));
            (a.is_ok(), b.is_err())
        })
        .await;
        assert_eq!(out, (true, true));
        let steps = sink.0.lock().expect("lock").clone();
        let got: Vec<_> = steps
            .iter()
            .map(|s| (s.version.as_str(), s.name, s.error.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("v2", "download", None),
                ("v2", "switch", Some("no link".to_string()))
            ]
        );
        assert!(steps.iter().all(|s| s.end >= s.start));

        // Outside a scope nothing is reported, and the step still runs.
        let r: Result<u8, anyhow::Error> = timed("extract", async { Ok(3) }).await;
        assert_eq!(r.expect("ran"), 3);
        assert_eq!(sink.0.lock().expect("lock").len(), 2);
    }
}
