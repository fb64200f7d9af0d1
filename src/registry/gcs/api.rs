//! The GCS JSON API connection shared by the `gs://` registry and the `gs://` shared cache: the
//! endpoint (storage.googleapis.com, `STORAGE_EMULATOR_HOST` or an explicit one), the HTTP client,
//! bearer tokens, and object/upload URLs.

use anyhow::Context;
use url::Url;

use super::auth;

const DEFAULT_BASE: &str = "https://storage.googleapis.com";
/// Most bytes of an error answer read.
const MAX_FAILURE_BODY: usize = 16 * 1024;

/// One connection to a GCS JSON API endpoint.
pub struct Api {
    pub base: Url,
    pub http: reqwest::Client,
    tokens: auth::Tokens,
}

impl Api {
    /// Connect to `endpoint`, else `STORAGE_EMULATOR_HOST` (both unauthenticated), else
    /// storage.googleapis.com with service-account or metadata-server tokens.
    pub fn connect(endpoint: Option<&str>, user_agent: &str) -> anyhow::Result<Api> {
        let emulator = endpoint
            .map(str::to_string)
            .or_else(|| std::env::var("STORAGE_EMULATOR_HOST").ok())
            .filter(|h| !h.trim().is_empty());
        let (base, source) = match emulator {
            Some(host) => {
                let host = host.trim();
                let full = if host.contains("://") {
                    host.to_string()
                } else {
                    format!("http://{host}")
                };
                (full, auth::Source::None)
            }
            None => (DEFAULT_BASE.to_string(), auth::Source::from_env()?),
        };
        let base = Url::parse(&base).with_context(|| format!("invalid GCS endpoint \"{base}\""))?;
        Api::new(base, source, user_agent)
    }

    /// A connection to `base` authenticated by `source`.
    pub(super) fn new(base: Url, source: auth::Source, user_agent: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            base,
            http,
            tokens: auth::Tokens::new(source),
        })
    }

    /// `{base}/storage/v1/b/{bucket}/o[/{object}]`, names percent-encoded whole (`/` too).
    pub fn objects_url(&self, bucket: &str, object: Option<&str>) -> Url {
        self.with_path(&format!("/storage/v1/b/{}/o", encode(bucket)), object)
    }

    /// `{base}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={object}`.
    pub fn upload_url(&self, bucket: &str, object: &str) -> Url {
        let mut url = self.with_path(&format!("/upload/storage/v1/b/{}/o", encode(bucket)), None);
        url.query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("name", object);
        url
    }

    /// A multipart upload (`uploadType=multipart`) of `data` as `object`: its metadata, then its
    /// bytes, in one request. This is how Google's client libraries write small objects, and
    /// unlike a media upload it writes empty ones on the emulator too.
    pub fn multipart_upload(
        &self,
        bucket: &str,
        object: &str,
        content_type: &str,
        data: &[u8],
    ) -> reqwest::RequestBuilder {
        let mut url = self.with_path(&format!("/upload/storage/v1/b/{}/o", encode(bucket)), None);
        url.query_pairs_mut().append_pair("uploadType", "multipart");
        let (boundary, body) = multipart_body(object, content_type, data);
        self.http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body)
    }

    fn with_path(&self, tail: &str, object: Option<&str>) -> Url {
        let mut url = self.base.clone();
        let mut path = url.path().trim_end_matches('/').to_string();
        path.push_str(tail);
        if let Some(object) = object {
            path.push('/');
            path.push_str(&encode(object));
        }
        url.set_path(&path);
        url
    }

    /// Send `req` with the bearer token when the endpoint needs one.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let req = match self.tokens.token(&self.http).await? {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        Ok(req.send().await?)
    }
}

/// The `multipart/related` body of an upload and its boundary (one that `data` does not hold).
fn multipart_body(object: &str, content_type: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = loop {
        let b = format!("dewy-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        if !data.windows(b.len()).any(|w| w == b.as_bytes()) {
            break b;
        }
    };
    let meta = serde_json::json!({ "name": object, "contentType": content_type });
    let mut body = Vec::with_capacity(data.len() + 256);
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n").as_bytes(),
    );
    body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

/// Why a GCS answer is not a success: its status, the start of its body, and what to check when
/// the credentials were refused.
pub async fn failure(resp: reqwest::Response) -> String {
    use futures_util::StreamExt;
    let status = resp.status();
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk[..chunk.len().min(MAX_FAILURE_BODY - body.len())]);
        if body.len() >= MAX_FAILURE_BODY {
            break;
        }
    }
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let hint = match status.as_u16() {
        401 | 403 => " — check the Google credentials (GOOGLE_APPLICATION_CREDENTIALS or the systemd credential gcs-credentials)",
        _ => "",
    };
    format!(
        "HTTP {status}: {}{hint}",
        text.chars().take(300).collect::<String>()
    )
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_body_holds_the_metadata_then_the_bytes() {
        let (boundary, body) = multipart_body("app/v1/x.txt", "text/plain", b"");
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with(&format!("--{boundary}\r\nContent-Type: application/json")),
            "{text}"
        );
        assert!(text.contains(r#""name":"app/v1/x.txt""#), "{text}");
        assert!(
            text.ends_with(&format!("Content-Type: text/plain\r\n\r\n\r\n--{boundary}--\r\n")),
            "{text}"
        );
        let (boundary, body) = multipart_body("o", "text/plain", b"--dewy-data");
        assert_eq!(text.matches("--dewy-").count(), 3);
        assert_eq!(String::from_utf8(body).unwrap().matches(&boundary).count(), 3);
    }
}
