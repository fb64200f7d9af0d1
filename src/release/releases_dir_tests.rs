//! Unit tests of the releases directory layout and the `current` switch.

use super::*;
use chrono::TimeZone;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("valid time")
}

fn commit(r: &Releases, secs: i64) -> PathBuf {
    let s = r.create_staging().expect("staging");
    fs::write(s.join("marker"), secs.to_string()).expect("write");
    r.commit_staging(&s, at(secs)).expect("commit")
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn unique_names_in_same_second() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    let dirs: Vec<_> = (0..12).map(|_| commit(&r, 0)).collect();
    assert_eq!(name(&dirs[0]), "20231114T221320Z");
    assert_eq!(name(&dirs[1]), "20231114T221320Z-1");
    assert_eq!(name(&dirs[11]), "20231114T221320Z-11");
    for d in &dirs {
        assert!(d.join("marker").is_file(), "{} was merged", d.display());
    }
    assert_eq!(r.list().expect("list"), dirs, "sorted by timestamp then suffix");
}

#[test]
fn staging_is_hidden_and_cleaned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    let s1 = r.create_staging().expect("staging");
    let s2 = r.create_staging().expect("staging");
    assert_ne!(s1, s2);
    assert!(name(&s1).starts_with(".staging-"));
    fs::write(s1.join("f"), b"x").expect("write");
    let kept = commit(&r, 5);
    assert_eq!(r.list().expect("list"), vec![kept.clone()]);
    assert_eq!(r.clean_staging().expect("clean"), 2);
    assert!(!s1.exists() && !s2.exists() && kept.exists());
    assert_eq!(r.clean_staging().expect("clean"), 0);
}

#[test]
fn switch_and_current() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    assert_eq!(r.current().expect("current"), None);
    let a = commit(&r, 1);
    let b = commit(&r, 2);
    r.switch_current(&a).expect("switch");
    assert_eq!(r.current().expect("current"), Some(a.clone()));
    let target = fs::read_link(r.current_link()).expect("readlink");
    assert!(target.is_relative(), "{}", target.display());
    r.switch_current(&b).expect("switch");
    assert_eq!(r.current().expect("current"), Some(b.clone()));
    assert!(r.switch_current(tmp.path()).is_err(), "not under releases/");
    fs::remove_dir_all(&b).expect("rm");
    assert!(r.current().is_err(), "dangling link is an error");
}

#[test]
fn switch_refuses_real_current_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    let a = commit(&r, 1);
    fs::create_dir(r.current_link()).expect("mkdir");
    fs::write(r.current_link().join("keep"), b"x").expect("write");
    let err = r.switch_current(&a).expect_err("must refuse");
    assert!(err.to_string().contains("not a symlink"), "{err}");
    assert!(r.current_link().join("keep").exists());
}

#[test]
fn switch_never_leaves_current_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    let a = commit(&r, 1);
    let b = commit(&r, 2);
    r.switch_current(&a).expect("switch");
    let stop = Arc::new(AtomicBool::new(false));
    let link = r.current_link();
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                fs::read_link(&link).expect("link present");
                fs::metadata(&link).expect("link resolves");
                reads += 1;
            }
            reads
        })
    };
    for i in 0..300 {
        r.switch_current(if i % 2 == 0 { &b } else { &a })
            .expect("switch");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("reader") > 0);
    let leftovers = fs::read_dir(tmp.path())
        .expect("readdir")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_name().to_string_lossy().starts_with(".current.tmp"))
                .unwrap_or(false)
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn prune_protects_current_and_previous() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    let dirs: Vec<_> = (0..6).map(|i| commit(&r, i)).collect();
    r.switch_current(&dirs[0]).expect("switch");
    let removed = r.prune(2, &[dirs[1].clone()]).expect("prune");
    assert_eq!(removed, vec![dirs[2].clone(), dirs[3].clone()]);
    assert_eq!(
        r.list().expect("list"),
        vec![dirs[0].clone(), dirs[1].clone(), dirs[4].clone(), dirs[5].clone()]
    );
    let removed = r.prune(0, &[]).expect("prune keep=0");
    assert_eq!(removed, vec![dirs[1].clone(), dirs[4].clone()]);
    assert_eq!(r.list().expect("list"), vec![dirs[0].clone(), dirs[5].clone()]);
}

#[test]
fn remove_release_checks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    let a = commit(&r, 1);
    let b = commit(&r, 2);
    r.switch_current(&a).expect("switch");
    assert!(r.remove_release(&a).is_err(), "current is protected");
    assert!(r.remove_release(tmp.path()).is_err(), "outside releases/");
    assert!(r.remove_release(&r.releases_dir().join("..")).is_err());
    let s = r.create_staging().expect("staging");
    assert!(r.remove_release(&s).is_err(), "staging is not a release");
    r.remove_release(&b).expect("remove");
    assert!(!b.exists() && a.exists());
}
