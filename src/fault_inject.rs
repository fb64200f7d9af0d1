//! Crash points for the fault-injection test: in debug builds, `DEWY_TEST_KILL_AT=<step>@<version>`
//! makes the deployer SIGKILL itself when a deploy of that version reaches that step. Release
//! builds compile every point to nothing.

use crate::registry::ByteStream;

/// The steps a deploy can be killed at, in the order a deploy reaches them.
pub const STEPS: &[&str] = &[
    "download",
    "downloaded",
    "pending",
    "extract",
    "extracted",
    "before-hook",
    "switch",
    "switched",
    "restart",
    "started",
    "live",
    "after-hook",
];

/// SIGKILL this process if the test asked for `step` of `version`.
pub fn point(step: &str, version: &str) {
    #[cfg(debug_assertions)]
    if armed(step, version) {
        kill(step, version);
    }
    #[cfg(not(debug_assertions))]
    let _ = (step, version);
}

/// SIGKILL this process a moment (300 ms) from now, while the step that follows runs (a hook),
/// if the test asked for `step` of `version`.
pub fn during(step: &str, version: &str) {
    #[cfg(debug_assertions)]
    if armed(step, version) {
        let (step, version) = (step.to_string(), version.to_string());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            kill(&step, &version);
        });
    }
    #[cfg(not(debug_assertions))]
    let _ = (step, version);
}

/// `stream`, which SIGKILLs this process once its second chunk has been read (the download is
/// then partly written), if the test asked for `step` of `version`.
pub fn in_stream(stream: ByteStream, step: &'static str, version: &str) -> ByteStream {
    #[cfg(debug_assertions)]
    if armed(step, version) {
        use futures_util::StreamExt;
        let version = version.to_string();
        let mut chunks = 0u32;
        return Box::pin(stream.inspect(move |_| {
            chunks += 1;
            if chunks == 2 {
                kill(step, &version);
            }
        }));
    }
    #[cfg(not(debug_assertions))]
    let _ = (step, version);
    stream
}

#[cfg(debug_assertions)]
fn armed(step: &str, version: &str) -> bool {
    std::env::var("DEWY_TEST_KILL_AT").is_ok_and(|v| v.split_once('@') == Some((step, version)))
}

#[cfg(debug_assertions)]
fn kill(step: &str, version: &str) {
    eprintln!("fault injection: SIGKILL at {step} of {version}");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}
