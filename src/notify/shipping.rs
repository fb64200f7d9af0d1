//! The shipping report of each deploy, written to the release source from the `Deployed` event
//! ([`crate::registry::shipping`] names it), in the background and within a time limit; a
//! failure is logged and never fails the deploy.

use std::sync::Arc;
use std::time::Duration;

use super::{Event, EventSink};
use crate::registry::shipping::{Shipment, REPORT_TIMEOUT};
use crate::registry::Registry;

/// An [`EventSink`] that writes the shipping report of each deploy to `registry`.
#[derive(Clone)]
pub struct ShippingReport {
    registry: Arc<dyn Registry>,
    timeout: Duration,
}

impl ShippingReport {
    pub fn new(registry: Arc<dyn Registry>) -> Self {
        ShippingReport {
            registry,
            timeout: REPORT_TIMEOUT,
        }
    }

    /// The sink when `enabled` (the `report` setting) and the source takes reports; `None`
    /// otherwise (logged, so that a silent `report = true` is explained).
    pub fn sink(registry: &Arc<dyn Registry>, enabled: bool) -> Option<Arc<dyn EventSink>> {
        if !enabled {
            tracing::debug!("Shipping report off (report = false)");
            return None;
        }
        if !registry.reports_shipping() {
            tracing::debug!("Shipping report: this release source takes none");
            return None;
        }
        Some(Arc::new(Self::new(registry.clone())))
    }

    /// Write the report of `shipment` now (what the sink runs in the background).
    pub async fn report(&self, shipment: &Shipment) -> anyhow::Result<()> {
        match tokio::time::timeout(self.timeout, self.registry.report_shipped(shipment)).await {
            Ok(result) => result,
            Err(_) => anyhow::bail!("no answer within {:?}", self.timeout),
        }
    }
}

impl EventSink for ShippingReport {
    fn emit(&self, event: Event) {
        let Event::Deployed { version, command, .. } = event else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(dewy_version = %version, "Report shipping failure: no async runtime");
            return;
        };
        let me = self.clone();
        rt.spawn(async move {
            let shipment = Shipment::now(&version, &command);
            match me.report(&shipment).await {
                Ok(()) => tracing::info!(
                    dewy_version = %version,
                    report = %shipment.file_name(),
                    "Report shipping"
                ),
                Err(e) => tracing::warn!(
                    dewy_version = %version,
                    error = %format!("{e:#}"),
                    "Report shipping failure"
                ),
            }
        });
    }
}
