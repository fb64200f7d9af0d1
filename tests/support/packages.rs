//! What the package tests install: the .deb of this build (made when missing or stale) and
//! releases of the example app `hello_server`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::tar_gz;

/// A cargo (or make) command without the `CARGO_*` variables cargo gives a test: build scripts
/// watch some of them (ring: `CARGO_PKG_NAME`…), and a build with other values rebuilds them.
pub fn build_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_str()
            .is_some_and(|k| k.starts_with("CARGO_") && k != "CARGO_HOME")
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The example app `hello_server`, built by cargo for this test.
pub fn hello_server() -> Vec<u8> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = build_command(env!("CARGO"))
        .args(["build", "-q", "--example", "hello_server", "--manifest-path"])
        .arg(manifest.join("Cargo.toml"))
        .status()
        .expect("running cargo");
    assert!(status.success(), "building examples/hello_server failed");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_dewy"));
    std::fs::read(exe.parent().unwrap().join("examples/hello_server")).expect("reading hello_server")
}

pub fn release(app: &[u8], version: &str) -> Vec<u8> {
    tar_gz(&[
        ("hello_server", 0o755, app),
        ("VERSION", 0o644, version.as_bytes()),
    ])
}

/// The .deb of this build: `target/packages/dewy_*.deb` when it is newer than the binaries and the
/// packaged files, else made now by `make deb PROFILE=dev`.
pub fn deb() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dist = root.join("target/packages");
    let find = || {
        std::fs::read_dir(&dist)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dewy_") && n.ends_with(".deb"))
            })
    };
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // The one binary the .deb ships (the daemons' names are symlinks to it).
    let mut inputs: Vec<PathBuf> = vec![PathBuf::from(env!("CARGO_BIN_EXE_dewy"))];
    inputs.push(root.join("Cargo.toml"));
    for dir in [
        "units",
        "debian",
        "packaging",
        "packaging/dbus-1/system.d",
        "packaging/dewy",
    ] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            inputs.extend(
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_file()),
            );
        }
    }
    let newest = inputs.iter().filter_map(|p| mtime(p)).max();
    if let Some(deb) = find() {
        if mtime(&deb) >= newest {
            return deb;
        }
    }
    let start = Instant::now();
    let out = build_command("make")
        .args(["-C"])
        .arg(root)
        .args(["deb", "PROFILE=dev"])
        .output()
        .expect("running make");
    assert!(
        out.status.success(),
        "`make deb PROFILE=dev` failed (needs cargo-deb: .ci/run installs it):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("built the .deb in {:?}", start.elapsed());
    find().expect("make deb made no target/packages/dewy_*.deb")
}
