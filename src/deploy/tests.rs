//! The pipeline's decisions over a scripted runtime: step order, what the state records, what a
//! failure of each kind marks, hooks, rollback and the repair at start.

use std::sync::Arc;

use super::runtime::scripted::{Scripted, Step};
use super::state::{Outcome, Pending, StateFile};
use super::{DeployResult, Deployer};
use crate::failure::Fault;
use crate::registry::Release;

struct Rig {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    runtime: Arc<Scripted>,
    deployer: Arc<Deployer>,
}

fn rig_with(extra: &str, before_open: impl FnOnce(&std::path::Path)) -> Rig {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("app");
    std::fs::create_dir_all(root.join("releases")).expect("mkdir");
    let text = format!(
        "registry = \"file://{}/src?artifact=app.tar.gz\"\nroot = \"{}\"\n{extra}\n",
        tmp.path().display(),
        root.display()
    );
    let settings = crate::config::from_text("app", &tmp.path().join("app.toml"), &text).expect("settings");
    before_open(&settings.state_dir);
    let registry = crate::registry::open(&settings.registry, &Default::default()).expect("registry");
    let runtime = Arc::new(Scripted::new(root.join("releases")));
    let deployer = Deployer::with_runtime(settings, registry, runtime.clone()).expect("deployer");
    Rig {
        _tmp: tmp,
        root,
        runtime,
        deployer,
    }
}

fn rig() -> Rig {
    rig_with("", |_| {})
}

fn release(version: &str) -> Release {
    Release {
        version: version.into(),
        artifact: "app.tar.gz".into(),
        artifact_url: format!("file:///src/{version}/app.tar.gz"),
        checksum_url: None,
        published_at: None,
        signatures: Vec::new(),
    }
}

#[tokio::test]
async fn a_deploy_runs_the_steps_in_order_and_records_the_release_live() {
    let r = rig();
    let out = r.deployer.offer(release("v1.0.0")).await;
    assert_eq!(
        out,
        DeployResult::Deployed {
            version: "v1.0.0".into(),
            release: "r-v1.0.0".into()
        }
    );
    assert_eq!(
        r.runtime.calls(),
        [
            "fetch v1.0.0",
            "unpack v1.0.0",
            "activate v1.0.0",
            "clean_up r-v1.0.0"
        ]
    );
    let status = r.deployer.status();
    let live = status.live.expect("live");
    assert_eq!(
        (live.version.as_str(), live.release.as_str()),
        ("v1.0.0", "r-v1.0.0")
    );
    assert_eq!(live.sha256.as_deref(), Some("sha-v1.0.0"));
    assert_eq!(status.last.expect("history").result, Outcome::Deployed);

    // The same release again: skipped, no step runs.
    let again = r.deployer.offer(release("v1.0.0")).await;
    assert_eq!(again.kind(), "skipped", "{again:?}");
    assert_eq!(r.runtime.calls().len(), 4);

    // A second release: the first becomes previous.
    r.deployer.offer(release("v2.0.0")).await;
    let status = r.deployer.status();
    assert_eq!(status.live.expect("live").version, "v2.0.0");
    assert_eq!(status.previous.expect("previous").version, "v1.0.0");
}

#[tokio::test]
async fn the_releases_fault_marks_it_bad_and_the_next_check_skips_it() {
    let r = rig();
    r.deployer.offer(release("v1.0.0")).await;
    r.runtime.fail(Step::Activate, Fault::Release);
    let out = r.deployer.offer(release("v2.0.0")).await;
    assert_eq!(out.kind(), "failed", "{out:?}");
    let status = r.deployer.status();
    assert_eq!(status.live.expect("live").version, "v1.0.0");
    assert_eq!(status.bad.len(), 1);
    assert_eq!(status.bad[0].version, "v2.0.0");
    assert_eq!(status.bad[0].sha256.as_deref(), Some("feed"));
    assert_eq!(r.runtime.serving().as_deref(), Some("r-v1.0.0"));

    let again = r.deployer.offer(release("v2.0.0")).await;
    assert_eq!(again.kind(), "skipped", "{again:?}");
    // An operator's deploy does not consult the ledger; forgetting clears it.
    assert!(r.deployer.forget_bad("v2.0.0").await.expect("forget"));
    let retried = r.deployer.offer(release("v2.0.0")).await;
    assert_eq!(retried.kind(), "deployed", "{retried:?}");
    assert!(r.deployer.status().bad.is_empty());
}

#[tokio::test]
async fn a_host_or_passing_fault_marks_nothing_and_the_next_check_retries() {
    for (step, fault) in [
        (Step::Fetch, Fault::Transient),
        (Step::Unpack, Fault::Host),
        (Step::Activate, Fault::Host),
    ] {
        let r = rig();
        r.runtime.fail(step, fault);
        let out = r.deployer.offer(release("v1.0.0")).await;
        assert_eq!(out.kind(), "failed", "{step:?} {fault:?}: {out:?}");
        let status = r.deployer.status();
        assert!(status.bad.is_empty(), "{step:?} {fault:?} marked it bad");
        assert!(status.live.is_none());
        assert_eq!(status.last.expect("history").result, Outcome::Failed);
        let retried = r.deployer.offer(release("v1.0.0")).await;
        assert_eq!(retried.kind(), "deployed", "{step:?} {fault:?}: {retried:?}");
    }
}

#[tokio::test]
async fn an_aborting_before_hook_discards_the_release_and_activates_nothing() {
    let r = rig_with(
        "before-deploy-hook = \"exit 3\"\nbefore-hook-failure = \"abort\"",
        |_| {},
    );
    let out = r.deployer.offer(release("v1.0.0")).await;
    assert_eq!(out.kind(), "failed", "{out:?}");
    assert_eq!(
        r.runtime.calls(),
        ["fetch v1.0.0", "unpack v1.0.0", "discard r-v1.0.0"]
    );
    assert!(r.deployer.status().bad.is_empty());
    assert!(r.deployer.status().live.is_none());
}

#[tokio::test]
async fn hooks_run_in_the_prepared_release_with_its_environment() {
    let r = rig_with(
        "before-deploy-hook = \"echo $DEWY_VERSION $DEWY_PREVIOUS_VERSION > before.txt\"\nafter-deploy-hook = \"pwd > after.txt\"",
        |_| {},
    );
    r.deployer.offer(release("v1.0.0")).await;
    r.deployer.offer(release("v2.0.0")).await;
    let dir = r.root.join("releases/r-v2.0.0");
    let before = std::fs::read_to_string(dir.join("before.txt")).expect("before hook ran");
    assert_eq!(before.trim(), "v2.0.0 v1.0.0");
    let after = std::fs::read_to_string(dir.join("after.txt")).expect("after hook ran");
    assert_eq!(
        std::path::Path::new(after.trim()),
        dir.canonicalize().expect("dir")
    );
}

#[tokio::test]
async fn a_release_that_stopped_running_is_deployed_again() {
    let r = rig();
    r.deployer.offer(release("v1.0.0")).await;
    r.runtime.set_running(false);
    let out = r.deployer.offer(release("v1.0.0")).await;
    assert_eq!(out.kind(), "deployed", "{out:?}");
}

#[tokio::test]
async fn rollback_brings_the_previous_release_back_and_marks_the_live_one_bad() {
    let r = rig();
    let first = r.deployer.rollback().await;
    assert_eq!(first.kind(), "failed", "nothing to roll back to: {first:?}");
    r.deployer.offer(release("v1.0.0")).await;
    r.deployer.offer(release("v2.0.0")).await;

    r.runtime.fail(Step::RollBack, Fault::Transient);
    let failed = r.deployer.rollback().await;
    assert_eq!(failed.kind(), "failed", "{failed:?}");
    assert_eq!(r.deployer.live_version().as_deref(), Some("v2.0.0"));
    assert!(r.deployer.status().bad.is_empty());

    let out = r.deployer.rollback().await;
    assert_eq!(out.kind(), "deployed", "{out:?}");
    let status = r.deployer.status();
    assert_eq!(status.live.expect("live").version, "v1.0.0");
    assert_eq!(status.previous.expect("previous").version, "v2.0.0");
    assert_eq!(status.bad[0].version, "v2.0.0");
    assert_eq!(status.last.expect("history").result, Outcome::RolledBack);
    assert_eq!(r.runtime.serving().as_deref(), Some("r-v1.0.0"));
}

fn pending(version: &str) -> Pending {
    Pending {
        version: version.into(),
        cache_key: format!("{version}--app.tar.gz"),
        artifact_url: String::new(),
        sha256: None,
        release: Some(format!("r-{version}")),
        started_at: chrono::Utc::now(),
        reason: "new release".into(),
    }
}

#[test]
fn an_interrupted_deploy_is_kept_when_it_went_live_and_undone_when_not() {
    for went_live in [true, false] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("app");
        let text = format!(
            "registry = \"file://{}/src?artifact=app.tar.gz\"\nroot = \"{}\"\n",
            tmp.path().display(),
            root.display()
        );
        let settings =
            crate::config::from_text("app", &tmp.path().join("app.toml"), &text).expect("settings");
        let file = StateFile::new(&settings.state_dir);
        let mut st = file.load().expect("state");
        st.pending = Some(pending("v3.0.0"));
        file.save(&st).expect("save");
        let registry = crate::registry::open(&settings.registry, &Default::default()).expect("registry");
        let runtime = Arc::new(Scripted::new(root.join("releases")));
        runtime.set_pending_was_live(went_live);
        let d = Deployer::with_runtime(settings, registry, runtime).expect("deployer");
        let status = d.status();
        let last = status.last.expect("history");
        if went_live {
            assert_eq!(status.live.expect("live").version, "v3.0.0");
            assert_eq!(last.result, Outcome::Recovered);
        } else {
            assert!(status.live.is_none());
            assert_eq!(last.result, Outcome::Failed);
        }
        assert!(file.load().expect("state").pending.is_none(), "pending cleared");
    }
}

/// Every event the deployer reports, in order.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<crate::notify::Event>>);

impl crate::notify::EventSink for Recorder {
    fn emit(&self, event: crate::notify::Event) {
        self.0.lock().expect("events").push(event);
    }
}

impl Recorder {
    fn kinds(&self) -> Vec<&'static str> {
        self.0.lock().expect("events").iter().map(|e| e.kind()).collect()
    }
}

#[tokio::test]
async fn a_pause_holds_new_releases_across_a_restart_until_resume() {
    let r = rig();
    let events = Arc::new(Recorder::default());
    r.deployer.set_events(events.clone());
    r.deployer.offer(release("v1.0.0")).await;
    let (pause, new) = r.deployer.pause(" incident 42 ").expect("pause");
    assert!(new);
    assert_eq!(pause.reason, "incident 42");
    let (again, new) = r.deployer.pause("something else").expect("pause again");
    assert!(!new, "already paused");
    assert_eq!(again, pause, "the first pause is kept");
    let bad = r.deployer.pause("two\nlines").expect_err("a control character");
    assert!(bad.to_string().contains("control character"), "{bad}");

    let out = r.deployer.offer(release("v2.0.0")).await;
    match &out {
        DeployResult::Skipped { reason, .. } => {
            assert!(reason.starts_with("v2.0.0 held back: paused since "), "{reason}");
            assert!(reason.contains(": incident 42; `dewy resume app`"), "{reason}");
        }
        other => panic!("not held back: {other:?}"),
    }
    let status = r.deployer.status();
    assert_eq!(status.live.expect("live").version, "v1.0.0");
    assert_eq!(status.paused.as_ref(), Some(&pause));
    assert!(status.waiting.expect("waiting").starts_with("v2.0.0 held back"));

    // The live release that stopped running is still repaired while paused.
    r.runtime.set_running(false);
    assert_eq!(r.deployer.offer(release("v1.0.0")).await.kind(), "deployed");

    // An operator's deploy is refused without the override, before anything is looked up.
    let refused = r.deployer.deploy_version("v2.0.0", Default::default()).await;
    match &refused {
        DeployResult::Failed { error, .. } => {
            assert!(error.starts_with("app is paused since "), "{error}");
            assert!(error.contains("`dewy deploy v2.0.0 --ignore-pause`"), "{error}");
        }
        other => panic!("not refused: {other:?}"),
    }
    let src = r.root.parent().expect("tmp").join("src/v2.0.0");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("app.tar.gz"), b"x").expect("artifact");
    let forced = r
        .deployer
        .deploy_version(
            "v2.0.0",
            super::Overrides {
                pause: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(forced.kind(), "deployed", "{forced:?}");
    assert!(
        r.deployer.paused().is_some(),
        "the override leaves the pause in force"
    );

    // The pause is in the state file: a new deployer on the same state is paused.
    let reopened = {
        let settings = r.deployer.settings().clone();
        let registry = crate::registry::open(&settings.registry, &Default::default()).expect("registry");
        let runtime = Arc::new(Scripted::new(r.root.join("releases")));
        Deployer::with_runtime(settings, registry, runtime).expect("deployer")
    };
    assert_eq!(reopened.paused(), Some(pause.clone()));
    drop(reopened);

    let ended = r.deployer.resume().expect("resume");
    assert_eq!(ended, Some(pause));
    assert_eq!(r.deployer.resume().expect("resume again"), None);
    assert!(r.deployer.status().paused.is_none());
    assert!(r.deployer.status().waiting.is_none());
    assert_eq!(r.deployer.offer(release("v3.0.0")).await.kind(), "deployed");
    let kinds = events.kinds();
    assert_eq!(
        kinds.iter().filter(|k| **k == "paused").count(),
        1,
        "one pause announced: {kinds:?}"
    );
    let paused_at = kinds.iter().position(|k| *k == "paused").expect("paused");
    let resumed_at = kinds.iter().position(|k| *k == "resumed").expect("resumed");
    assert!(paused_at < resumed_at, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "resumed").count(), 1, "{kinds:?}");
}

#[tokio::test]
async fn outside_its_window_a_release_waits_then_deploys_when_the_window_opens() {
    use chrono::{DateTime, Utc};
    // A window of ten minutes (UTC) on today's day from the next whole minute at least 5 s away.
    let now = Utc::now();
    let start = DateTime::from_timestamp(((now.timestamp() + 5) / 60 + 1) * 60, 0).expect("start");
    let day = start.format("%a").to_string().to_lowercase();
    let r = rig_with(
        &format!(
            "[[window]]\ndays = [\"{day}\"]\nstart = \"{}\"\nlength = \"10m\"\n",
            start.format("%H:%M")
        ),
        |_| {},
    );
    let opens = start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    let out = r.deployer.offer(release("v1.0.0")).await;
    assert_eq!(
        out,
        DeployResult::Skipped {
            version: "v1.0.0".into(),
            reason: format!("waiting for a deploy window until {opens}")
        }
    );
    let status = r.deployer.status();
    assert_eq!(
        status.waiting,
        Some(format!("waiting for a deploy window until {opens}"))
    );
    assert_eq!(status.window, Some(format!("closed until {opens}")));
    assert!(
        r.runtime.calls().is_empty(),
        "nothing fetched: {:?}",
        r.runtime.calls()
    );

    // An operator's deploy is refused outside the windows unless it names the override.
    match r.deployer.deploy_version("v0.9.0", Default::default()).await {
        DeployResult::Failed { error, .. } => {
            assert!(error.contains(&format!("closed until {opens}")), "{error}");
            assert!(error.contains("`dewy deploy v0.9.0 --ignore-window`"), "{error}");
        }
        other => panic!("not refused: {other:?}"),
    }
    let src = r.root.parent().expect("tmp").join("src/v0.9.0");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("app.tar.gz"), b"x").expect("artifact");
    let overrides = super::Overrides {
        window: true,
        ..Default::default()
    };
    let forced = r.deployer.deploy_version("v0.9.0", overrides).await;
    assert_eq!(forced.kind(), "deployed", "{forced:?}");

    // The watcher's offers wait until the window opens, then the release deploys. Whatever the
    // machine's speed: an offer answered "waiting" was made before the start, one deployed
    // returned after it.
    let deadline = start + chrono::Duration::minutes(5);
    loop {
        let before = Utc::now();
        let out = r.deployer.offer(release("v1.0.0")).await;
        let after = Utc::now();
        match out {
            DeployResult::Skipped { reason, .. } => {
                assert!(before < start, "still waiting at {before}: {reason}");
                assert!(reason.starts_with("waiting for a deploy window"), "{reason}");
            }
            DeployResult::Deployed { .. } => {
                assert!(
                    after >= start,
                    "deployed at {after}, before the window at {start}"
                );
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(after < deadline, "not deployed by {deadline}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let status = r.deployer.status();
    assert_eq!(status.live.expect("live").version, "v1.0.0");
    assert_eq!(status.waiting, None);
    assert!(
        status
            .window
            .as_deref()
            .is_some_and(|w| w.starts_with("open until ")),
        "{:?}",
        status.window
    );
}
