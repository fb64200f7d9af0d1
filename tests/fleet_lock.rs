//! FleetLock: several foreground `dewy assets` hosts on one release source and a FleetLock
//! server written here (a semaphore of N slots per group, speaking the protocol Zincati speaks).
//! At no moment do more hosts switch releases than there are slots; each switch (and its
//! after-deploy hook) happens while its host holds a slot; a host that cannot get a slot, or
//! cannot reach the server, does not deploy and says why; a slot held before a restart is given
//! back when the host starts.

mod support;

use std::path::Path;

use support::fleet::{
    self, assert_activations_held_the_lock, converge, hook_spans, max_concurrent, site, Host, HostSpec,
    LockServer, LONG,
};
use support::{current_file, free_port, wait_for, Workspace};

const SLOTS: usize = 2;
const HOSTS: usize = 5;
const GROUP: &str = "web";

/// A host of the group whose after-deploy hook sleeps a second (an activation).
fn host(dir: &Path, ws: &Workspace, id: &str, lock_url: &str) -> Host {
    fleet::start(
        dir,
        id,
        &HostSpec {
            mode: "assets",
            registry: &ws.registry_url(),
            config: &format!("fleet-lock = \"{lock_url}\"\nfleet-group = \"{GROUP}\""),
            pause: "sleep 1",
            bus: "none",
            env: &[],
        },
    )
}

#[test]
fn hosts_deploy_at_most_slots_at_a_time_and_wait_for_the_lock() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = Workspace::new();
    ws.publish("v1.0.0", &site("v1.0.0"));
    let server = LockServer::start(GROUP, SLOTS);
    // host-0 held a slot when it stopped: starting again, it gives it back first.
    server.occupy("host-0");
    let hosts: Vec<Host> = (0..HOSTS)
        .map(|i| host(tmp.path(), &ws, &format!("host-{i}"), &server.url))
        .collect();
    // A host whose lock server does not answer: never deploys, says why.
    let lost = host(
        tmp.path(),
        &ws,
        "lost",
        &format!("http://127.0.0.1:{}/", free_port()),
    );

    let first = converge(&hosts, "v1.0.0");
    {
        let st = server.state.lock().expect("state");
        let first_call = st
            .calls
            .iter()
            .find(|(_, id, _)| id == "host-0")
            .expect("host-0 called");
        assert_eq!(first_call.0, "/lock/v1/steady-state", "{:?}", st.calls);
    }

    // The group's slots are taken elsewhere: v1.1.0 waits on every host, which says why.
    server.occupy("maintenance-a");
    server.occupy("maintenance-b");
    ws.publish("v1.1.0", &site("v1.1.0"));
    for h in &hosts {
        wait_for(&format!("{} waiting for the lock", h.id), LONG, || {
            let log = h.daemon.log();
            (log.contains("Deploy waits for the fleet lock") && log.contains("semaphore is full"))
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
    server.free("maintenance-a");
    server.free("maintenance-b");
    let second = converge(&hosts, "v1.1.0");

    let all: Vec<(u128, u128)> = hosts.iter().flat_map(hook_spans).collect();
    assert_eq!(all.len(), 2 * HOSTS, "one activation per host and release");
    let max = max_concurrent(&all);
    assert!(max <= SLOTS, "{max} hosts activated at once");
    assert_activations_held_the_lock(&server, &hosts);
    assert!(server.state.lock().expect("state").max_held <= SLOTS);
    // The slot is given back just after the hook ends (when converge saw it): wait for it.
    wait_for("every slot given back", LONG, || {
        server.holders().is_empty().then_some(())
    });

    let log = wait_for("the lost host saying why it waits", LONG, || {
        let log = lost.daemon.log();
        log.contains("cannot reach the fleet lock").then_some(log)
    });
    assert!(log.contains("the live release keeps serving"), "{log}");
    assert_eq!(current_file(&lost.root, "VERSION"), None);

    eprintln!(
        "fleet-lock timeline: {HOSTS} hosts, {SLOTS} slots; max concurrent activations {max}; \
         converged on v1.0.0 in {first:?}, on v1.1.0 in {second:?} after the slots were freed"
    );
}
