//! Fuzzing the archive readers through the real extraction entry point: each input is
//! written to a scratch file and extracted with small limits into a fresh directory, which
//! is then checked (nothing written beside it, every symlink inside it) and removed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::release::{extract, Limits};

/// Limits small enough for thousands of runs per second.
const LIMITS: Limits = Limits {
    max_total_bytes: 8 << 20,
    max_entries: 4096,
};

/// The artifact names of the compressed tar formats, chosen by the first input byte.
const COMPRESSED: [&str; 4] = ["fuzz.tar.gz", "fuzz.tar.xz", "fuzz.tar.zst", "fuzz.tar.bz2"];

/// A plain tar archive.
pub fn tar(data: &[u8]) {
    extract_checked(data, "fuzz.tar");
}

/// A zip archive.
pub fn zip(data: &[u8]) {
    extract_checked(data, "fuzz.zip");
}

/// A compressed tar: the first byte picks gzip, xz, zstd or bzip2; the rest is the file.
pub fn compressed(data: &[u8]) {
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    extract_checked(rest, COMPRESSED[usize::from(*pick) % COMPRESSED.len()]);
}

/// Extracts `data` as `artifact`; any result is fine, but nothing may appear outside the
/// destination and no symlink in it may point outside. Panics (a finding) otherwise.
pub fn extract_checked(data: &[u8], artifact: &str) {
    let scratch = std::env::temp_dir().join(format!(
        "dewy-fuzz-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let dest = scratch.join("dest");
    let archive = scratch.join("archive");
    fs::create_dir_all(&dest).expect("create scratch directory");
    fs::write(&archive, data).expect("write scratch archive");
    let _ = extract(&archive, artifact, &dest, &LIMITS);
    let outside: Vec<_> = fs::read_dir(&scratch)
        .expect("list scratch")
        .map(|e| e.expect("scratch entry").file_name())
        .filter(|n| n != "dest" && n != "archive")
        .collect();
    assert!(outside.is_empty(), "written beside the destination: {outside:?}");
    check_tree(&dest, &dest);
    make_removable(&dest);
    fs::remove_dir_all(&scratch).expect("remove scratch");
}

/// Every symlink under `dir` is relative and resolves (lexically) inside `root`; nothing
/// but files, directories and symlinks exists.
fn check_tree(root: &Path, dir: &Path) {
    for entry in fs::read_dir(dir).expect("list destination") {
        let entry = entry.expect("destination entry");
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            check_tree(root, &path);
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).expect("read symlink");
            assert!(
                inside(root, dir, &target),
                "symlink {} -> {} leaves the release",
                path.display(),
                target.display()
            );
        } else {
            assert!(kind.is_file(), "special file {}", path.display());
        }
    }
}

/// Whether `target`, relative to `dir`, stays within `root` without following anything.
fn inside(root: &Path, dir: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut at: PathBuf = dir.to_path_buf();
    for c in target.components() {
        match c {
            Component::Normal(n) => at.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if at == root {
                    return false;
                }
                at.pop();
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    at.starts_with(root)
}

/// Gives every directory under `dir` owner rwx so the tree can be removed by anyone.
fn make_removable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_removable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_containment() {
        let root = Path::new("/r");
        assert!(inside(root, Path::new("/r/a"), Path::new("../b")));
        assert!(!inside(root, Path::new("/r/a"), Path::new("../../b")));
        assert!(!inside(root, Path::new("/r"), Path::new("/etc")));
        assert!(inside(root, Path::new("/r"), Path::new("./x/../y")));
    }

    /// The checked-in seed corpora go through the same harness as the fuzzer runs.
    #[test]
    fn seed_corpora_run_clean() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 3] = [
            ("archive_tar", tar),
            ("archive_zip", zip),
            ("archive_compressed", compressed),
        ];
        for (target, run) in targets {
            let mut seeds = 0;
            for entry in fs::read_dir(corpus.join(target)).expect("corpus") {
                let data = fs::read(entry.expect("seed").path()).expect("read seed");
                run(&data);
                seeds += 1;
            }
            assert!(seeds >= 5, "{target}: {seeds} seeds");
        }
    }

    #[test]
    fn inputs_of_every_kind_run_clean() {
        for data in [&b""[..], b"garbage", &[0u8; 1024]] {
            tar(data);
            zip(data);
            compressed(data);
        }
    }
}
