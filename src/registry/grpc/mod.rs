//! `grpc://host:port` registry: a server speaking Go Dewy's `dewy.RegistryService` names the
//! release to run (`Current`) and hears about deploys (`Report`). TLS with the system roots by
//! default, `ca-file=` for a private CA, `no-tls=true` for plaintext.

mod fetch;
pub mod proto;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use tokio::sync::OnceCell;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use url::Url;

use super::query::{self, SourceQuery};
use super::version::{self, Selector};
use super::{ByteStream, CheckError, OpenOptions, Registry, Release};
use proto::{CurrentRequest, CurrentResponse, ReportRequest};

/// Time to set up a connection (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time one call may take as a whole.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest `ca-file` read.
const MAX_CA_FILE: u64 = 1024 * 1024;
/// Longest answer id kept for `Report`.
const MAX_ID: usize = 1024;
/// Answers remembered (for `fetch` and `Report`).
const REMEMBERED: usize = 16;

/// Where a `grpc://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub host: String,
    pub port: u16,
    /// `no-tls=true`: plaintext HTTP/2.
    pub plaintext: bool,
    /// `ca-file=`: trust this PEM bundle instead of the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    pub query: SourceQuery,
}

/// Validate `grpc://host[:port]?no-tls=…&ca-file=…&artifact=…&calver=…` (port 443 by default).
pub fn parse_location(url: &Url) -> anyhow::Result<Location> {
    if url.scheme() != "grpc" {
        bail!("not a grpc:// registry URL: {url}");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("registry URL {url} must be grpc://host:port (no user or password)");
    }
    let host = url.host_str().unwrap_or_default().to_string();
    if host.is_empty() {
        bail!("registry URL {url} has no host; expected grpc://host:port");
    }
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        bail!("registry URL {url} has a path; expected grpc://host:port");
    }
    if url.query_pairs().any(|(k, _)| k == "pre-release") {
        bail!(
            "unknown parameter \"pre-release\" in registry URL {url}: the gRPC server chooses the release; allowed: artifact, calver, no-tls, ca-file"
        );
    }
    let (query, others) = query::parse_with(url, &["no-tls", "ca-file"])?;
    let mut plaintext = false;
    let mut ca_file = None;
    for (key, value) in others {
        match key.as_str() {
            "no-tls" => {
                plaintext = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!(
                        "parameter \"no-tls\" must be true or false (got \"{value}\") in registry URL {url}"
                    ),
                }
            }
            _ => {
                let path = std::path::PathBuf::from(&value);
                if !path.is_absolute() {
                    bail!("parameter \"ca-file\" must be an absolute path in registry URL {url}");
                }
                ca_file = Some(path);
            }
        }
    }
    if plaintext && ca_file.is_some() {
        bail!("registry URL {url} sets both no-tls=true and ca-file=; choose one");
    }
    Ok(Location {
        host,
        port: url.port().unwrap_or(443),
        plaintext,
        ca_file,
        query,
    })
}

/// One `Current` answer, kept for `fetch` and `Report`.
#[derive(Debug, Clone)]
struct Answer {
    id: String,
    tag: String,
    url: Url,
}

/// A `dewy.RegistryService` server.
pub struct GrpcRegistry {
    location: Location,
    selector: Selector,
    opts: OpenOptions,
    endpoint: tonic::transport::Endpoint,
    channel: OnceCell<Channel>,
    answers: Mutex<VecDeque<Answer>>,
}

impl std::fmt::Debug for GrpcRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcRegistry")
            .field("location", &self.location)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

/// Open a `grpc://` registry: the URL and the `ca-file` are checked now, the connection is
/// made at the first call.
pub fn open(url: &Url, opts: &OpenOptions) -> anyhow::Result<GrpcRegistry> {
    open_at(parse_location(url)?, url, opts)
}

/// [`open`] with the URL already parsed into `location` (`url` names it in errors).
pub fn open_at(location: Location, url: &Url, opts: &OpenOptions) -> anyhow::Result<GrpcRegistry> {
    let mut selector = super::version_dirs::selector(&location.query, opts)?;
    // The server decides whether a pre-release is what this host runs.
    selector.prerelease = true;
    let scheme = if location.plaintext { "http" } else { "https" };
    let host = match location.host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{}]", location.host),
        Err(_) => location.host.clone(),
    };
    let mut endpoint = proto::endpoint(&format!("{scheme}://{host}:{}", location.port))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .user_agent(opts.user_agent.clone())
        .context("gRPC user agent")?;
    if !location.plaintext {
        let tls = ClientTlsConfig::new().domain_name(location.host.trim_matches(['[', ']']));
        let tls = match &location.ca_file {
            Some(path) => tls.ca_certificate(Certificate::from_pem(read_ca(path)?)),
            None => tls.with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS settings of registry URL {url}"))?;
    }
    Ok(GrpcRegistry {
        location,
        selector,
        opts: opts.clone(),
        endpoint,
        channel: OnceCell::new(),
        answers: Mutex::new(VecDeque::new()),
    })
}

fn read_ca(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("reading ca-file {}", path.display()))?;
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut pem)
        .with_context(|| format!("reading ca-file {}", path.display()))?;
    if pem.len() as u64 > MAX_CA_FILE {
        bail!("ca-file {} is larger than {MAX_CA_FILE} bytes", path.display());
    }
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        bail!("ca-file {} holds no PEM certificate", path.display());
    }
    Ok(pem)
}

impl GrpcRegistry {
    /// `host:port` for messages.
    fn server(&self) -> String {
        let tls = if self.location.plaintext {
            "plaintext"
        } else {
            "TLS"
        };
        format!(
            "gRPC registry {}:{} ({tls})",
            self.location.host, self.location.port
        )
    }

    async fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| async { self.endpoint.connect_lazy() })
            .await
            .clone()
    }

    fn call_error(&self, method: &str, err: proto::CallError) -> anyhow::Error {
        let hint = match &err {
            proto::CallError::Status(s) if s.code() == tonic::Code::Unavailable && !self.location.plaintext => {
                " — is the server speaking TLS with a certificate for this host? (no-tls=true for plaintext, ca-file= for a private CA)"
            }
            proto::CallError::Status(s) if s.code() == tonic::Code::Unimplemented => {
                " — the server does not implement dewy.RegistryService"
            }
            _ => "",
        };
        let detail = match &err {
            proto::CallError::Status(s) => {
                let message = version::shown(s.message());
                format!("{:?}: {message}", s.code())
            }
            other => other.to_string(),
        };
        anyhow::anyhow!("{method} on the {}: {detail}{hint}", self.server())
    }

    /// Ask the server for the current release and check its answer.
    async fn current(&self) -> Result<Release, CheckError> {
        let request = CurrentRequest {
            arch: proto::go_arch().to_string(),
            os: std::env::consts::OS.to_string(),
            arifact_name: self.location.query.artifact.clone(),
        };
        let answer: CurrentResponse =
            proto::call(self.channel().await, proto::CURRENT, request, CALL_TIMEOUT)
                .await
                .map_err(|e| CheckError::Other(self.call_error("Current", e)))?;
        let (release, url) = check_answer(&self.selector, &self.server(), &answer)?;
        self.remember(Answer {
            id: answer.id,
            tag: answer.tag,
            url,
        });
        Ok(release)
    }

    fn remember(&self, answer: Answer) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|a| a.tag != answer.tag || a.url != answer.url);
        if answers.len() >= REMEMBERED {
            answers.pop_front();
        }
        answers.push_back(answer);
    }

    fn answer_for(&self, pred: impl Fn(&Answer) -> bool) -> Option<Answer> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.iter().rev().find(|a| pred(a)).cloned()
    }

    /// Tell the server the outcome of deploying `tag` (`Report`): `command` is the mode
    /// (`server`, `assets`, `container`), `err` the failure if any. The id sent is the one of
    /// the server's `Current` answer for that tag (empty when this process never saw one).
    pub async fn report(&self, tag: &str, command: &str, err: Option<&str>) -> anyhow::Result<()> {
        let id = self
            .answer_for(|a| a.tag == tag)
            .map(|a| a.id)
            .unwrap_or_default();
        let request = ReportRequest {
            id,
            tag: tag.to_string(),
            command: command.to_string(),
            err: err.map(str::to_string),
        };
        let () = proto::call(self.channel().await, proto::REPORT, request, CALL_TIMEOUT)
            .await
            .map_err(|e| self.call_error("Report", e))?;
        Ok(())
    }
}

/// Check a `Current` answer of `server` (named so in messages): a tag of the selector's grammar
/// (and slot), an id short enough to echo back, and an artifact URL dewy downloads from. The
/// release it names, and its artifact URL as parsed (kept for `fetch` and `Report`).
pub(crate) fn check_answer(
    selector: &Selector,
    server: &str,
    answer: &CurrentResponse,
) -> Result<(Release, Url), CheckError> {
    let bad = |what: String| CheckError::Other(anyhow::anyhow!("the {server} answered Current with {what}"));
    let parsed = selector
        .validate(&answer.tag)
        .map_err(|e| bad(format!("an unusable tag: {e}")))?;
    if let Some(slot) = &selector.slot {
        if parsed.build() != slot {
            return Err(CheckError::NoRelease(format!(
                "the {server} offers {}, not a release of slot {slot}",
                version::shown(&answer.tag)
            )));
        }
    }
    if answer.id.len() > MAX_ID {
        return Err(bad(format!(
            "an id of {} bytes (at most {MAX_ID})",
            answer.id.len()
        )));
    }
    let (url, artifact) = fetch::check(&answer.artifact_url).map_err(|e| bad(format!("{e:#}")))?;
    let published_at = answer.created_at.as_ref().and_then(proto::to_utc);
    Ok((
        Release {
            version: answer.tag.clone(),
            artifact,
            artifact_url: url.to_string(),
            checksum_url: None,
            published_at,
            signatures: Vec::new(),
        },
        url,
    ))
}

/// `v1.2.3` and `1.2.3` name the same release.
fn same_tag(tag: &str, wanted: &str) -> bool {
    let strip = |s: &str| s.strip_prefix(['v', 'V']).unwrap_or(s).to_string();
    tag == wanted || strip(tag) == strip(wanted)
}

#[async_trait]
impl Registry for GrpcRegistry {
    async fn latest(&self) -> Result<Release, CheckError> {
        self.current().await
    }

    /// Go Dewy calls `Report` after each successful deploy; so does dewy (the shipping report).
    fn reports_shipping(&self) -> bool {
        true
    }

    async fn report_shipped(&self, shipment: &super::shipping::Shipment) -> anyhow::Result<()> {
        self.report(&shipment.version, &shipment.command, None).await
    }

    /// The server offers one release: the current one. Any other version is not available.
    async fn find(&self, version: &str) -> Result<Release, CheckError> {
        let release = self.current().await?;
        if same_tag(&release.version, version) {
            return Ok(release);
        }
        Err(CheckError::NoRelease(format!(
            "the {} offers only its current release {}, not {}",
            self.server(),
            version::shown(&release.version),
            version::shown(version)
        )))
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<ByteStream> {
        let Some(answer) = self.answer_for(|a| a.url.as_str() == url) else {
            bail!(
                "artifact URL {url} was not offered by the {}; refusing to download it",
                self.server()
            );
        };
        fetch::fetch(&answer.url, &self.opts)
            .await
            .with_context(|| format!("release {} of the {}", answer.tag, self.server()))
    }

    fn selector(&self) -> Selector {
        self.selector.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> anyhow::Result<Location> {
        parse_location(&Url::parse(s).expect("url"))
    }

    #[test]
    fn location_parsing() {
        let l =
            loc("grpc://reg.example.com:9090?no-tls=true&artifact=app.tgz&calver=YYYY.0M.MICRO").expect("ok");
        assert_eq!(
            (l.host.as_str(), l.port, l.plaintext),
            ("reg.example.com", 9090, true)
        );
        assert_eq!(l.query.artifact.as_deref(), Some("app.tgz"));
        assert!(l.query.calver.is_some());
        let l = loc("grpc://reg.example.com?ca-file=/etc/dewy/ca.pem").expect("ok");
        assert_eq!((l.port, l.plaintext), (443, false));
        assert_eq!(
            l.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/dewy/ca.pem"))
        );
        let err = loc("grpc://h:1?pre-release=true").expect_err("pre").to_string();
        assert!(err.contains("\"pre-release\""), "{err}");
        let err = loc("grpc://h:1?bogus=1").expect_err("key").to_string();
        assert!(err.contains("no-tls, ca-file"), "{err}");
        assert!(loc("grpc://h:1?no-tls=yes").is_err());
        assert!(loc("grpc://h:1?ca-file=rel/ca.pem").is_err());
        assert!(loc("grpc://h:1?no-tls=true&ca-file=/ca.pem").is_err());
        assert!(loc("grpc://h:1/path").is_err());
        assert!(loc("grpc://u:p@h:1").is_err());
        assert!(crate::registry::parse_url("grpc://:1").is_err());
    }

    #[test]
    fn open_checks_the_ca_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("none.pem");
        let url = Url::parse(&format!("grpc://h:1?ca-file={}", missing.display())).expect("url");
        let err = open(&url, &OpenOptions::default())
            .expect_err("missing")
            .to_string();
        assert!(err.contains("reading ca-file"), "{err}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let url = Url::parse(&format!("grpc://h:1?ca-file={}", junk.display())).expect("url");
        let err = open(&url, &OpenOptions::default()).expect_err("junk").to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[tokio::test]
    async fn fetch_refuses_urls_the_server_did_not_offer() {
        let url = Url::parse("grpc://127.0.0.1:1?no-tls=true").expect("url");
        let reg = open(&url, &OpenOptions::default()).expect("open");
        let err = match reg.fetch("https://example.com/app.tgz").await {
            Ok(_) => panic!("fetched"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("was not offered"), "{err}");
        let err = reg.latest().await.expect_err("nobody listens").to_string();
        assert!(
            err.contains("Current on the gRPC registry 127.0.0.1:1 (plaintext)"),
            "{err}"
        );
    }
}
