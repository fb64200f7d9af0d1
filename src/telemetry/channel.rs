//! The gRPC connection to the OTLP collector: TLS with the system roots (or `SSL_CERT_FILE`),
//! or plaintext with `otlp-insecure`; connected lazily with bounded connect and call times.

use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::config::telemetry::Otlp;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel to `otlp` (no connection is made until the first export).
pub fn connect(otlp: &Otlp) -> anyhow::Result<Channel> {
    let uri = otlp.uri();
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("invalid otlp-endpoint {}", otlp.endpoint))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .user_agent(crate::registry::default_user_agent())
        .context("OTLP user agent")?;
    if !otlp.insecure {
        let tls = ClientTlsConfig::new()
            .domain_name(otlp.host())
            .with_native_roots();
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS settings for otlp-endpoint {}", otlp.endpoint))?;
    }
    Ok(endpoint.connect_lazy())
}
