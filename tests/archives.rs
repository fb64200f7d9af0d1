//! Extraction of release archives: a corpus of malicious and broken archives built at run
//! time (each must be refused by name with nothing written outside the destination), and
//! every supported format extracted with contents, modes and symlinks intact.

#[path = "support/archives.rs"]
mod corpus;

use std::fs;
use std::path::Path;

use corpus::*;
use dewy::release::{extract, ExtractError, ExtractStats, Limits};
use tar::EntryType;

fn run(s: &Scratch, artifact: &str, bytes: &[u8], limits: &Limits) -> Result<ExtractStats, ExtractError> {
    let path = s.archive(&format!("archive-{}", artifact.replace('/', "_")), bytes);
    extract(&path, artifact, &s.dest, limits)
}

/// Builds an archive (which may aim at the scratch's own paths), extracts it, and checks
/// it is refused with `expect` in the message and nothing written outside `dest`.
fn refused_with(
    artifact: &str,
    limits: &Limits,
    expect: &str,
    build: impl FnOnce(&Scratch) -> Vec<u8>,
) -> ExtractError {
    let s = Scratch::new();
    let bytes = build(&s);
    let err = run(&s, artifact, &bytes, limits).expect_err("archive must be refused");
    let text = err.to_string();
    eprintln!("{artifact}: {text}");
    assert!(
        text.contains(expect),
        "{artifact}: expected {expect:?} in {text:?}"
    );
    s.assert_nothing_outside();
    err
}

fn refused(artifact: &str, bytes: Vec<u8>, expect: &str) -> ExtractError {
    refused_with(artifact, &Limits::default(), expect, |_| bytes)
}

#[test]
fn tar_parent_dir_entry_refused() {
    let tar = RawTar::new()
        .file("ok", 0o644, b"x")
        .file("../sentinel/pwned", 0o644, b"evil");
    let err = refused("a.tar.gz", gzip(&tar.finish()), "`..` component");
    assert!(matches!(err, ExtractError::UnsafePath { ref entry, .. } if entry == "../sentinel/pwned"));
    let tar = RawTar::new().file("a/./../../sentinel/pwned", 0o644, b"evil");
    refused("a.tar", tar.finish(), "a/./../../sentinel/pwned");
}

#[test]
fn tar_absolute_path_refused() {
    let err = refused_with("a.tar", &Limits::default(), "absolute path", |s| {
        let abs = s.sentinel.join("abs");
        RawTar::new()
            .file(&abs.to_string_lossy(), 0o644, b"evil")
            .finish()
    });
    assert!(matches!(err, ExtractError::UnsafePath { .. }), "{err:?}");
}

#[test]
fn tar_symlink_escape_refused() {
    for (name, target, why) in [
        ("up", "../sentinel", "escapes the release directory"),
        ("sub/up", "../../sentinel", "escapes the release directory"),
        ("root", "..", "escapes the release directory"),
        ("abs", "/etc", "is absolute"),
        ("sneaky", "a/../../sentinel", "escapes the release directory"),
    ] {
        let tar = RawTar::new().dir("sub/", 0o755).symlink(name, target);
        let err = refused("a.tar.gz", gzip(&tar.finish()), why);
        assert!(matches!(err, ExtractError::UnsafeSymlink { .. }), "{err:?}");
        assert!(err.to_string().contains(name));
    }
}

#[test]
fn tar_hardlink_escape_refused() {
    for (target, why) in [
        ("../sentinel/x", "`..` component"),
        ("/etc/passwd", "absolute path"),
        ("never-extracted", "was not extracted"),
        ("dir", "not a regular file"),
    ] {
        let tar = RawTar::new().dir("dir/", 0o755).hardlink("link", target);
        let err = refused("a.tar", tar.finish(), why);
        assert!(matches!(err, ExtractError::UnsafeHardlink { .. }), "{err:?}");
    }
}

#[test]
fn tar_device_nodes_and_fifos_refused() {
    for (kind, what) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "FIFO"),
    ] {
        let tar = RawTar::new().entry("node", kind, 0o644, "", b"");
        let err = refused("a.tar.gz", gzip(&tar.finish()), what);
        assert!(matches!(err, ExtractError::SpecialFile { .. }), "{err:?}");
    }
}

#[test]
fn tar_lying_sizes_refused() {
    // Header claims more data than the stream holds.
    let tar = RawTar::new().lying("big", 1 << 20, &[7u8; 512]).unterminated();
    refused("a.tar.gz", gzip(&tar), "corrupt or truncated tar.gz");
    // Header claims less: the rest of the data is read as a (bad) header.
    let tar = RawTar::new().lying("small", 0, &[0x41u8; 2048]).finish();
    refused("a.tar", tar, "corrupt or truncated tar");
    // Header alone is past the size limit: refused before writing.
    let limits = Limits {
        max_total_bytes: 4096,
        ..Limits::default()
    };
    let err = refused_with("a.tar", &limits, "size limit of 4096", |_| {
        RawTar::new().lying("huge", 1 << 40, &[0u8; 512]).finish()
    });
    assert!(matches!(err, ExtractError::TooLarge { .. }), "{err:?}");
}

#[test]
fn tar_huge_extension_headers_refused() {
    let big = vec![b'a'; 2 << 20];
    for kind in [EntryType::XHeader, EntryType::GNULongName, EntryType::GNULongLink] {
        let tar = RawTar::new()
            .entry("././@Ext", kind, 0o644, "", &big)
            .file("f", 0o644, b"x");
        refused("a.tar.gz", gzip(&tar.finish()), "exceed 1 MiB");
    }
}

#[test]
fn truncated_and_garbage_archives_refused() {
    let tar = RawTar::new().file("data", 0o644, &noise(200_000, 1)).finish();
    let gz = gzip(&tar);
    refused(
        "a.tar.gz",
        gz[..gz.len() / 2].to_vec(),
        "corrupt or truncated tar.gz",
    );
    refused(
        "a.tar.gz",
        gz[..gz.len() - 4].to_vec(),
        "corrupt or truncated tar.gz",
    );
    refused("a.tar.gz", noise(10_000, 2), "corrupt or truncated tar.gz");
    refused("a.tar.xz", noise(10_000, 3), "corrupt or truncated tar.xz");
    refused("a.tar.bz2", noise(10_000, 4), "corrupt or truncated tar.bz2");
    refused("a.tar.zst", noise(10_000, 5), "corrupt or truncated tar.zst");
    refused("a.zip", noise(10_000, 6), "corrupt or truncated zip");
    let z = zip(&[Z::File("data", 0o644, &noise(100_000, 7))]);
    refused("a.zip", z[..z.len() / 2].to_vec(), "corrupt or truncated zip");
}

#[test]
fn expansion_over_limit_refused() {
    let limits = Limits {
        max_total_bytes: 1 << 20,
        ..Limits::default()
    };
    let zeros = vec![0u8; 8 << 20];
    let tar = RawTar::new()
        .file("a", 0o644, &zeros[..600_000])
        .file("b", 0o644, &zeros[..600_000]);
    let s = Scratch::new();
    let err = run(&s, "bomb.tgz", &gzip(&tar.finish()), &limits).expect_err("over limit");
    assert!(
        matches!(err, ExtractError::TooLarge { ref entry, .. } if entry == "b"),
        "{err:?}"
    );
    let z = zip(&[Z::File("bomb", 0o644, &zeros)]);
    assert!(z.len() < 64 << 10);
    let err = refused_with("bomb.zip", &limits, "size limit", |_| z);
    assert!(matches!(err, ExtractError::TooLarge { .. }), "{err:?}");
}

#[test]
fn zip_lying_size_cannot_pass_limit() {
    let limits = Limits {
        max_total_bytes: 1 << 20,
        ..Limits::default()
    };
    let z = zip_patch_size(zip(&[Z::File("liar", 0o644, &vec![1u8; 4 << 20])]), 100);
    let s = Scratch::new();
    let result = run(&s, "liar.zip", &z, &limits);
    assert!(result.is_err(), "lying zip accepted: {result:?}");
    eprintln!(
        "liar.zip: {}",
        result.err().map(|e| e.to_string()).unwrap_or_default()
    );
    let written = fs::metadata(s.dest.join("liar")).map(|m| m.len()).unwrap_or(0);
    assert!(written <= 1 << 20, "{written} bytes written");
    s.assert_nothing_outside();
}

#[test]
fn too_many_entries_refused() {
    let mut tar = RawTar::new();
    for i in 0..20 {
        tar = tar.file(&format!("f{i}"), 0o644, b"x");
    }
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let err = refused_with("many.tar", &limits, "more than 10 entries", |_| tar.finish());
    assert!(matches!(err, ExtractError::TooManyEntries { limit: 10 }));
}

#[test]
fn writing_through_symlinks_refused() {
    // An earlier symlink to the release root, then `..` through it.
    let tar = RawTar::new()
        .symlink("a", ".")
        .file("a/../../sentinel/x", 0o644, b"evil");
    refused("a.tar", tar.finish(), "`..` component");
    // An absolute symlink, then a file below it.
    let err = refused_with("a.tar.gz", &Limits::default(), "is absolute", |s| {
        let t = s.sentinel.to_string_lossy().into_owned();
        gzip(
            &RawTar::new()
                .symlink("d", &t)
                .file("d/file", 0o644, b"evil")
                .finish(),
        )
    });
    assert!(matches!(err, ExtractError::UnsafeSymlink { .. }));
    // Even an internal symlink is never followed when creating entries.
    for second in ["d/file", "d/sub/file", "d/"] {
        let tar = RawTar::new()
            .file("keep", 0o644, b"a release holds a file")
            .dir("real/", 0o755)
            .symlink("d", "real");
        let tar = if second.ends_with('/') {
            tar.dir(second, 0o755)
        } else {
            tar.file(second, 0o644, b"x")
        };
        let s = Scratch::new();
        let res = run(&s, "a.tar", &tar.finish(), &Limits::default());
        if second == "d/" {
            // A directory entry replaces the symlink itself; nothing goes through it.
            res.expect("dir replaces symlink");
            assert!(fs::symlink_metadata(s.dest.join("d")).expect("d").is_dir());
        } else {
            let err = res.expect_err(second);
            assert!(
                matches!(err, ExtractError::ThroughSymlink { ref via, .. } if via == "d"),
                "{err:?}"
            );
        }
        assert!(fs::read_dir(s.dest.join("real")).expect("real").next().is_none());
        s.assert_nothing_outside();
    }
    // A directory is never replaced by a symlink.
    let tar = RawTar::new().dir("d/", 0o755).symlink("d", ".");
    refused("a.tar", tar.finish(), "created a directory");
}

#[test]
fn zip_escapes_refused() {
    let z = zip(&[Z::File("../sentinel/pwned", 0o644, b"evil")]);
    refused("a.zip", z, "`..` component");
    let err = refused_with("a.zip", &Limits::default(), "absolute path", |s| {
        let abs = s.sentinel.join("abs").to_string_lossy().into_owned();
        zip(&[Z::File(&abs, 0o644, b"evil")])
    });
    assert!(matches!(err, ExtractError::UnsafePath { .. }));
    refused(
        "a.zip",
        zip(&[Z::Symlink("up", "../sentinel")]),
        "escapes the release directory",
    );
    refused("a.zip", zip(&[Z::Symlink("abs", "/etc")]), "is absolute");
    let z = zip(&[
        Z::Dir("real/"),
        Z::Symlink("d", "real"),
        Z::File("d/x", 0o644, b"x"),
    ]);
    let err = refused("a.zip", z, "goes through symlink");
    assert!(matches!(err, ExtractError::ThroughSymlink { .. }));
}

#[test]
fn zip_special_files_refused() {
    for (mode, what) in [
        (0o010644, "FIFO"),
        (0o020644, "character device"),
        (0o140755, "socket"),
    ] {
        let z = zip_patch_mode(zip(&[Z::File("node", 0o644, b"")]), "node", mode);
        let err = refused("a.zip", z, what);
        assert!(matches!(err, ExtractError::SpecialFile { .. }), "{err:?}");
    }
}

const APP: &[u8] = b"#!/bin/sh\necho app\n";
const CONF: &[u8] = b"port = 8080\n";

/// The release every positive case builds: executable, private config, set-id file and
/// directory, an internal relative symlink.
fn check_release(dest: &Path, stats: &ExtractStats, with_hardlink: bool) {
    assert_eq!(fs::read(dest.join("bin/app")).expect("app"), APP);
    assert_eq!(mode_of(&dest.join("bin/app")), 0o755);
    assert_eq!(fs::read(dest.join("etc/app.conf")).expect("conf"), CONF);
    assert_eq!(mode_of(&dest.join("etc/app.conf")), 0o640);
    assert_eq!(mode_of(&dest.join("bin/suid")), 0o755, "setuid stripped");
    assert_eq!(mode_of(&dest.join("shared")), 0o775, "setgid stripped from dir");
    assert_eq!(
        fs::read(dest.join("shared/big.bin")).expect("big"),
        noise(300_000, 9)
    );
    let link = dest.join("lib/app-link");
    assert_eq!(fs::read_link(&link).expect("link"), Path::new("../bin/app"));
    assert_eq!(fs::read(&link).expect("through link"), APP);
    if with_hardlink {
        assert_eq!(fs::read(dest.join("bin/app-hard")).expect("hard"), APP);
    }
    assert_eq!(stats.bytes, (APP.len() + CONF.len() + 2 + 300_000) as u64);
    assert!(stats.dirs >= 2, "{stats:?}");
}

fn good_tar() -> Vec<u8> {
    RawTar::new()
        .dir("./", 0o755)
        .dir("bin/", 0o755)
        .file("bin/app", 0o755, APP)
        .file("bin/suid", 0o4755, b"s\n")
        .hardlink("bin/app-hard", "bin/app")
        .dir("etc/", 0o750)
        .file("etc/app.conf", 0o640, CONF)
        .dir("shared/", 0o2775)
        .file("shared/big.bin", 0o644, &noise(300_000, 9))
        .symlink("lib/app-link", "../bin/app")
        .finish()
}

#[test]
fn every_tar_format_extracts() {
    let tar = good_tar();
    for (name, bytes) in [
        ("app.tar.gz", gzip(&tar)),
        ("app.tgz", gzip(&tar)),
        ("APP.TAR.GZ", gzip(&tar)),
        ("app.tar.bz2", bzip2(&tar)),
        ("app.tbz2", bzip2(&tar)),
        ("app.tar.xz", xz(&tar)),
        ("app.txz", xz(&tar)),
        ("app.tar.zst", zstd(&tar)),
        ("app.tzst", zstd(&tar)),
        ("app.tar", tar.clone()),
    ] {
        let s = Scratch::new();
        let stats = run(&s, name, &bytes, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_release(&s.dest, &stats, true);
        assert_eq!(stats.files, 6, "{name}: {stats:?}");
        s.assert_nothing_outside();
    }
}

#[test]
fn zip_extracts() {
    let big = noise(300_000, 9);
    let z = zip(&[
        Z::Dir("bin/"),
        Z::File("bin/app", 0o755, APP),
        Z::File("bin/suid", 0o755, b"s\n"),
        Z::File("etc/app.conf", 0o640, CONF),
        Z::Dir("shared/"),
        Z::File("shared/big.bin", 0o644, &big),
        Z::Symlink("lib/app-link", "../bin/app"),
    ]);
    let z = zip_patch_mode(z, "bin/suid", 0o104755);
    let z = zip_patch_mode(z, "shared/", 0o042775);
    let s = Scratch::new();
    let stats = run(&s, "app.zip", &z, &Limits::default()).expect("zip");
    check_release(&s.dest, &stats, false);
    s.assert_nothing_outside();
}

#[test]
fn plain_binary_is_copied_executable() {
    let s = Scratch::new();
    let stats = run(&s, "dewy_linux_amd64", b"\x7fELF binary", &Limits::default()).expect("plain");
    let out = s.dest.join("dewy_linux_amd64");
    assert_eq!(fs::read(&out).expect("read"), b"\x7fELF binary");
    assert_eq!(mode_of(&out), 0o755);
    assert_eq!((stats.files, stats.bytes), (1, 11));
    let limits = Limits {
        max_total_bytes: 4,
        ..Limits::default()
    };
    let s = Scratch::new();
    let err = run(&s, "tool", b"too long", &limits).expect_err("over limit");
    assert!(matches!(err, ExtractError::TooLarge { .. }));
    let s = Scratch::new();
    let err = run(&s, "../sentinel/x", b"x", &Limits::default()).expect_err("bad name");
    assert!(matches!(err, ExtractError::InvalidName { .. }));
    s.assert_nothing_outside();
}

#[test]
fn long_names_extract() {
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"long"[..]).expect("append");
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "short-link", &long).expect("link");
    let tar = b.into_inner().expect("tar");
    let s = Scratch::new();
    run(&s, "long.tar.xz", &xz(&tar), &Limits::default()).expect("long names");
    assert_eq!(fs::read(s.dest.join(&long)).expect("read"), b"long");
    assert_eq!(fs::read(s.dest.join("short-link")).expect("via link"), b"long");
    s.assert_nothing_outside();
}

#[test]
fn metadata_and_edge_cases() {
    let tar = RawTar::new()
        .dir("ro/", 0o555)
        .file("ro/inside", 0o444, b"read only")
        .dir("sticky/", 0o1777)
        .file("dup", 0o644, b"first")
        .file("dup", 0o600, b"second")
        .symlink("x", ".")
        .symlink("sub/y", "../x/..")
        .finish();
    let s = Scratch::new();
    run(&s, "edge.tar.gz", &gzip(&tar), &Limits::default()).expect("edge cases");
    assert_eq!(mode_of(&s.dest.join("ro")), 0o555);
    assert_eq!(mode_of(&s.dest.join("ro/inside")), 0o444);
    assert_eq!(mode_of(&s.dest.join("sticky")), 0o777, "sticky bit stripped");
    assert_eq!(fs::read(s.dest.join("dup")).expect("dup"), b"second");
    assert_eq!(mode_of(&s.dest.join("dup")), 0o600);
    let mtime = fs::metadata(s.dest.join("ro/inside"))
        .expect("stat")
        .modified()
        .expect("mtime");
    let secs = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .expect("epoch")
        .as_secs();
    assert_eq!(secs, 1_600_000_000);
    // `../x/..` is rewritten to `..`; it resolves to the release root, not beyond.
    let y = fs::canonicalize(s.dest.join("sub/y")).expect("resolve");
    assert_eq!(y, fs::canonicalize(&s.dest).expect("dest"));
    s.assert_nothing_outside();
    let mut perms = fs::metadata(s.dest.join("ro")).expect("ro").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(s.dest.join("ro"), perms).expect("chmod for cleanup");
}

/// A zip with `n` one-byte files.
fn zip_of(n: usize) -> Vec<u8> {
    let names: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    let entries: Vec<Z<'_>> = names.iter().map(|n| Z::File(n, 0o644, b"x")).collect();
    zip(&entries)
}

/// Sets the entry counts of the (non-zip64) end-of-central-directory record.
fn zip_patch_count(mut bytes: Vec<u8>, count: u16) -> Vec<u8> {
    let at = bytes
        .windows(4)
        .rposition(|w| w == [0x50, 0x4b, 0x05, 0x06])
        .expect("end record");
    bytes[at + 8..at + 10].copy_from_slice(&count.to_le_bytes());
    bytes[at + 10..at + 12].copy_from_slice(&count.to_le_bytes());
    bytes
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = fs::read_dir(dir)
        .expect("dest")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "entries extracted before the refusal: {left:?}");
}

#[test]
fn zip_entry_count_is_checked_from_the_end_record() {
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    // Refused from the declared count alone: not a single entry is written.
    let s = Scratch::new();
    let err = run(&s, "many.zip", &zip_of(50), &limits).expect_err("over the entry limit");
    assert!(
        matches!(
            err,
            ExtractError::TooManyDeclared {
                declared: 50,
                limit: 10
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("declares 50 entries"), "{err}");
    assert_empty(&s.dest);
    // A count that the directory's size cannot hold is refused before parsing too.
    let s = Scratch::new();
    let err = run(
        &s,
        "dense.zip",
        &zip_patch_count(zip_of(3), 60_000),
        &Limits::default(),
    )
    .expect_err("impossible count");
    assert!(
        err.to_string().contains("declares 60000 entries in only"),
        "{err}"
    );
    assert_empty(&s.dest);
    // Fewer declared than present: only the declared ones are read.
    let s = Scratch::new();
    let stats = run(
        &s,
        "fewer.zip",
        &zip_patch_count(zip_of(3), 2),
        &Limits::default(),
    )
    .expect("two of three");
    assert_eq!(stats.files, 2);
}

#[test]
fn zip64_end_record_is_read_and_checked() {
    // More than 65535 entries need the zip64 end record.
    let z = zip_of(70_000);
    let at = z.len() - 22;
    assert_eq!(z[at + 10..at + 12], [0xff, 0xff], "plain end record saturated");
    let limits = Limits {
        max_entries: 69_999,
        ..Limits::default()
    };
    let s = Scratch::new();
    let err = run(&s, "big.zip", &z, &limits).expect_err("over the entry limit");
    assert!(
        matches!(err, ExtractError::TooManyDeclared { declared: 70_000, .. }),
        "{err:?}"
    );
    assert_empty(&s.dest);
}

#[test]
fn zip_data_descriptors_and_prefixed_archives_extract() {
    if !support_have("zip") {
        eprintln!("skipping: zip(1) not installed");
        return;
    }
    let s = Scratch::new();
    let src = s.tmp.path().join("archive-src");
    fs::create_dir_all(src.join("bin")).expect("mkdir");
    fs::write(src.join("bin/app"), APP).expect("write");
    // zip writing to a pipe cannot seek back: sizes and CRCs follow the data.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("zip -qr - bin | cat")
        .current_dir(&src)
        .output()
        .expect("zip");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run(&s, "stream.zip", &out.stdout, &Limits::default()).expect("data descriptors");
    assert_eq!(fs::read(s.dest.join("bin/app")).expect("app"), APP);
    // A self-extracting stub before the archive shifts every offset.
    let mut prefixed = b"#!/bin/sh\nexit 0\n".to_vec();
    prefixed.extend(zip(&[Z::File("bin/app", 0o755, APP)]));
    let s = Scratch::new();
    run(&s, "sfx.zip", &prefixed, &Limits::default()).expect("prefixed");
    assert_eq!(fs::read(s.dest.join("bin/app")).expect("app"), APP);
    assert_eq!(mode_of(&s.dest.join("bin/app")), 0o755);
}

#[test]
fn zip_corrupt_data_refused() {
    let data = noise(50_000, 11);
    let z = zip(&[Z::File("data", 0o644, &data)]);
    // Flip a byte in the middle of the compressed data: CRC or inflate fails.
    let mut bad = z.clone();
    bad[30 + 4 + 20_000] ^= 0x55;
    let err = refused("a.zip", bad, "corrupt or truncated zip");
    eprintln!("{err}");
    // A central record pointing past the end of the file.
    let mut bad = z;
    let cd = bad
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .expect("central record");
    bad[cd + 42..cd + 46].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    refused("a.zip", bad, "beyond the end");
}

#[test]
fn empty_releases_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.tar", RawTar::new().finish()),
        ("empty.tar.gz", gzip(&RawTar::new().finish())),
        ("zero-bytes.tar", Vec::new()),
        (
            "dirs.tar",
            RawTar::new().dir("a/", 0o755).dir("a/b/", 0o755).finish(),
        ),
        ("dot.tar.xz", xz(&RawTar::new().dir("./", 0o755).finish())),
        (
            "links.tar",
            RawTar::new().dir("d/", 0o755).symlink("l", "d").finish(),
        ),
        ("empty.zip", zip(&[])),
        ("dirs.zip", zip(&[Z::Dir("a/"), Z::Dir("a/b/")])),
    ];
    for (name, bytes) in cases {
        let s = Scratch::new();
        let err = run(&s, name, &bytes, &Limits::default()).expect_err(name);
        eprintln!("{name}: {err}");
        assert!(matches!(err, ExtractError::Empty { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains("holds no regular file"), "{name}: {err}");
    }
    // One empty file is a release.
    let s = Scratch::new();
    run(
        &s,
        "one.tar",
        &RawTar::new().file("EMPTY", 0o644, b"").finish(),
        &Limits::default(),
    )
    .expect("one file");
}

#[test]
fn gzip_followed_by_zero_padding_is_accepted() {
    let tar = RawTar::new().file("VERSION", 0o644, b"v1\n").finish();
    let mut gz = gzip(&tar);
    if support_have("tar") && support_have("gzip") {
        // What GNU tar writes, padded as block-oriented tools do.
        let s = Scratch::new();
        let src = s.tmp.path().join("archive-src");
        fs::create_dir_all(&src).expect("mkdir");
        fs::write(src.join("VERSION"), b"v1\n").expect("write");
        let out = std::process::Command::new("tar")
            .args(["czf", "-", "VERSION"])
            .current_dir(&src)
            .output()
            .expect("tar czf");
        assert!(out.status.success());
        gz = out.stdout;
    }
    let mut padded = gz.clone();
    padded.resize(gz.len() + 10_240, 0);
    let s = Scratch::new();
    run(&s, "padded.tar.gz", &padded, &Limits::default()).expect("zero padding accepted");
    assert_eq!(fs::read(s.dest.join("VERSION")).expect("VERSION"), b"v1\n");
    // Two members are one stream, as for gzip(1).
    let mut two = gzip(&tar[..512 + 512]);
    two.extend(gzip(&tar[1024..]));
    let s = Scratch::new();
    run(&s, "two.tar.gz", &two, &Limits::default()).expect("two members");
    // Anything but zeros after the stream is still refused.
    let mut junk = padded;
    junk.extend_from_slice(b"junk");
    refused("junk.tar.gz", junk, "padding after the gzip stream");
}

fn support_have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
