//! A generation that exits on its own: restarted with backoff, its quick crashes counted into a
//! crash loop for the deployer to judge.

use super::*;

impl Supervisor {
    /// Restart the app with backoff when its generation exits on its own.
    pub(super) fn watch(self: &Arc<Self>, gen: Arc<Generation>) {
        let me = self.clone();
        tokio::spawn(async move {
            let status = gen.wait_exit().await;
            if me.stopping.load(Ordering::SeqCst) || !me.is_current(&gen) {
                return;
            }
            let lived = gen.started.elapsed();
            let delay = {
                let mut b = me.backoff.lock().unwrap_or_else(|p| p.into_inner());
                if lived >= STABLE_AFTER {
                    *b = Duration::from_secs(1);
                    me.quick_crashes.store(0, Ordering::SeqCst);
                } else {
                    me.crashed_quickly(&gen.version);
                }
                let d = *b;
                *b = (*b * 2).min(MAX_BACKOFF);
                d
            };
            tracing::error!(pid = gen.pid, dewy_version = %gen.version, status = %describe(status), retry_in_ms = delay.as_millis() as u64, "Server process exited unexpectedly; restarting");
            me.emit(Event::Failed {
                stage: Stage::Run,
                version: Some(gen.version.clone()),
                error: format!("the app exited unexpectedly ({})", describe(status)),
                next_step: format!(
                    "dewy restarts it in {delay:?} (backoff up to {MAX_BACKOFF:?}); after {CRASH_LOOP} quick crashes a release within its blame-window is rolled back. Its output: journalctl -t {}",
                    me.settings.app
                ),
                command: me.settings.mode.to_string(),
            });
            me.restart_after(gen, delay).await;
        });
    }

    pub(super) async fn restart_after(self: Arc<Self>, dead: Arc<Generation>, mut delay: Duration) {
        loop {
            tokio::time::sleep(delay).await;
            let _op = self.ops.lock().await;
            if self.stopping.load(Ordering::SeqCst) || !self.is_current(&dead) {
                return;
            }
            let version = self.wanted.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match self.start_locked(&version, Restart::Crash).await {
                Ok(()) => return,
                Err(e) => {
                    self.crashed_quickly(&version);
                    delay = (delay * 2).min(MAX_BACKOFF);
                    tracing::error!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "Server restart failed");
                }
            }
        }
    }

    /// In a crash loop now: [`CRASH_LOOP`] quick crashes in a row, and no generation has run for
    /// [`STABLE_AFTER`] since.
    pub fn crash_looping(&self) -> bool {
        if self.quick_crashes.load(Ordering::SeqCst) < CRASH_LOOP {
            return false;
        }
        !self
            .current_gen()
            .is_some_and(|g| g.exited().is_none() && g.started.elapsed() >= STABLE_AFTER)
    }

    pub(super) fn is_current(&self, gen: &Arc<Generation>) -> bool {
        self.current_gen().is_some_and(|c| Arc::ptr_eq(&c, gen))
    }

    pub(super) fn crashed_quickly(&self, version: &str) {
        if self.quick_crashes.fetch_add(1, Ordering::SeqCst) + 1 == CRASH_LOOP {
            tracing::error!(dewy_version = version, crashes = CRASH_LOOP, "Server crash loop");
            let _ = self.crash_loops.send(version.to_string());
        }
    }
}
