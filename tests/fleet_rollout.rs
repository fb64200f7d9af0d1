//! A fleet of twelve `dewy server` hosts on this machine (each its own root, port and app), one
//! release source, a real etcd holding the fleet store and one rollout lock, and a FleetLock
//! server for the other lock group. The waves roll each release out in order (wave N only after
//! two hosts of wave N−1 ran it for the soak time); at no moment do more than two hosts of a lock
//! group activate; a release that fails on the canary wave is marked bad fleet-wide and deployed
//! by no later wave; a paused host waits until it is resumed and a host outside its deploy window
//! until the window opens, and both then converge; an operator's deploy without a free slot is
//! refused; `dewy forget-bad` clears the fleet-wide mark. The same waves and fleet-wide bad
//! marks then run through an S3 bucket (`s3s-fs`) and a GCS bucket (the emulator), and a bad
//! mark the store could not take survives a restart of its host.

mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::dbus::PrivateBus;
use support::etcd::Etcd;
use support::fleet::{self, converge, hook_spans, max_concurrent, runs, Host, HostSpec, LockServer, LONG};
use support::proc::dewy;
use support::server::{release, served};
use support::{free_port, tar_gz, wait_for, Workspace};

const SLOTS: usize = 2;
const CANARY_HOSTS: usize = 2;
const SOAK: Duration = Duration::from_secs(3);
const STORE: &str = "/dewy/fleet/";
const LOCK: &str = "/dewy/lock/";
const GROUP: &str = "web";

/// A host of the fleet and what the test knows of it.
struct Member {
    host: Host,
    wave: u32,
    port: u16,
}

/// Which lock a host takes its slot from.
enum Lock<'a> {
    Etcd(&'a str),
    Server(&'a LockServer),
}

#[allow(clippy::too_many_arguments)]
fn member(
    dir: &Path,
    ws: &Workspace,
    etcd: &Etcd,
    id: &str,
    wave: u32,
    lock: Lock<'_>,
    extra: &str,
    bus: &str,
) -> Member {
    let port = free_port();
    let lock = match lock {
        Lock::Etcd(prefix) => format!("fleet-lock = \"etcd://{}{prefix}?slots={SLOTS}\"", etcd.addr),
        Lock::Server(s) => format!("fleet-lock = \"{}\"\nfleet-group = \"{GROUP}\"", s.url),
    };
    let config = format!(
        "port = [\"127.0.0.1:{port}\"]\ncommand = [\"./current/app\"]\nreadiness = \"notify\"\n\
         health-timeout = \"10s\"\nfleet-store = \"etcd://{}{STORE}\"\nfleet-wave = {wave}\n\
         canary-hosts = {CANARY_HOSTS}\nsoak = \"{}s\"\n{lock}\n{extra}",
        etcd.addr,
        SOAK.as_secs()
    );
    let host = fleet::start(
        dir,
        id,
        &HostSpec {
            mode: "server",
            registry: &ws.registry_url(),
            config: &config,
            pause: "sleep 1",
            bus,
            env: &[],
        },
    );
    Member { host, wave, port }
}

/// The string `field` of each entry of the list `list` in the state file under `root` (empty
/// while there is none).
fn state_list(root: &Path, list: &str, field: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root.join(".dewy/state.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v[list]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e[field].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The versions of the deploys `m` attempted, from its state file's history.
fn attempted(m: &Member) -> Vec<String> {
    state_list(&m.host.root, "history", "to")
}

/// The first activation of `version` on `m` (start, end), in nanoseconds.
fn activation(m: &Member, version: &str) -> Option<(u128, u128)> {
    let versions = fleet::hooked_versions(&m.host);
    let i = versions.iter().position(|v| v == version)?;
    hook_spans(&m.host).get(i).copied()
}

/// Every host of a wave after the first activated `version` only after `CANARY_HOSTS` hosts of
/// the wave before had finished activating it at least `SOAK` earlier.
fn assert_waves_in_order(fleet: &[&Member], version: &str) {
    let soak = SOAK.as_nanos();
    for m in fleet.iter().filter(|m| m.wave > 0) {
        let Some((start, _)) = activation(m, version) else {
            continue;
        };
        let mut ends: Vec<u128> = fleet
            .iter()
            .filter(|o| o.wave == m.wave - 1)
            .filter_map(|o| activation(o, version).map(|(_, end)| end))
            .collect();
        ends.sort();
        let ready = ends.get(CANARY_HOSTS - 1).unwrap_or_else(|| {
            panic!(
                "{} ran {version} before {CANARY_HOSTS} hosts of wave {} did",
                m.host.id,
                m.wave - 1
            )
        });
        assert!(
            start >= ready + soak,
            "{} (wave {}) activated {version} {} ms after wave {} was ready, before the soak of {SOAK:?}",
            m.host.id,
            m.wave,
            (start.saturating_sub(*ready)) / 1_000_000,
            m.wave - 1
        );
    }
}

/// The next whole minute at least 40 s away, as `HH:MM` UTC, and its epoch seconds.
fn window_start() -> (String, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = (now + 40).div_ceil(60) * 60;
    let of_day = at % 86_400;
    (format!("{:02}:{:02}", of_day / 3600, of_day % 3600 / 60), at)
}

#[test]
fn a_fleet_rolls_out_in_waves_under_the_locks_windows_and_pauses() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let etcd = Etcd::start(dir);
    let server = LockServer::start(GROUP, SLOTS);
    let bus = PrivateBus::start();
    let ws = Workspace::new();
    ws.publish("v1.0.0", &release("v1.0.0", "notify"));
    let (opens, opens_at) = window_start();
    let window = format!(
        "[[window]]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         start = \"{opens}\"\nlength = \"1h\"\ntime-zone = \"UTC\""
    );
    let started = Instant::now();

    // Waves 0 and 1 share the etcd lock; wave 2 takes its slots from the FleetLock server.
    let mut members = Vec::new();
    for (name, hosts, wave) in [("c", 2, 0), ("a", 5, 1), ("b", 3, 2)] {
        for i in 0..hosts {
            let lock = match wave {
                2 => Lock::Server(&server),
                _ => Lock::Etcd(LOCK),
            };
            let id = format!("{name}{i}");
            members.push(member(dir, &ws, &etcd, &id, wave, lock, "", "none"));
        }
    }
    let paused = member(dir, &ws, &etcd, "b3", 2, Lock::Server(&server), "", &bus.address);
    let late = member(dir, &ws, &etcd, "b4", 2, Lock::Server(&server), &window, "none");

    // v1.0.0 rolls out wave by wave; the host outside its window waits.
    let rollout: Vec<&Member> = members.iter().chain([&paused]).collect();
    let t = Instant::now();
    for m in &rollout {
        wait_for(&format!("{} on v1.0.0", m.host.id), LONG, || {
            runs(&m.host, "v1.0.0").then_some(())
        });
    }
    let first = t.elapsed();
    let all: Vec<&Member> = rollout.iter().copied().chain([&late]).collect();
    assert_waves_in_order(&all, "v1.0.0");
    for m in &rollout {
        assert_eq!(served(m.port, "v1.0.0"), Some(()), "{} serves v1.0.0", m.host.id);
    }
    if SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        < opens_at
    {
        let log = late.host.daemon.log();
        assert!(log.contains("Deploy waits for a deploy window"), "{log}");
        assert!(attempted(&late).is_empty(), "b4 deployed outside its window");
    }

    // v2.0.0 exits at start: it fails on the canary wave, is marked bad fleet-wide, and no host
    // of a later wave tries it.
    ws.publish("v2.0.0", &release("v2.0.0", "exit"));
    wait_for("v2.0.0 marked bad fleet-wide", LONG, || {
        etcd.keys(STORE)
            .iter()
            .any(|k| k == &format!("{STORE}bad/v2.0.0"))
            .then_some(())
    });
    for m in rollout.iter().filter(|m| m.wave > 0) {
        wait_for(&format!("{} skipping v2.0.0", m.host.id), LONG, || {
            m.host
                .daemon
                .log()
                .contains("v2.0.0 is marked bad fleet-wide: it failed on c")
                .then_some(())
        });
    }
    let failed_on: Vec<&str> = rollout
        .iter()
        .filter(|m| attempted(m).iter().any(|v| v == "v2.0.0"))
        .map(|m| m.host.id.as_str())
        .collect();
    assert!(!failed_on.is_empty(), "a canary tried v2.0.0");
    for m in &all {
        if m.wave > 0 {
            assert!(
                !attempted(m).iter().any(|v| v == "v2.0.0"),
                "{} (wave {}) tried v2.0.0",
                m.host.id,
                m.wave
            );
        }
        if m.host.id != "b4" {
            assert_eq!(
                served(m.port, "v1.0.0"),
                Some(()),
                "{} still serves v1.0.0",
                m.host.id
            );
        }
    }

    // b3 is paused: v3.0.0 reaches every other host first; resumed, b3 follows.
    let (code, out, err) = dewy(
        &["pause", "b3", "--reason", "db migration", "--bus", &bus.address],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    ws.publish("v3.0.0", &release("v3.0.0", "notify"));
    let t = Instant::now();
    for m in &members {
        wait_for(&format!("{} on v3.0.0", m.host.id), LONG, || {
            runs(&m.host, "v3.0.0").then_some(())
        });
    }
    let third = t.elapsed();
    let log = paused.host.daemon.log();
    assert!(log.contains("v3.0.0 held back: paused"), "{log}");
    assert_eq!(
        served(paused.port, "v1.0.0"),
        Some(()),
        "the paused host kept v1.0.0"
    );
    let (code, out, err) = dewy(&["resume", "b3", "--bus", &bus.address], &[]);
    assert_eq!(code, 0, "{out}{err}");
    converge(std::slice::from_ref(&paused.host), "v3.0.0");

    // b4's window opens: it deploys the newest release the waves let through.
    converge(std::slice::from_ref(&late.host), "v3.0.0");
    let opened = u128::from(opens_at) * 1_000_000_000;
    for (start, _) in hook_spans(&late.host) {
        assert!(
            start >= opened,
            "b4 activated at {start}, before its window opened at {opened}"
        );
    }
    assert!(late
        .host
        .daemon
        .log()
        .contains("Deploy waits for a deploy window"));
    let total = started.elapsed();
    let all: Vec<&Member> = members.iter().chain([&paused, &late]).collect();
    assert_waves_in_order(&all, "v3.0.0");
    for m in &all {
        assert_eq!(served(m.port, "v3.0.0"), Some(()), "{} serves v3.0.0", m.host.id);
    }

    // The locks: never more than SLOTS activations at once in either group.
    let etcd_group: Vec<(u128, u128)> = all
        .iter()
        .filter(|m| m.wave < 2)
        .flat_map(|m| hook_spans(&m.host))
        .collect();
    let server_group: Vec<(u128, u128)> = all
        .iter()
        .filter(|m| m.wave == 2)
        .flat_map(|m| hook_spans(&m.host))
        .collect();
    let (max_etcd, max_server) = (max_concurrent(&etcd_group), max_concurrent(&server_group));
    assert!(
        max_etcd <= SLOTS,
        "{max_etcd} hosts of the etcd lock group activated at once"
    );
    assert!(
        max_server <= SLOTS,
        "{max_server} hosts of the FleetLock group activated at once"
    );
    assert!(server.state.lock().expect("state").max_held <= SLOTS);

    // An operator's deploy that cannot get a slot is refused, with the reason; nothing changes.
    server.occupy("maintenance-a");
    server.occupy("maintenance-b");
    let (code, out, err) = dewy(&["deploy", "v1.0.0", "--app", "b3", "--bus", &bus.address], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(format!("{out}{err}").contains("semaphore is full"), "{out}{err}");
    assert_eq!(served(paused.port, "v3.0.0"), Some(()), "b3 kept v3.0.0");
    server.free("maintenance-a");
    server.free("maintenance-b");

    // forget-bad on one host clears the mark fleet-wide.
    let (code, out, err) = dewy(
        &["forget-bad", "v2.0.0", "--app", "b3", "--bus", &bus.address],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("v2.0.0 may be deployed again"), "{out}");
    assert!(
        !etcd.keys(STORE).iter().any(|k| k.contains("/bad/")),
        "{:?}",
        etcd.keys(STORE)
    );

    eprintln!(
        "fleet timeline: {} hosts (waves 0/1/2 = 2/5/5, {CANARY_HOSTS} canary hosts, soak {SOAK:?}), \
         {SLOTS} slots per lock group; max concurrent activations {max_etcd} (etcd lock), \
         {max_server} (FleetLock); v1.0.0 on 11 hosts in {first:?}; v2.0.0 failed on {failed_on:?} \
         and reached no later wave; v3.0.0 on the 11 unpaused hosts in {third:?}; all 12 on v3.0.0 \
         (b4 after its window opened at {opens} UTC) in {total:?} from the start",
        all.len()
    );
}

/// Three `dewy assets` hosts (a canary and two of wave 1, one soak of 2 s) recording in the
/// object store `store`: v1.0.0 reaches wave 1 only after the canary ran it for the soak; a
/// broken v2.0.0 fails on the canary, is marked bad in the bucket (`exists` says whether a key is
/// there) and skipped by wave 1; `dewy forget-bad` on a wave-1 host deletes the mark, after which
/// wave 1 waits for the canary instead.
fn waves_through_a_bucket(store: &str, env: &[(&str, &str)], exists: &dyn Fn(&str) -> bool) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let bus = PrivateBus::start();
    let ws = Workspace::new();
    ws.publish("v1.0.0", &fleet::site("v1.0.0"));
    let soak = Duration::from_secs(2);
    let start = |id: &str, wave: u32, bus: &str| Member {
        host: fleet::start(
            dir,
            id,
            &HostSpec {
                mode: "assets",
                registry: &ws.registry_url(),
                config: &format!(
                    "fleet-store = \"{store}\"\nfleet-wave = {wave}\ncanary-hosts = 1\nsoak = \"{}s\"",
                    soak.as_secs()
                ),
                pause: "true",
                bus,
                env,
            },
        ),
        wave,
        port: 0,
    };
    let canary = start("c0", 0, "none");
    let wave1 = [start("a0", 1, &bus.address), start("a1", 1, "none")];

    converge(std::slice::from_ref(&canary.host), "v1.0.0");
    for m in &wave1 {
        wait_for(&format!("{} on v1.0.0", m.host.id), LONG, || {
            runs(&m.host, "v1.0.0").then_some(())
        });
    }
    let (_, canary_end) = activation(&canary, "v1.0.0").expect("canary activation");
    for m in &wave1 {
        let (start, _) = activation(m, "v1.0.0").expect("activation");
        assert!(
            start >= canary_end + soak.as_nanos(),
            "{} activated {} ms after the canary, before the soak",
            m.host.id,
            start.saturating_sub(canary_end) / 1_000_000
        );
    }
    for id in ["hosts/0/c0", "hosts/1/a0", "hosts/1/a1"] {
        wait_for(&format!("{id} recorded"), LONG, || exists(id).then_some(()));
    }

    ws.publish("v2.0.0", &tar_gz(&[("VERSION", 0o644, b"v2.0.0")])[..20]);
    wait_for("v2.0.0 marked bad in the bucket", LONG, || {
        exists("bad/v2.0.0").then_some(())
    });
    for m in &wave1 {
        wait_for(&format!("{} skipping v2.0.0", m.host.id), LONG, || {
            m.host
                .daemon
                .log()
                .contains("v2.0.0 is marked bad fleet-wide: it failed on c0")
                .then_some(())
        });
        assert!(
            !attempted(m).iter().any(|v| v == "v2.0.0"),
            "{} tried v2.0.0",
            m.host.id
        );
    }
    assert!(attempted(&canary).iter().any(|v| v == "v2.0.0"));

    let (code, out, err) = dewy(
        &["forget-bad", "v2.0.0", "--app", "a0", "--bus", &bus.address],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("v2.0.0 may be deployed again"), "{out}");
    assert!(!exists("bad/v2.0.0"), "the mark is gone");
    wait_for("a0 waiting for the canary again", LONG, || {
        wave1[0]
            .host
            .daemon
            .log()
            .contains("v2.0.0 waits for wave 0: 0 of 1 host of wave 0 ran it")
            .then_some(())
    });
    assert_eq!(fleet::hooked_versions(&wave1[0].host), ["v1.0.0"]);
}

#[test]
fn waves_and_bad_marks_through_an_s3_bucket() {
    let s3 = support::s3::S3Server::start(&["fleet"]);
    let store = format!(
        "s3://{}/fleet/rollout?endpoint={}",
        support::s3::REGION,
        s3.endpoint()
    );
    let data = s3.data_dir().join("fleet/rollout");
    waves_through_a_bucket(
        &store,
        &[
            ("AWS_ACCESS_KEY_ID", support::s3::ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", support::s3::SECRET_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        &|key| data.join(key).is_file(),
    );
}

#[test]
fn waves_and_bad_marks_through_a_gcs_bucket() {
    let emu = support::gcs::GcsEmulator::start("fleet");
    let store = format!("gs://fleet/rollout?endpoint={}", emu.endpoint());
    waves_through_a_bucket(&store, &[], &|key| {
        let object = format!("rollout/{key}").replace('/', "%2F");
        support::server::get(emu.port, &format!("/storage/v1/b/fleet/o/{object}")).is_ok()
    });
}

/// A bad mark the store cannot take (its bucket is missing) is kept in the state file; a
/// restarted host writes it once the store takes writes again, and no longer owes it.
#[test]
fn a_bad_mark_owed_to_a_failing_store_survives_a_restart() {
    let s3 = support::s3::S3Server::start(&[]);
    let store = format!(
        "s3://{}/fleet/rollout?endpoint={}",
        support::s3::REGION,
        s3.endpoint()
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = Workspace::new();
    ws.publish("v1.0.0", &tar_gz(&[("VERSION", 0o644, b"v1.0.0")])[..20]);
    let env = [
        ("AWS_ACCESS_KEY_ID", support::s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", support::s3::SECRET_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let config = format!("fleet-store = \"{store}\"\nfleet-wave = 0");
    let spec = HostSpec {
        mode: "assets",
        registry: &ws.registry_url(),
        config: &config,
        pause: "true",
        bus: "none",
        env: &env,
    };
    let owed = |root: &Path| state_list(root, "fleet_bad_owed", "version");

    let host = fleet::start(tmp.path(), "c0", &spec);
    wait_for("the owed mark in the state file", LONG, || {
        (owed(&host.root) == ["v1.0.0"]).then_some(())
    });
    wait_for("the failed write reported", LONG, || {
        host.daemon
            .log()
            .contains("Fleet store: writing the records failed")
            .then_some(())
    });
    drop(host);

    std::fs::create_dir_all(s3.data_dir().join("fleet")).expect("bucket");
    let host = fleet::start(tmp.path(), "c0", &spec);
    let mark = s3.data_dir().join("fleet/rollout/bad/v1.0.0");
    wait_for("the mark written after the restart", LONG, || {
        mark.is_file().then_some(())
    });
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&mark).expect("mark")).expect("mark is JSON");
    assert_eq!(v["by"], "c0", "{v}");
    assert_eq!(v["version"], "v1.0.0", "{v}");
    wait_for("no mark owed any more", LONG, || {
        owed(&host.root).is_empty().then_some(())
    });
}

/// A record in the store larger than any record dewy writes (a hostile writer of the bucket) is
/// refused, not read into memory: the host says so and does not deploy.
#[test]
fn an_oversized_record_in_the_store_is_refused() {
    let s3 = support::s3::S3Server::start(&["fleet"]);
    let store = format!(
        "s3://{}/fleet/rollout?endpoint={}",
        support::s3::REGION,
        s3.endpoint()
    );
    s3.put("fleet", "rollout/bad/v1.0.0", &vec![b' '; 2 << 20], None);
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = Workspace::new();
    ws.publish("v1.0.0", &fleet::site("v1.0.0"));
    let env = [
        ("AWS_ACCESS_KEY_ID", support::s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", support::s3::SECRET_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let config = format!("fleet-store = \"{store}\"\nfleet-wave = 0");
    let host = fleet::start(
        tmp.path(),
        "c0",
        &HostSpec {
            mode: "assets",
            registry: &ws.registry_url(),
            config: &config,
            pause: "true",
            bus: "none",
            env: &env,
        },
    );
    wait_for("the oversized record refused", LONG, || {
        host.daemon.log().contains("rollout/bad/v1.0.0 in").then_some(())
    });
    assert!(
        host.daemon.log().contains("is larger than 1048576 bytes"),
        "{}",
        host.daemon.log()
    );
    assert!(!runs(&host, "v1.0.0"), "deployed past an unreadable store");
}
