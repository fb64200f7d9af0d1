//! A panic in a spawned task ends the process with a non-zero status (70) once the binaries'
//! panic hook is installed, instead of the task dying silently while the process stays up.
//!
//! The test runs itself again as a child process that installs the hook the binaries install,
//! spawns a polling loop on a tokio runtime that panics, and then would wait and exit 0.

use std::process::Command;
use std::time::{Duration, Instant};

const CHILD: &str = "DEWY_TEST_PANIC_CHILD";

/// What the child does: the shape of the watcher's main loop, with a poll that panics.
fn child() -> ! {
    dewy::cli::exit_on_panic();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::spawn(async {
            for round in 0.. {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if round == 3 {
                    panic!("polling task failed in round {round}");
                }
            }
        });
        // Without the hook tokio keeps the process up after the task's panic.
        tokio::time::sleep(Duration::from_secs(20)).await;
    });
    std::process::exit(0)
}

#[test]
fn a_panicking_task_ends_the_process_with_status_70() {
    if std::env::var_os(CHILD).is_some() {
        child();
    }
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_panicking_task_ends_the_process_with_status_70",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("running the child");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(dewy::EXIT_PANIC), "{err}");
    assert!(err.contains("polling task failed in round 3"), "{err}");
    // It ended at the panic, not after the 20 s wait.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}
