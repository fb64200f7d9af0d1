//! A full disk is the host's fault, not the release's: `dewy assets` with its root (releases,
//! cache, state) on a small tmpfs the test mounts, a release that does not fit — first in the
//! download, then in the extraction — is not marked bad, leaves no partial files, keeps the
//! previous release live, and deploys once space is freed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::proc::Daemon;
use support::{current_file, current_target, tar_gz, wait_for, Workspace};

const LONG: Duration = Duration::from_secs(90);
const MIB: u64 = 1 << 20;

/// A tmpfs mounted by the test, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0755"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn resize(&self, bytes: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(status.success(), "remount {}", self.0.display());
    }

    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.0).expect("statvfs");
        st.blocks_available() * st.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn site(version: &str, big: &[u8]) -> Vec<u8> {
    tar_gz(&[
        ("VERSION", 0o644, version.as_bytes()),
        ("assets/big.bin", 0o644, big),
    ])
}

/// Deterministic incompressible bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..len).map(|_| rng.u8(..)).collect()
}

fn state(root: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join(".dewy/state.json")).expect("state.json");
    serde_json::from_str(&text).expect("state.json is JSON")
}

fn hidden(dir: &Path, prefix: &str, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// Names matching in `dir` that are still there seconds later: an attempt in progress (the
/// daemon retries every second) is gone by then, a leftover of a failed one never is.
fn leftovers(dir: &Path, prefix: &str, suffix: &str) -> Vec<String> {
    let before = hidden(dir, prefix, suffix);
    std::thread::sleep(Duration::from_secs(4));
    let after = hidden(dir, prefix, suffix);
    before.into_iter().filter(|n| after.contains(n)).collect()
}

fn nothing_bad(root: &Path) -> bool {
    state(root)["bad"].as_object().is_none_or(|m| m.is_empty())
}

#[test]
fn a_full_disk_is_retried_and_never_marks_the_release_bad() {
    let s = Workspace::new();
    let Some(fs) = Tmpfs::mount(&s.root, 16 * MIB) else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    };
    s.publish("v1.0.0", &site("v1.0.0", b"small"));
    let url = s.registry_url();
    let d = Daemon::start(
        env!("CARGO_BIN_EXE_dewy"),
        &["assets", "--registry", &url, "--interval", "1", "--bus", "none"],
        &[],
        &s.root,
        &s.root.join("../dewy.log"),
    );
    wait_for("v1.0.0 live", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    let v1 = current_target(&s.root).expect("current");

    // v2 carries 3 MiB that do not compress: the artifact and its extraction each need 3 MiB.
    let v2 = site("v2.0.0", &noise(3 * MIB as usize));
    let artifact = v2.len() as u64;
    // Leave 1 MiB: not even the download fits.
    let filler_path = s.root.join("filler");
    let filler = std::fs::File::create(&filler_path).expect("filler");
    let fill_to = |free_wanted: u64| {
        let now = filler.metadata().expect("filler").len();
        let target = (now + fs.free()).saturating_sub(free_wanted);
        filler.set_len(target).expect("resize filler");
        // tmpfs allocates on write: write the blocks so they count.
        use std::os::unix::fs::FileExt;
        let block = vec![1u8; 1 << 16];
        let mut at = now;
        while at < target {
            let n = block.len().min((target - at) as usize);
            filler.write_all_at(&block[..n], at).expect("fill");
            at += n as u64;
        }
    };
    fill_to(MIB);
    s.publish("v2.0.0", &v2);

    let cache = s.root.join(".dewy/cache");
    let download_failure = wait_for("the download to fail for lack of space", LONG, || {
        d.log()
            .lines()
            .find(|l| l.contains("Deploy failed") && l.contains("artifact needs at least"))
            .map(str::to_string)
    });
    eprintln!("{download_failure}");
    assert!(
        download_failure.contains(&cache.display().to_string()),
        "{download_failure}"
    );
    assert!(
        download_failure.contains("No space left on device"),
        "{download_failure}"
    );
    assert_eq!(
        leftovers(&cache, ".", ".part"),
        Vec::<String>::new(),
        "partial download left behind"
    );
    assert_eq!(current_target(&s.root).as_deref(), Some(v1.as_str()));
    assert!(
        nothing_bad(&s.root),
        "marked bad after a full disk: {}",
        state(&s.root)
    );

    // Room for the download but not for the extraction as well.
    filler.set_len(0).expect("empty filler");
    fill_to(artifact + 3 * MIB / 2);
    let extract_failure = wait_for("the extraction to fail for lack of space", LONG, || {
        d.log()
            .lines()
            .find(|l| l.contains("Deploy failed") && l.contains("out of disk space writing"))
            .map(str::to_string)
    });
    eprintln!("{extract_failure}");
    assert!(extract_failure.contains("assets/big.bin"), "{extract_failure}");
    assert!(
        extract_failure.contains("the release needs at least"),
        "{extract_failure}"
    );
    assert!(
        extract_failure.contains("releases/.staging-"),
        "{extract_failure}"
    );
    assert_eq!(
        leftovers(&s.root.join("releases"), ".staging-", ""),
        Vec::<String>::new(),
        "staging directory left behind"
    );
    assert_eq!(current_file(&s.root, "VERSION").as_deref(), Some("v1.0.0"));
    assert_eq!(current_target(&s.root).as_deref(), Some(v1.as_str()));
    assert!(
        nothing_bad(&s.root),
        "marked bad after a full disk: {}",
        state(&s.root)
    );
    assert!(
        cache.join("v2.0.0--site.tar.gz").is_file(),
        "the verified download stays cached"
    );

    // More room: the next check deploys v2 without anyone forgetting a bad mark.
    fs.resize(64 * MIB);
    wait_for("v2.0.0 live once space is freed", LONG, || {
        (current_file(&s.root, "VERSION").as_deref() == Some("v2.0.0")).then_some(())
    });
    let log = d.log();
    assert!(!log.contains("is marked bad"), "{log}");
    assert!(!log.contains("failed before"), "{log}");
    assert!(nothing_bad(&s.root), "{}", state(&s.root));
    drop(d);
    drop(filler);
}
