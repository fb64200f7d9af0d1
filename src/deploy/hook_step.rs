//! The hook steps of a deploy: environment, running, logging a failure and reporting the result.

use std::path::Path;

use super::Deployer;
use crate::logging::MSG_FAILURE;
use crate::notify::Event;
use crate::release::{self, HookKind, HookOutcome, HookSpec};

impl Deployer {
    /// Run a configured hook in `dir`; returns true when it succeeded.
    pub(super) async fn hook_step(
        &self,
        kind: HookKind,
        command: &str,
        dir: &Path,
        env: Vec<(String, String)>,
        version: &str,
    ) -> bool {
        let start = std::time::SystemTime::now();
        let outcome = release::run_hook(&HookSpec {
            kind,
            command,
            cwd: dir,
            env,
            timeout: self.settings.hook_timeout,
        })
        .await;
        self.emit(hook_event(version, &outcome));
        let error = (!outcome.success).then(|| {
            outcome
                .error
                .clone()
                .unwrap_or_else(|| format!("exit code {:?}", outcome.exit_code))
        });
        if let Some(error) = &error {
            let what = match kind {
                HookKind::Before => "Before deploy hook failure",
                HookKind::After => "After deploy hook failure",
            };
            tracing::error!(message_id = MSG_FAILURE, dewy_version = %version, error = %error, "{what}");
        }
        let mut attributes = vec![("dewy.hook.command", command.to_string())];
        if let Some(code) = outcome.exit_code {
            attributes.push(("dewy.hook.exit_code", code.to_string()));
        }
        let step = match kind {
            HookKind::Before => "hook.before",
            HookKind::After => "hook.after",
        };
        super::steps::record(step, start, error, attributes);
        outcome.success
    }

    /// The environment a hook gets on top of dewy's own.
    pub(super) fn hook_env(
        &self,
        version: &str,
        previous: Option<&str>,
        dir: &Path,
    ) -> Vec<(String, String)> {
        vec![
            ("DEWY_APP".into(), self.settings.app.clone()),
            ("DEWY_VERSION".into(), version.to_string()),
            (
                "DEWY_PREVIOUS_VERSION".into(),
                previous.unwrap_or_default().to_string(),
            ),
            ("DEWY_RELEASE_DIR".into(), dir.display().to_string()),
        ]
    }
}

/// The notification of a hook run: stdout, stderr and any error joined as its output.
fn hook_event(version: &str, o: &HookOutcome) -> Event {
    let output = [
        o.stdout.as_str(),
        o.stderr.as_str(),
        o.error.as_deref().unwrap_or_default(),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("\n");
    Event::Hook {
        version: version.to_string(),
        kind: o.kind.to_string(),
        command: o.command.clone(),
        success: o.success,
        exit_code: o.exit_code,
        duration: o.duration,
        output,
    }
}
