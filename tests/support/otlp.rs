//! An OTLP/gRPC receiver (Python, the official `opentelemetry-proto` definitions and `grpcio`)
//! that records every export as JSON, for the telemetry tests.

use std::path::{Path, PathBuf};
use std::process::Child;

use serde_json::Value;

/// A running receiver; killed on drop.
pub struct OtlpReceiver {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl OtlpReceiver {
    /// Start with records in `dir`, plaintext, or TLS with (certificate, key).
    pub fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> OtlpReceiver {
        std::fs::create_dir_all(dir).expect("dir");
        let mut args: Vec<&Path> = vec![dir];
        if let Some((cert, key)) = tls {
            args.push(cert);
            args.push(key);
        }
        let (child, port) = super::grpc::start_python(
            &super::grpc::helpers().join("otlp_receiver.py"),
            &args,
            "the telemetry tests need python3 -m pip install grpcio opentelemetry-proto",
        );
        OtlpReceiver {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every export request of one signal (`metrics`, `traces`, `logs`) so far.
    pub fn requests(&self, signal: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join(format!("{signal}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }

    /// The spans of every trace export, flattened.
    pub fn spans(&self) -> Vec<Value> {
        self.requests("traces")
            .iter()
            .flat_map(|r| items(r, "resource_spans", "scope_spans", "spans"))
            .collect()
    }

    /// The log records of every log export, flattened.
    pub fn log_records(&self) -> Vec<Value> {
        self.requests("logs")
            .iter()
            .flat_map(|r| items(r, "resource_logs", "scope_logs", "log_records"))
            .collect()
    }

    /// The metrics of every metric export so far, oldest first.
    pub fn metrics(&self) -> Vec<Value> {
        self.requests("metrics")
            .iter()
            .flat_map(|r| items(r, "resource_metrics", "scope_metrics", "metrics"))
            .collect()
    }

    /// The resource attributes of the first export of `signal`, as key → string value.
    pub fn resource(&self, signal: &str, outer: &str) -> Vec<(String, String)> {
        let reqs = self.requests(signal);
        let Some(first) = reqs.first() else {
            return Vec::new();
        };
        first[outer][0]["resource"]["attributes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| {
                        (
                            kv["key"].as_str().unwrap_or_default().to_string(),
                            value_text(&kv["value"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `request[outer][*][middle][*][inner][*]`.
fn items(request: &Value, outer: &str, middle: &str, inner: &str) -> Vec<Value> {
    let list = |v: &Value, k: &str| v[k].as_array().cloned().unwrap_or_default();
    list(request, outer)
        .iter()
        .flat_map(|o| list(o, middle))
        .flat_map(|m| list(&m, inner))
        .collect()
}

/// An OTLP `AnyValue` (JSON mapping) as text.
pub fn value_text(v: &Value) -> String {
    for key in ["string_value", "int_value", "double_value", "bool_value"] {
        if let Some(x) = v.get(key) {
            return match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    String::new()
}

/// The value of attribute `key` in an OTLP attribute list.
pub fn attr(attrs: &Value, key: &str) -> Option<String> {
    attrs
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| value_text(&kv["value"]))
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
