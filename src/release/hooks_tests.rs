//! Unit tests of hook execution.

use super::*;

fn spec<'a>(command: &'a str, cwd: &'a Path, timeout: Duration) -> HookSpec<'a> {
    HookSpec {
        kind: HookKind::Before,
        command,
        cwd,
        env: vec![("DEWY_TEST_VAR".into(), "hello world".into())],
        timeout,
    }
}

#[tokio::test]
async fn env_and_stdout_are_visible() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = run_hook(&spec(
        "echo \"$DEWY_TEST_VAR\"; pwd; echo oops >&2",
        tmp.path(),
        Duration::from_secs(10),
    ))
    .await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.exit_code, Some(0));
    let cwd = tmp.path().canonicalize().expect("canonicalize");
    assert_eq!(o.stdout, format!("hello world\n{}", cwd.display()));
    assert_eq!(o.stderr, "oops");
    assert!(o.error.is_none() && !o.timed_out);
}

#[tokio::test]
async fn exit_code_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = run_hook(&spec("echo partial; exit 3", tmp.path(), Duration::from_secs(10))).await;
    assert!(!o.success);
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.stdout, "partial");
    assert!(o.error.as_deref().is_some_and(|e| e.contains('3')), "{o:?}");
}

#[tokio::test]
async fn missing_cwd_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gone = tmp.path().join("gone");
    let o = run_hook(&spec("true", &gone, Duration::from_secs(10))).await;
    assert!(!o.success && o.exit_code.is_none());
    assert!(o.error.is_some(), "{o:?}");
}

#[tokio::test]
async fn output_is_capped_to_the_tail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = run_hook(&spec(
        "head -c 200000 /dev/zero | tr '\\0' a; echo END",
        tmp.path(),
        Duration::from_secs(10),
    ))
    .await;
    assert!(o.success, "{o:?}");
    assert!(o.stdout.starts_with('['), "truncation noted");
    assert!(o.stdout.ends_with("aaaEND"));
    assert!(o.stdout.len() <= OUTPUT_CAP + 64);
}

fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for its reaper is dead too.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pidfile = tmp.path().join("grandchild.pid");
    let command = format!("sh -c 'sleep 100 & echo $! > {}; sleep 100'", pidfile.display());
    let started = Instant::now();
    let o = run_hook(&spec(&command, tmp.path(), Duration::from_millis(700))).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(o.timed_out && !o.success, "{o:?}");
    assert!(o.error.as_deref().is_some_and(|e| e.contains("timed out")));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !is_gone(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(is_gone(pid), "grandchild {pid} survived the timeout");
}

#[tokio::test]
async fn background_process_does_not_block_a_finished_hook() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let o = run_hook(&spec(
        "sleep 3 & echo started",
        tmp.path(),
        Duration::from_secs(10),
    ))
    .await;
    assert!(o.success, "{o:?}");
    assert_eq!(o.stdout, "started");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
