//! The etcd rollout lock (`fleet-lock = "etcd://…"`) against a real etcd started here: several
//! foreground `dewy assets` hosts with `slots=2` never activate more than 2 at once and all
//! converge; a slot a host held before a restart is given back when it starts; slots held by
//! others make every host wait and say why; a host whose etcd does not answer does not deploy
//! and says why; the slot of a killed host is freed when its lease expires; a user and password
//! reach an etcd with authentication on, also after the token lapsed.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::etcd::Etcd;
use support::fleet::{self, converge, hook_spans, max_concurrent, site, Host, HostSpec, LONG};
use support::{current_file, free_port, wait_for, Workspace};

const SLOTS: usize = 2;
const HOSTS: usize = 5;
const PREFIX: &str = "/dewy/web/";

/// A host whose after-deploy hook runs `pause` between its stamps (an activation).
fn host(dir: &Path, ws: &Workspace, id: &str, lock_url: &str, pause: &str) -> Host {
    fleet::start(
        dir,
        id,
        &HostSpec {
            mode: "assets",
            registry: &ws.registry_url(),
            config: &format!("fleet-lock = \"{lock_url}\""),
            pause,
            bus: "none",
            env: &[],
        },
    )
}

#[test]
fn hosts_deploy_at_most_slots_at_a_time_through_etcd() {
    let tmp = tempfile::tempdir().expect("tmp");
    let etcd = Etcd::start(tmp.path());
    let ws = Workspace::new();
    ws.publish("v1.0.0", &site("v1.0.0"));
    let url = format!("etcd://{}{PREFIX}?slots={SLOTS}&ttl=30", etcd.addr);
    // host-0 held a slot when it stopped (its lease still runs): starting again, it gives it
    // back first, so the others are not held up for the lease's hour.
    etcd.put_leased(&format!("{PREFIX}host-0"), 3600);
    let hosts: Vec<Host> = (0..HOSTS)
        .map(|i| host(tmp.path(), &ws, &format!("host-{i}"), &url, "sleep 1"))
        .collect();
    // A host whose etcd does not answer: never deploys, says why.
    let lost = host(
        tmp.path(),
        &ws,
        "lost",
        &format!("etcd://127.0.0.1:{}{PREFIX}?slots={SLOTS}", free_port()),
        "true",
    );

    let first = converge(&hosts, "v1.0.0");
    wait_for("every slot given back", LONG, || {
        etcd.keys(PREFIX).is_empty().then_some(())
    });

    // The slots are held elsewhere: v1.1.0 waits on every host, which says why.
    etcd.put_leased(&format!("{PREFIX}maintenance-a"), 3600);
    etcd.put_leased(&format!("{PREFIX}maintenance-b"), 3600);
    ws.publish("v1.1.0", &site("v1.1.0"));
    for h in &hosts {
        wait_for(&format!("{} waiting for the lock", h.id), LONG, || {
            let log = h.daemon.log();
            (log.contains("Deploy waits for the fleet lock")
                && log.contains("semaphore is full (2 of 2 slots held, by maintenance-a, maintenance-b)"))
            .then_some(())
        });
    }
    for h in &hosts {
        assert_eq!(
            current_file(&h.root, "VERSION").as_deref(),
            Some("v1.0.0"),
            "{}",
            h.id
        );
    }
    etcd.delete(&format!("{PREFIX}maintenance-a"));
    etcd.delete(&format!("{PREFIX}maintenance-b"));
    let second = converge(&hosts, "v1.1.0");

    let all: Vec<(u128, u128)> = hosts.iter().flat_map(hook_spans).collect();
    assert_eq!(all.len(), 2 * HOSTS, "one activation per host and release");
    let max = max_concurrent(&all);
    assert!(max <= SLOTS, "{max} hosts activated at once");
    wait_for("every slot given back", LONG, || {
        etcd.keys(PREFIX).is_empty().then_some(())
    });

    let log = wait_for("the lost host saying why it waits", LONG, || {
        let log = lost.daemon.log();
        log.contains("cannot reach the fleet lock").then_some(log)
    });
    assert!(log.contains("the live release keeps serving"), "{log}");
    assert_eq!(current_file(&lost.root, "VERSION"), None);

    eprintln!(
        "etcd lock timeline: {HOSTS} hosts, {SLOTS} slots; max concurrent activations {max}; \
         converged on v1.0.0 in {first:?}, on v1.1.0 in {second:?} after the slots were freed"
    );
}

#[test]
fn a_killed_hosts_slot_expires_with_its_lease() {
    let tmp = tempfile::tempdir().expect("tmp");
    let etcd = Etcd::start(tmp.path());
    let ws = Workspace::new();
    ws.publish("v1.0.0", &site("v1.0.0"));
    let ttl: u64 = 6;
    let url = format!("etcd://{}{PREFIX}?slots=1&ttl={ttl}", etcd.addr);
    // host-a's activation lasts until `release` exists: it is killed while holding the slot.
    let release = tmp.path().join("release");
    let pause = format!("while [ ! -e {} ]; do sleep 0.2; done", release.display());
    let mut a = host(tmp.path(), &ws, "host-a", &url, &pause);
    wait_for("host-a activating", LONG, || {
        let text = std::fs::read_to_string(&a.hooks).unwrap_or_default();
        text.contains(" v1.0.0").then_some(())
    });
    assert_eq!(etcd.keys(PREFIX), vec![format!("{PREFIX}host-a")]);
    a.daemon.kill9();
    let killed = Instant::now();
    // The orphaned hook may end now; nobody gives the slot back.
    std::fs::write(&release, "").expect("release");

    let b = host(tmp.path(), &ws, "host-b", &url, "true");
    wait_for("host-b waiting for host-a's slot", LONG, || {
        let log = b.daemon.log();
        log.contains("semaphore is full (1 of 1 slots held, by host-a)")
            .then_some(())
    });
    converge(std::slice::from_ref(&b), "v1.0.0");
    let freed = killed.elapsed();
    // Kept alive every third of the TTL, the lease had at least half of it left at the kill.
    assert!(
        freed >= Duration::from_secs(ttl / 2),
        "host-a's slot was freed {freed:?} after the kill, before its lease ({ttl}s) could expire"
    );
    wait_for("host-b's slot given back", LONG, || {
        etcd.keys(PREFIX).is_empty().then_some(())
    });
    eprintln!("etcd lock: a killed host's slot was free again {freed:?} after the kill (ttl {ttl}s)");
}

/// With authentication on (a user allowed only the lock's and the store's prefixes, tokens that
/// lapse after 2 s unused): a host with the user's password takes its slot and records its
/// release, and does again once its token has lapsed; a host with a wrong password does not
/// deploy and says why. Neither password is logged.
#[test]
fn a_user_and_password_reach_an_etcd_with_authentication() {
    const STORE: &str = "/dewy/store/";
    let tmp = tempfile::tempdir().expect("tmp");
    let mut etcd = Etcd::start_with(tmp.path(), &["--auth-token", "simple", "--auth-token-ttl", "2"]);
    etcd.enable_auth("fleet-user", "s3cret-pw", &[PREFIX, STORE]);
    let ws = Workspace::new();
    ws.publish("v1.0.0", &site("v1.0.0"));
    let start = |id: &str, password: &str| {
        let addr = &etcd.addr;
        fleet::start(
            tmp.path(),
            id,
            &HostSpec {
                mode: "assets",
                registry: &ws.registry_url(),
                config: &format!(
                    "fleet-lock = \"etcd://fleet-user:{password}@{addr}{PREFIX}?slots=1\"\n\
                     fleet-store = \"etcd://fleet-user:{password}@{addr}{STORE}\"\nfleet-wave = 0"
                ),
                pause: "true",
                bus: "none",
                env: &[],
            },
        )
    };
    let good = start("good", "s3cret-pw");
    let bad = start("bad", "wrong-pw");

    converge(std::slice::from_ref(&good), "v1.0.0");
    let record = format!("{STORE}hosts/0/good");
    wait_for("good's release recorded", LONG, || {
        etcd.keys(STORE).contains(&record).then_some(())
    });
    wait_for("bad's refusal reported", LONG, || {
        let log = bad.daemon.log();
        (log.contains("the fleet store etcd://fleet-user:***@")
            && log.contains("refused")
            && log.contains("authentication failed"))
        .then_some(())
    });
    assert_eq!(current_file(&bad.root, "VERSION"), None, "bad deployed");

    // good's clients have been idle past the token's life: the next release still goes through.
    std::thread::sleep(Duration::from_secs(5));
    ws.publish("v2.0.0", &site("v2.0.0"));
    converge(std::slice::from_ref(&good), "v2.0.0");
    assert_eq!(fleet::hooked_versions(&good), ["v1.0.0", "v2.0.0"]);
    for (h, password) in [(&good, "s3cret-pw"), (&bad, "wrong-pw")] {
        assert!(!h.daemon.log().contains(password), "{} logged its password", h.id);
    }
}
