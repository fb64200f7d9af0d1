//! Benchmark of dewy's tar.gz extraction against GNU `tar -xzf` on the same archive.
//!
//! Run with `cargo bench --bench extract`; `DEWY_BENCH_EXTRACT_MB` sets the uncompressed
//! size (default 300). The archive is made once by the system `tar -czf` from a tree of
//! mixed compressible and incompressible files; each extractor gets the best of 3 runs
//! (after a warm-up), each into a fresh directory. `DEWY_BENCH_EXTRACT_ARCHIVE=/path/x.tar.gz` benchmarks an
//! existing archive instead (kept as is).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dewy::release::{extract, Limits};

const WORDS: &[&str] = &[
    "release", "deploy", "artifact", "symlink", "current", "systemd", "journal", "fn", "let", "mut", "impl",
    "struct", "return", "config", "0x1f", "{", "}", "(", ")", ";", "\n",
];

/// Text-like data that gzip compresses about 4:1.
fn text(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.usize(..WORDS.len())].as_bytes());
        out.push(if rng.u8(..) < 40 { b'\n' } else { b' ' });
        if rng.u8(..) < 8 {
            out.extend_from_slice(rng.u32(..).to_string().as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn noise(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng.fill(&mut out);
    out
}

/// Writes about `total` bytes: 40% small text files, 30% medium mixed, 30% large mixed.
fn build_tree(root: &Path, total: u64) -> std::io::Result<(u64, u64)> {
    let mut rng = fastrand::Rng::with_seed(0xde17);
    let (mut written, mut files) = (0u64, 0u64);
    let budgets = [
        (total * 4 / 10, 1_000, 16_000),
        (total * 3 / 10, 256 << 10, 2 << 20),
        (total * 3 / 10, 8 << 20, 32 << 20),
    ];
    for (class, (budget, lo, hi)) in budgets.into_iter().enumerate() {
        let mut used = 0u64;
        while used < budget {
            let len = rng.usize(lo..hi).min((budget - used) as usize).max(1);
            let dir = root.join(format!("c{class}/d{:03}", files / 200));
            fs::create_dir_all(&dir)?;
            let data = if class == 0 || rng.bool() {
                text(&mut rng, len)
            } else {
                noise(&mut rng, len)
            };
            fs::File::create(dir.join(format!("f{files}.dat")))?.write_all(&data)?;
            used += len as u64;
            files += 1;
        }
        written += used;
    }
    Ok((written, files))
}

/// A new, empty directory for one run. Earlier outputs are kept until the end: deleting
/// thousands of files right before a run makes the filesystem (online discard, journal)
/// slow for a while and would time that instead of the extractor.
fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    fs::create_dir(&dir).expect("create extraction dir");
    nix::unistd::sync();
    dir
}

fn timed(base: &Path, name: &str, run: &mut dyn FnMut(&Path)) -> Duration {
    let dir = fresh_dir(base, name);
    let start = Instant::now();
    run(&dir);
    start.elapsed()
}

/// Best of 3 for each extractor after one untimed warm-up each, runs interleaved so that
/// drift in the filesystem's speed hits both alike.
fn best_of_3_each(base: &Path, a: &mut dyn FnMut(&Path), b: &mut dyn FnMut(&Path)) -> (Duration, Duration) {
    let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
    for i in 0..4 {
        runs_a.push(timed(base, &format!("a{i}"), a));
        runs_b.push(timed(base, &format!("b{i}"), b));
    }
    println!("runs (first is warm-up): {runs_a:.2?} vs {runs_b:.2?}");
    let best = |runs: &[Duration]| runs[1..].iter().copied().min().unwrap_or_default();
    (best(&runs_a), best(&runs_b))
}

/// Builds the source tree and archives it with the system tar; returns the archive and
/// its uncompressed file bytes.
fn build_archive(base: &Path, mb: u64) -> (PathBuf, u64) {
    let src = base.join("src");
    let (bytes, files) = build_tree(&src, mb << 20).expect("build tree");
    let archive = base.join("bench.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .expect("run tar -czf");
    assert!(status.success(), "tar -czf failed");
    fs::remove_dir_all(&src).expect("remove source tree");
    let gz = fs::metadata(&archive).expect("archive").len();
    println!(
        "archive: {files} files, {} MiB uncompressed, {} MiB gzip",
        bytes >> 20,
        gz >> 20
    );
    (archive, bytes)
}

fn main() {
    let mb: u64 = std::env::var("DEWY_BENCH_EXTRACT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    if Command::new("tar").arg("--version").output().is_err() {
        println!("extract tar.gz: skipped, no system tar");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (archive, bytes) = match std::env::var_os("DEWY_BENCH_EXTRACT_ARCHIVE") {
        Some(path) => (PathBuf::from(path), None),
        None => {
            let (archive, bytes) = build_archive(tmp.path(), mb);
            (archive, Some(bytes))
        }
    };
    let mut extracted = 0u64;
    let (gnu, dewy) = best_of_3_each(
        tmp.path(),
        &mut |dir| {
            let ok = Command::new("tar")
                .arg("-xzf")
                .arg(&archive)
                .arg("-C")
                .arg(dir)
                .status()
                .expect("run tar -xzf")
                .success();
            assert!(ok, "tar -xzf failed");
        },
        &mut |dir| {
            let stats = extract(&archive, "bench.tar.gz", dir, &Limits::default()).expect("dewy extract");
            if let Some(bytes) = bytes {
                assert_eq!(stats.bytes, bytes);
            }
            extracted = stats.bytes;
        },
    );
    println!(
        "extract tar.gz {} MiB: gnu-tar {:.2}s, dewy {:.2}s, ratio {:.2} (target <= 1.10)",
        extracted >> 20,
        gnu.as_secs_f64(),
        dewy.as_secs_f64(),
        dewy.as_secs_f64() / gnu.as_secs_f64()
    );
}
