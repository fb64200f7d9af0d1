//! The shared cache against a real S3-compatible server (`s3s-fs`) and the GCS emulator: a fleet
//! downloads each artifact from the origin once, `registry-ttl` keeps origin registry requests at
//! one per window (concurrent hosts included), a dead lock holder is taken over, and a failing
//! origin is answered from the last shared result.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use dewy::cache::shared::registry::SharedRegistry;
use dewy::cache::shared::{open_store, parse_url};
use dewy::registry::{self, ByteStream, CheckError, OpenOptions, Registry, Release};
use support::gcs::GcsEmulator;
use support::s3::{S3Server, ACCESS_KEY, REGION, SECRET_KEY};

fn credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

/// The origin: a `file://` registry that counts what it is asked, and can fail or hang.
struct Origin {
    inner: Arc<dyn Registry>,
    latest_calls: AtomicUsize,
    fetch_calls: AtomicUsize,
    fail: AtomicBool,
    hang: AtomicBool,
}

impl Origin {
    fn new(dir: &Path) -> Arc<Origin> {
        let url = format!("file://{}?artifact=app.tar.gz", dir.display());
        Arc::new(Origin {
            inner: registry::open(&url, &OpenOptions::default()).expect("origin"),
            latest_calls: AtomicUsize::new(0),
            fetch_calls: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            hang: AtomicBool::new(false),
        })
    }
}

#[async_trait::async_trait]
impl Registry for Origin {
    async fn latest(&self) -> Result<Release, CheckError> {
        self.latest_calls.fetch_add(1, Ordering::SeqCst);
        // Hang while asked to (a lock holder stuck in its refresh), then answer.
        while self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(CheckError::Other(anyhow::anyhow!("origin down")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.inner.latest().await
    }
    async fn find(&self, version: &str) -> Result<Release, CheckError> {
        self.inner.find(version).await
    }
    async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
        self.fetch_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(url).await
    }
}

struct Fleet {
    s3: S3Server,
    _tmp: tempfile::TempDir,
    releases: std::path::PathBuf,
    origin: Arc<Origin>,
}

fn fleet() -> Fleet {
    credentials();
    let s3 = S3Server::start(&["fleet"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let releases = tmp.path().join("releases");
    std::fs::create_dir_all(&releases).expect("dir");
    let origin = Origin::new(&releases);
    Fleet {
        s3,
        _tmp: tmp,
        releases,
        origin,
    }
}

impl Fleet {
    fn publish(&self, version: &str) {
        let dir = self.releases.join(version);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("app.tar.gz"), format!("artifact {version}")).expect("write");
    }

    fn host(&self, n: usize, ttl: &str) -> SharedRegistry {
        let query = if ttl.is_empty() {
            String::new()
        } else {
            format!("&registry-ttl={ttl}")
        };
        let url = format!("s3://{REGION}/fleet/cache?endpoint={}{query}", self.s3.endpoint());
        let spec = parse_url(&url).expect("cache url");
        let ttl = spec.registry_ttl;
        SharedRegistry::new(
            self.origin.clone(),
            open_store(spec, "dewy-test").expect("store"),
            "file:///releases",
            None,
            ttl,
            format!("host-{n}:1"),
        )
    }
}

async fn deploy(host: &SharedRegistry) -> (String, Vec<u8>) {
    let rel = host.latest().await.expect("latest");
    let mut stream = host.fetch(&rel.artifact_url).await.expect("fetch");
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.expect("chunk"));
    }
    (rel.version, body)
}

#[tokio::test]
async fn fleet_downloads_each_release_once_and_asks_the_origin_once_per_window() {
    const HOSTS: usize = 10;
    const RELEASES: usize = 3;
    for (ttl, label) in [("", "shared artifacts only"), ("30s", "registry-ttl=30s")] {
        let f = fleet();
        let hosts: Vec<SharedRegistry> = (0..HOSTS).map(|n| f.host(n, ttl)).collect();
        for r in 0..RELEASES {
            let version = format!("v1.{r}.0");
            f.publish(&version);
            // A new window per release: the TTL answer of the previous one must not hide it.
            if !ttl.is_empty() {
                let entry = format!("cache/{}", hosts[0].entry_key());
                let _ = std::fs::remove_file(f.s3.data_dir().join("fleet").join(entry));
            }
            for host in &hosts {
                let (got, body) = deploy(host).await;
                assert_eq!(got, version);
                assert_eq!(body, format!("artifact {version}").as_bytes());
            }
        }
        let downloads = f.origin.fetch_calls.load(Ordering::SeqCst);
        let requests = f.origin.latest_calls.load(Ordering::SeqCst);
        println!(
            "{HOSTS} hosts x {RELEASES} releases ({label}): origin downloads {downloads} (without the cache {}), origin registry requests {requests} (without {})",
            HOSTS * RELEASES,
            HOSTS * RELEASES
        );
        assert_eq!(downloads, RELEASES, "{label}");
        if ttl.is_empty() {
            assert_eq!(requests, HOSTS * RELEASES);
        } else {
            assert_eq!(requests, RELEASES, "one origin request per window");
        }
    }
}

#[tokio::test]
async fn concurrent_hosts_share_one_refresh() {
    let f = fleet();
    f.publish("v1.0.0");
    let hosts: Vec<Arc<SharedRegistry>> = (0..6).map(|n| Arc::new(f.host(n, "30s"))).collect();
    // Host 0 takes the lock and its origin call hangs, so the others arrive while the lock is held.
    // (Two hosts creating the entry in the same instant is left to the store's conditional writes;
    // s3s-fs checks If-None-Match before writing rather than atomically, so that race is not tested.)
    f.origin.hang.store(true, Ordering::SeqCst);
    let first = tokio::spawn({
        let host = hosts[0].clone();
        async move { host.latest().await.expect("latest").version }
    });
    let entry = f.s3.data_dir().join("fleet/cache").join(hosts[0].entry_key());
    let start = Instant::now();
    while !std::fs::read_to_string(&entry).is_ok_and(|t| t.contains("host-0:1")) {
        assert!(start.elapsed() < Duration::from_secs(20), "lock never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut tasks = vec![first];
    for host in hosts.iter().skip(1) {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            host.latest().await.expect("latest").version
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.origin.hang.store(false, Ordering::SeqCst);
    for t in tasks {
        assert_eq!(t.await.expect("join"), "v1.0.0");
    }
    assert_eq!(f.origin.latest_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dead_lock_holder_is_taken_over() {
    let f = fleet();
    f.publish("v1.0.0");
    let dying = Arc::new(f.host(0, "30s").with_lock_ttl(Duration::from_secs(2)));
    f.origin.hang.store(true, Ordering::SeqCst);
    let task = tokio::spawn({
        let dying = dying.clone();
        async move { dying.latest().await.map(|r| r.version) }
    });
    let entry = f.s3.data_dir().join("fleet/cache").join(dying.entry_key());
    let start = Instant::now();
    // The lock is in the bucket and the holder is inside its origin call (the lock is written
    // first: aborting between the two would leave no origin call to count).
    while !(std::fs::read_to_string(&entry).is_ok_and(|t| t.contains("host-0:1"))
        && f.origin.latest_calls.load(Ordering::SeqCst) == 1)
    {
        assert!(start.elapsed() < Duration::from_secs(20), "lock never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort(); // the holder dies mid-refresh, its lock left in the bucket
    f.origin.hang.store(false, Ordering::SeqCst);
    let heir = f.host(1, "30s").with_lock_ttl(Duration::from_secs(2));
    let waited = Instant::now();
    assert_eq!(heir.latest().await.expect("latest").version, "v1.0.0");
    assert!(
        waited.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        waited.elapsed()
    );
    assert_eq!(f.origin.latest_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failing_origin_is_answered_from_the_last_result() {
    let f = fleet();
    f.publish("v1.0.0");
    let a = f.host(0, "1s");
    assert_eq!(a.latest().await.expect("latest").version, "v1.0.0");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.origin.fail.store(true, Ordering::SeqCst);
    let b = f.host(1, "1s");
    assert_eq!(b.latest().await.expect("stale answer").version, "v1.0.0");
    assert_eq!(f.origin.latest_calls.load(Ordering::SeqCst), 2);
}

/// Two `dewy assets` hosts with `--cache`: the second deploys from the bucket alone (the registry
/// answer within its TTL and the artifact), even once the origin has lost the artifact.
#[test]
fn second_host_deploys_from_the_shared_cache() {
    let s3 = S3Server::start(&["fleet"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = tmp.path().join("origin");
    std::fs::create_dir_all(origin.join("v1.0.0")).expect("dir");
    let archive = support::tar_gz(&[("VERSION", 0o644, b"v1.0.0")]);
    std::fs::write(origin.join("v1.0.0/site.tar.gz"), archive).expect("write");
    let registry_url = format!("file://{}?artifact=site.tar.gz", origin.display());
    let cache_url = format!(
        "s3://{REGION}/fleet/cache?endpoint={}&registry-ttl=1h",
        s3.endpoint()
    );
    let run = |name: &str| {
        let root = tmp.path().join(name);
        std::fs::create_dir_all(&root).expect("root");
        let d = support::proc::Daemon::start(
            env!("CARGO_BIN_EXE_dewy"),
            &[
                "assets",
                "--registry",
                &registry_url,
                "--cache",
                &cache_url,
                "--interval",
                "1",
                "--bus",
                "none",
            ],
            &[
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
            &root,
            &tmp.path().join(format!("{name}.log")),
        );
        (d, root)
    };
    let (mut a, root_a) = run("a");
    support::wait_for("host a live", Duration::from_secs(60), || {
        (support::current_file(&root_a, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    a.kill9();
    let shared = s3.data_dir().join("fleet/cache");
    let artifacts: Vec<_> = std::fs::read_dir(shared.join("artifacts"))
        .expect("artifacts")
        .collect();
    assert_eq!(artifacts.len(), 1, "one shared artifact");
    assert!(shared.join("registry-cache").is_dir());
    std::fs::remove_file(origin.join("v1.0.0/site.tar.gz")).expect("remove");
    let (mut b, root_b) = run("b");
    support::wait_for("host b live from the bucket", Duration::from_secs(60), || {
        (support::current_file(&root_b, "VERSION").as_deref() == Some("v1.0.0")).then_some(())
    });
    b.kill9();
}

/// The same fleet through a `gs://` cache (the GCS emulator): each release downloaded from the
/// origin once, one origin registry request per window. The emulator ignores `ifGenerationMatch`,
/// so hosts run one after another here and the lock's exclusivity rests on real GCS.
#[tokio::test]
async fn gcs_fleet_downloads_each_release_once() {
    const HOSTS: usize = 4;
    let emu = GcsEmulator::start("fleet");
    let tmp = tempfile::tempdir().expect("tmp");
    let releases = tmp.path().join("releases");
    let origin = Origin::new(&releases);
    let url = format!("gs://fleet/cache?endpoint={}&registry-ttl=30s", emu.endpoint());
    let hosts: Vec<SharedRegistry> = (0..HOSTS)
        .map(|n| {
            let spec = parse_url(&url).expect("cache url");
            let ttl = spec.registry_ttl;
            let store = open_store(spec, "dewy-test").expect("store");
            SharedRegistry::new(
                origin.clone(),
                store,
                "file:///releases",
                None,
                ttl,
                format!("host-{n}:1"),
            )
        })
        .collect();
    for r in 0..2 {
        let version = format!("v2.{r}.0");
        let dir = releases.join(&version);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("app.tar.gz"), format!("artifact {version}")).expect("write");
        emu.delete(&format!("cache/{}", hosts[0].entry_key())).await;
        for host in &hosts {
            let (got, body) = deploy(host).await;
            assert_eq!(got, version);
            assert_eq!(body, format!("artifact {version}").as_bytes());
        }
    }
    assert_eq!(
        origin.fetch_calls.load(Ordering::SeqCst),
        2,
        "one origin download per release"
    );
    assert_eq!(
        origin.latest_calls.load(Ordering::SeqCst),
        2,
        "one origin request per window"
    );
    let objects = emu.list("cache/").await;
    assert_eq!(
        objects
            .iter()
            .filter(|o| o.starts_with("cache/artifacts/"))
            .count(),
        2,
        "{objects:?}"
    );
}
