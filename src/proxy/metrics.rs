//! The proxy's Prometheus metrics: requests, errors and latency per port, in flight per backend.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::{Port, ProxyHandle};

/// Upper bounds (seconds) of `dewy_proxy_request_duration_seconds`.
pub const LATENCY_BUCKETS: [f64; 11] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

impl crate::metrics::Render for ProxyHandle {
    fn render(&self) -> String {
        let mut o = String::new();
        let ports = &self.shared.ports;
        let counter = |o: &mut String, name: &str, help: &str, f: &dyn Fn(&Port) -> u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (port, p) in ports {
                let _ = writeln!(
                    o,
                    "{name}{{proxy_port=\"{port}\",protocol=\"{}\"}} {}",
                    p.spec.protocol,
                    f(p)
                );
            }
        };
        counter(
            &mut o,
            "dewy_proxy_requests_total",
            "Requests (HTTP) or connections (TCP) the proxy handled.",
            &|p| p.requests.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "dewy_proxy_errors_total",
            "Requests answered 502/504 or 5xx by the backend (HTTP), or connections no backend took (TCP).",
            &|p| p.errors.load(Ordering::Relaxed),
        );
        let name = "dewy_proxy_request_duration_seconds";
        let _ = writeln!(
            o,
            "# HELP {name} Time to the backend's response headers (HTTP) or connection length (TCP).\n# TYPE {name} histogram"
        );
        for (port, p) in ports {
            let mut below = 0;
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                below += p.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(o, "{name}_bucket{{proxy_port=\"{port}\",le=\"{le}\"}} {below}");
            }
            let count = p.requests.load(Ordering::Relaxed);
            let _ = writeln!(o, "{name}_bucket{{proxy_port=\"{port}\",le=\"+Inf\"}} {count}");
            let sum = p.latency_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(o, "{name}_sum{{proxy_port=\"{port}\"}} {sum:.6}");
            let _ = writeln!(o, "{name}_count{{proxy_port=\"{port}\"}} {count}");
        }
        let _ = writeln!(
            o,
            "# HELP dewy_proxy_backends Backends in the table of each port.\n# TYPE dewy_proxy_backends gauge"
        );
        for (port, p) in ports {
            let _ = writeln!(
                o,
                "dewy_proxy_backends{{proxy_port=\"{port}\"}} {}",
                p.table.load().backends.len()
            );
        }
        let _ = writeln!(
            o,
            "# HELP dewy_proxy_backend_in_flight Requests or connections open to a backend.\n# TYPE dewy_proxy_backend_in_flight gauge"
        );
        for s in self.status() {
            for b in &s.backends {
                let _ = writeln!(
                    o,
                    "dewy_proxy_backend_in_flight{{proxy_port=\"{}\",backend=\"{}\"}} {}",
                    s.listen.port(),
                    b.addr,
                    b.in_flight
                );
            }
        }
        let counts = &self.shared.counts;
        let gauge = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut o,
            "dewy_proxy_client_connections",
            "Client connections open.",
            counts.open() as u64,
        );
        gauge(
            &mut o,
            "dewy_proxy_client_connections_max",
            "Most client connections served at once; past it new ones are refused.",
            counts.max_open() as u64,
        );
        gauge(
            &mut o,
            "dewy_proxy_idle_backend_connections",
            "Idle keep-alive connections to backends kept for reuse.",
            super::pool::idle_total() as u64,
        );
        let name = "dewy_proxy_connections_shed_total";
        let _ = writeln!(
            o,
            "# HELP {name} Client connections refused because the most were open.\n# TYPE {name} counter\n{name} {}",
            counts.shed()
        );
        let name = "dewy_proxy_drain_connections_total";
        let _ = writeln!(
            o,
            "# HELP {name} Client connections ended while the proxy stopped, by how.\n# TYPE {name} counter"
        );
        for (end, how) in [
            ("response", super::connections::DrainEnd::AfterResponse),
            ("idle", super::connections::DrainEnd::IdleGrace),
            ("cut", super::connections::DrainEnd::Cut),
        ] {
            let _ = writeln!(o, "{name}{{end=\"{end}\"}} {}", counts.drained(how));
        }
        o
    }
}
