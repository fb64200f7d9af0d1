//! The app's listening sockets at start: those systemd passed matched to the configured ports,
//! the rest bound here and pushed to the fd store.

use super::*;

impl Supervisor {
    /// The app's sockets: those systemd passed (a socket unit's, or dewy's own from the fd store)
    /// matched to the configured ports by address, and the configured ports none of them serves
    /// bound here and pushed to the fd store.
    /// Also says whether sockets were bound or dropped here (the set differs from the last run's).
    pub(super) fn listen(settings: &Settings) -> anyhow::Result<(Vec<Socket>, bool)> {
        let wanted = &settings.ports;
        let inherited = sockets::inherited().context("taking the sockets passed by systemd")?;
        let plan = sockets::plan(inherited, wanted);
        // A passed socket on a configured port but another address would make the bind below
        // fail with a bare "address in use": say what disagrees.
        for w in &plan.bind {
            if let Some(l) = plan
                .keep
                .iter()
                .filter_map(|s| s.local)
                .find(|l| l.port() == w.port())
            {
                anyhow::bail!(
                    "the socket systemd passed for port {} listens on {l}, but the config asks for {w}: \
                     make the socket unit's ListenStream= and `port` name the same address",
                    w.port()
                );
            }
        }
        if !plan.keep.is_empty() {
            let names: Vec<&str> = plan.keep.iter().map(|s| s.name.as_str()).collect();
            tracing::info!(count = plan.keep.len(), names = ?names, "Using the listening sockets passed by systemd");
        }
        for s in &plan.stale {
            tracing::info!(socket = %s.addr, "Port no longer configured; closing its stored socket");
            if let Err(e) = fdstore::remove(&s.name) {
                tracing::warn!(error = %e, "Removing a socket from the systemd fd store failed");
            }
        }
        let changed = !plan.bind.is_empty() || !plan.stale.is_empty();
        let bound = sockets::bind(&plan.bind)?;
        match fdstore::push(&bound) {
            Ok(true) => tracing::info!(
                count = bound.len(),
                "Listening sockets pushed to the systemd fd store"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "Pushing the sockets to the systemd fd store failed"),
        }
        let mut sockets = plan.keep;
        sockets.extend(bound);
        sockets::sort(&mut sockets);
        Ok((sockets, changed))
    }
}
