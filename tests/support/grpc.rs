//! A `dewy.RegistryService` server built with protoc from `tests/support/grpc/dewy.proto`
//! (Python `grpcio`, `grpcio-tools`), and a static file server for the artifacts it names.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What the server records: one JSON object per request.
pub type Recorded = Vec<serde_json::Value>;

/// A running registry server; killed on drop.
pub struct RegistryServer {
    child: Child,
    pub port: u16,
    answer: PathBuf,
    record: PathBuf,
}

/// The directory of the Python helpers.
pub fn helpers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/grpc")
}

/// Start `python3 script args…` and read the port it prints first.
pub fn start_python(script: &Path, args: &[&Path], hint: &str) -> (Child, u16) {
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting python3 {} ({e}); {hint}", script.display()));
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("port line");
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} did not print its port ({line:?}); {hint}", script.display()));
    (child, port)
}

impl RegistryServer {
    /// Start in `dir`, plaintext, or with TLS when `tls` gives (certificate, key).
    pub fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> RegistryServer {
        std::fs::create_dir_all(dir).expect("dir");
        let answer = dir.join("answer.json");
        let record = dir.join("record.jsonl");
        std::fs::write(&answer, r#"{"error": "UNAVAILABLE", "message": "no answer set"}"#).expect("answer");
        let mut args: Vec<&Path> = vec![&answer, &record];
        if let Some((cert, key)) = tls {
            args.push(cert);
            args.push(key);
        }
        let (child, port) = start_python(
            &helpers().join("registry_server.py"),
            &args,
            "the gRPC registry tests need python3 -m pip install grpcio grpcio-tools",
        );
        RegistryServer {
            child,
            port,
            answer,
            record,
        }
    }

    /// Set the answer of the next `Current` calls.
    pub fn answer(&self, value: serde_json::Value) {
        std::fs::write(&self.answer, value.to_string()).expect("answer");
    }

    /// The requests so far.
    pub fn recorded(&self) -> Recorded {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python3 -m http.server` serving `dir` on 127.0.0.1; killed on drop.
pub struct FileServer {
    child: Child,
    pub port: u16,
}

impl FileServer {
    pub fn start(dir: &Path) -> FileServer {
        let port = super::free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        super::wait_for("the file server", std::time::Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        FileServer { child, port }
    }

    pub fn url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
