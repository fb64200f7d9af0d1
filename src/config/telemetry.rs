//! `telemetry`, `otlp-endpoint` and `otlp-insecure`: whether OpenTelemetry is on and where its
//! OTLP/gRPC export goes.

use serde::Serialize;

use super::ConfigError;

/// The OpenTelemetry settings of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Telemetry {
    /// `telemetry = true`, or an `otlp-endpoint` (which turns it on, as in Go Dewy).
    #[serde(rename = "telemetry")]
    pub enabled: bool,
    /// Where metrics, deploy traces and event logs are exported; `None`: no export.
    #[serde(flatten)]
    pub otlp: Option<Otlp>,
}

/// An OTLP/gRPC collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Otlp {
    /// `host:port` as written.
    #[serde(rename = "otlp-endpoint")]
    pub endpoint: String,
    /// `otlp-insecure = true`: plaintext; otherwise TLS with the system roots.
    #[serde(rename = "otlp-insecure")]
    pub insecure: bool,
}

impl Otlp {
    /// The endpoint as a URI for the gRPC client (`https://host:port` or `http://host:port`).
    pub fn uri(&self) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}", self.endpoint)
    }

    /// The host part, for the TLS server name (brackets of an IPv6 address removed).
    pub fn host(&self) -> &str {
        let host = self.endpoint.rsplit_once(':').map_or("", |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// Resolve the three keys.
pub fn resolve(
    telemetry: Option<bool>,
    endpoint: Option<&str>,
    insecure: Option<bool>,
) -> Result<Telemetry, ConfigError> {
    let endpoint = endpoint.map(str::trim).filter(|e| !e.is_empty());
    let otlp = match endpoint {
        None => None,
        Some(e) => Some(Otlp {
            endpoint: check_endpoint(e)?,
            insecure: insecure.unwrap_or(false),
        }),
    };
    Ok(Telemetry {
        enabled: telemetry.unwrap_or(false) || otlp.is_some(),
        otlp,
    })
}

/// `host:port` (an IPv6 host in brackets), without a scheme or path.
fn check_endpoint(e: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        ConfigError::Invalid(format!(
            "otlp-endpoint {e:?}: {why} (expected host:port, e.g. \"otel-collector:4317\")"
        ))
    };
    if e.contains("://") {
        return Err(bad(
            "give host:port without a scheme; otlp-insecure = true selects plaintext",
        ));
    }
    if e.contains(['/', '?', '#', '@']) || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("not a host:port"));
    }
    let Some((host, port)) = e.rsplit_once(':') else {
        return Err(bad("the port is missing"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("the port is not a number from 1 to 65535")),
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let valid_host = match bare {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && !host.contains([':', '[', ']']),
    };
    if !valid_host {
        return Err(bad("the host is missing or malformed"));
    }
    Ok(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_turns_telemetry_on() {
        let t = resolve(None, Some("collector:4317"), None).expect("ok");
        assert!(t.enabled);
        let otlp = t.otlp.expect("otlp");
        assert_eq!(
            (otlp.uri().as_str(), otlp.host()),
            ("https://collector:4317", "collector")
        );
        let t = resolve(Some(true), None, Some(true)).expect("ok");
        assert!(t.enabled && t.otlp.is_none());
        assert_eq!(resolve(None, Some(" "), None).expect("ok"), Telemetry::default());
        let t = resolve(Some(false), Some("[::1]:4317"), Some(true)).expect("ok");
        let otlp = t.otlp.expect("otlp");
        assert_eq!((otlp.uri().as_str(), otlp.host()), ("http://[::1]:4317", "::1"));
    }

    #[test]
    fn the_config_file_keys() {
        let path = std::path::Path::new("/etc/dewy/web.toml");
        let text =
            "registry = \"file:///srv/web\"\notlp-endpoint = \"collector:4317\"\notlp-insecure = true\n";
        let s = crate::config::from_text("web", path, text).expect("settings");
        // `dewy config check` shows them under their own names.
        let shown = toml::to_string(&s).expect("toml");
        for line in [
            "telemetry = true\n",
            "otlp-endpoint = \"collector:4317\"\n",
            "otlp-insecure = true\n",
        ] {
            assert!(shown.contains(line), "{line}: {shown}");
        }
        assert_eq!(
            s.telemetry,
            Telemetry {
                enabled: true,
                otlp: Some(Otlp {
                    endpoint: "collector:4317".into(),
                    insecure: true
                })
            }
        );
        let s = crate::config::from_text("web", path, "registry = \"file:///srv/web\"\ntelemetry = true\n")
            .expect("settings");
        assert!(s.telemetry.enabled && s.telemetry.otlp.is_none());
        let err = crate::config::from_text(
            "web",
            path,
            "registry = \"file:///srv/web\"\notlp-endpoint = \"collector\"\n",
        )
        .expect_err("no port")
        .to_string();
        assert!(err.contains("port is missing"), "{err}");
    }

    #[test]
    fn bad_endpoints() {
        for (e, why) in [
            ("http://collector:4317", "without a scheme"),
            ("collector", "port is missing"),
            ("collector:0", "1 to 65535"),
            ("collector:x", "1 to 65535"),
            (":4317", "host is missing"),
            ("::1:4317", "host is missing"),
            ("collector:4317/v1", "not a host:port"),
        ] {
            let err = resolve(None, Some(e), None).expect_err(e).to_string();
            assert!(err.contains(why), "{e}: {err}");
        }
    }
}
