//! The artifact cache: verified atomic stores, and no trace of failed or interrupted downloads.

use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use sha2::{Digest, Sha256};

use dewy::cache::{self, Cache, StoreError, StoreOptions};
use dewy::registry::ByteStream;

const KEY: &str = "v1.0.0--app_linux_amd64.tar.gz";

fn chunks(parts: Vec<io::Result<&'static [u8]>>) -> ByteStream {
    let items: Vec<io::Result<Bytes>> = parts.into_iter().map(|p| p.map(Bytes::from_static)).collect();
    Box::pin(stream::iter(items))
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// File names in the cache directory.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `len` deterministic bytes in 64 KiB chunks, produced lazily.
fn generated(len: u64) -> impl Iterator<Item = Bytes> {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(64 * 1024) as usize;
        left -= n as u64;
        let mut buf = vec![0u8; n];
        for b in buf.iter_mut() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (state >> 56) as u8;
        }
        Some(Bytes::from(buf))
    })
}

#[tokio::test]
async fn store_with_correct_checksum() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = Cache::open(&tmp.path().join("a/b")).expect("open");
    let opts = StoreOptions {
        expected_sha256: Some(sha(b"hello world").to_uppercase()),
        max_bytes: Some(1024),
    };
    let stored = cache
        .store(KEY, chunks(vec![Ok(b"hello "), Ok(b"world")]), &opts)
        .await
        .expect("store");
    assert_eq!(stored.size, 11);
    assert_eq!(stored.sha256, sha(b"hello world"));
    assert_eq!(stored.path, cache.path(KEY));
    assert_eq!(std::fs::read(&stored.path).expect("read"), b"hello world");
    assert_eq!(cache::sha256_file(&stored.path).expect("hash"), stored.sha256);
    assert!(cache.contains(KEY));
    assert_eq!(entries(cache.dir()), vec![KEY.to_string()]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&stored.path)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & 0o600, 0o600, "{mode:o}");
}

#[tokio::test]
async fn checksum_mismatch_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = Cache::open(tmp.path()).expect("open");
    let opts = StoreOptions {
        expected_sha256: Some("00".repeat(32)),
        max_bytes: None,
    };
    let err = cache
        .store(KEY, chunks(vec![Ok(b"tampered")]), &opts)
        .await
        .expect_err("mismatch");
    match err {
        StoreError::ChecksumMismatch { expected, actual } => {
            assert_eq!(expected, "00".repeat(32));
            assert_eq!(actual, sha(b"tampered"));
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert!(!cache.contains(KEY));
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

#[tokio::test]
async fn failed_redownload_keeps_previous_entry() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = Cache::open(tmp.path()).expect("open");
    cache
        .store(KEY, chunks(vec![Ok(b"good")]), &StoreOptions::default())
        .await
        .expect("store");
    let opts = StoreOptions {
        expected_sha256: Some(sha(b"other")),
        max_bytes: None,
    };
    assert!(cache.store(KEY, chunks(vec![Ok(b"bad")]), &opts).await.is_err());
    assert_eq!(std::fs::read(cache.path(KEY)).expect("read"), b"good");
    assert_eq!(entries(tmp.path()), vec![KEY.to_string()]);
}

#[tokio::test]
async fn max_bytes_exceeded_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = Cache::open(tmp.path()).expect("open");
    let opts = StoreOptions {
        expected_sha256: None,
        max_bytes: Some(10),
    };
    let err = cache
        .store(KEY, chunks(vec![Ok(b"123456"), Ok(b"789012"), Ok(b"345")]), &opts)
        .await
        .expect_err("too large");
    assert!(matches!(err, StoreError::TooLarge { limit: 10 }), "{err}");
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

#[tokio::test]
async fn stream_error_midway_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = Cache::open(tmp.path()).expect("open");
    let reset = io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer");
    let err = cache
        .store(
            KEY,
            chunks(vec![Ok(b"partial"), Err(reset), Ok(b"never")]),
            &StoreOptions::default(),
        )
        .await
        .expect_err("interrupted");
    match &err {
        StoreError::Download { received, .. } => assert_eq!(*received, 7),
        other => panic!("expected Download, got {other}"),
    }
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

#[tokio::test]
async fn dropped_download_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = Cache::open(tmp.path()).expect("open");
    let first = stream::iter(vec![Ok(Bytes::from_static(b"some bytes"))]);
    let stalled: ByteStream = Box::pin(futures_util::StreamExt::chain(first, stream::pending()));
    let opts = StoreOptions::default();
    let store = cache.store(KEY, stalled, &opts);
    let res = tokio::time::timeout(Duration::from_millis(200), store).await;
    assert!(res.is_err(), "the store should still be waiting");
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

#[tokio::test]
async fn invalid_keys_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = Cache::open(tmp.path()).expect("open");
    for key in ["../escape", ".hidden", "a/b", ""] {
        let err = cache
            .store(key, chunks(vec![Ok(b"x")]), &StoreOptions::default())
            .await
            .expect_err("invalid key");
        assert!(matches!(err, StoreError::InvalidKey(_)), "{key}: {err}");
        assert!(!cache.contains(key));
    }
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn open_cleans_stale_part_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let own = format!(".{KEY}.{}-00000000000000aa.part", std::process::id());
    for name in [
        ".old.part",
        ".v1--a.tar.gz.4294967-abcdef.part",
        own.as_str(),
        KEY,
    ] {
        std::fs::write(dir.join(name), b"x").expect("write");
    }
    let cache = Cache::open(dir).expect("open");
    // A running writer's recent temp file stays; crash leftovers go.
    assert_eq!(entries(cache.dir()), vec![own.clone(), KEY.to_string()]);
    let file = std::fs::File::options()
        .write(true)
        .open(dir.join(&own))
        .expect("open part");
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(2 * 3600))
        .expect("mtime");
    Cache::open(dir).expect("reopen");
    assert_eq!(entries(dir), vec![KEY.to_string()]);
}

#[tokio::test]
async fn large_stream_is_stored_and_verified() {
    const LEN: u64 = 50 * 1024 * 1024;
    let mut hasher = Sha256::new();
    for chunk in generated(LEN) {
        hasher.update(&chunk);
    }
    let expected = hex::encode(hasher.finalize());
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = Cache::open(tmp.path()).expect("open");
    let body: ByteStream = Box::pin(stream::iter(generated(LEN).map(Ok)));
    let opts = StoreOptions {
        expected_sha256: Some(expected.clone()),
        max_bytes: Some(LEN),
    };
    let stored = cache.store(KEY, body, &opts).await.expect("store");
    assert_eq!(stored.size, LEN);
    assert_eq!(stored.sha256, expected);
    assert_eq!(std::fs::metadata(&stored.path).expect("meta").len(), LEN);
    assert_eq!(entries(tmp.path()), vec![KEY.to_string()]);
}
