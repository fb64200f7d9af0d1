//! The messages and calls of Go Dewy's `dewy.RegistryService` (`registry/dewy.proto`), written
//! out by hand with the same field numbers so existing servers keep working.

use std::time::Duration;

use anyhow::Context;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// `dewy.CurrentRequest`: what this host runs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CurrentRequest {
    /// CPU architecture in Go's spelling (`amd64`, `arm64`).
    #[prost(string, tag = "1")]
    pub arch: String,
    /// Operating system in Go's spelling (`linux`).
    #[prost(string, tag = "2")]
    pub os: String,
    /// The artifact name asked for (`artifact=`). Spelled `arifact_name` in the upstream
    /// definition; only the field number matters on the wire.
    #[prost(string, optional, tag = "3")]
    pub arifact_name: Option<String>,
}

/// `dewy.CurrentResponse`: the release to run now.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CurrentResponse {
    /// Identifies this answer; echoed in [`ReportRequest::id`].
    #[prost(string, tag = "1")]
    pub id: String,
    /// The version tag.
    #[prost(string, tag = "2")]
    pub tag: String,
    /// Where the artifact is downloaded from.
    #[prost(string, tag = "3")]
    pub artifact_url: String,
    /// When the release was published.
    #[prost(message, optional, tag = "4")]
    pub created_at: Option<prost_types::Timestamp>,
}

/// `dewy.ReportRequest`: the outcome of a deploy (answered with `google.protobuf.Empty`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReportRequest {
    /// The [`CurrentResponse::id`] of the deployed release.
    #[prost(string, tag = "1")]
    pub id: String,
    /// The deployed tag.
    #[prost(string, tag = "2")]
    pub tag: String,
    /// `server`, `assets` or `container`.
    #[prost(string, tag = "3")]
    pub command: String,
    /// Set when the deploy failed.
    #[prost(string, optional, tag = "4")]
    pub err: Option<String>,
}

/// The full method names.
pub const CURRENT: &str = "/dewy.RegistryService/Current";
pub const REPORT: &str = "/dewy.RegistryService/Report";

/// The largest answer accepted from a server (a `CurrentResponse` is a few hundred bytes).
pub const MAX_ANSWER: usize = 64 * 1024;

/// Why a call failed: the transport, or the server's own status.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the call did not finish within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
}

/// One unary call of `method` on `channel`, bounded by `limit` as a whole.
pub async fn call<Req, Resp>(
    channel: Channel,
    method: &'static str,
    request: Req,
    limit: Duration,
) -> Result<Resp, CallError>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let work = async move {
        let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_ANSWER);
        grpc.ready().await?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let answer = grpc
            .unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(method),
                codec,
            )
            .await?;
        Ok::<Resp, CallError>(answer.into_inner())
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| CallError::Timeout(limit))?
}

/// Go's name of this host's CPU architecture (`GOARCH`).
pub fn go_arch() -> &'static str {
    go_arch_of(std::env::consts::ARCH)
}

fn go_arch_of(arch: &'static str) -> &'static str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        other => other,
    }
}

/// A timestamp of the wire as a UTC time; `None` when out of range.
pub fn to_utc(ts: &prost_types::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    chrono::DateTime::from_timestamp(ts.seconds, nanos)
}

/// Check that an endpoint URI is well-formed (used at open time, before any connection).
pub fn endpoint(uri: &str) -> anyhow::Result<tonic::transport::Endpoint> {
    tonic::transport::Endpoint::from_shared(uri.to_string())
        .with_context(|| format!("invalid gRPC endpoint {uri}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn field_numbers_match_the_upstream_definition() {
        // arch=1 "a", os=2 "b", arifact_name=3 "c": tag bytes 0x0a, 0x12, 0x1a.
        let req = CurrentRequest {
            arch: "a".into(),
            os: "b".into(),
            arifact_name: Some("c".into()),
        };
        assert_eq!(req.encode_to_vec(), [0x0a, 1, b'a', 0x12, 1, b'b', 0x1a, 1, b'c']);
        let none = CurrentRequest {
            arifact_name: None,
            ..req
        };
        assert_eq!(none.encode_to_vec(), [0x0a, 1, b'a', 0x12, 1, b'b']);
        let rep = ReportRequest {
            id: "i".into(),
            tag: "t".into(),
            command: "c".into(),
            err: Some("e".into()),
        };
        assert_eq!(
            rep.encode_to_vec(),
            [0x0a, 1, b'i', 0x12, 1, b't', 0x1a, 1, b'c', 0x22, 1, b'e']
        );
        // created_at=4 is a message: tag byte 0x22, then seconds=1 (0x08 0x05).
        let wire = [
            0x0a, 1, b'x', 0x12, 2, b'v', b'1', 0x1a, 1, b'u', 0x22, 2, 0x08, 5,
        ];
        let res = CurrentResponse::decode(&wire[..]).expect("decode");
        assert_eq!(
            (res.id.as_str(), res.tag.as_str(), res.artifact_url.as_str()),
            ("x", "v1", "u")
        );
        assert_eq!(res.created_at.as_ref().map(|t| t.seconds), Some(5));
    }

    #[test]
    fn go_architecture_names() {
        assert_eq!(go_arch_of("x86_64"), "amd64");
        assert_eq!(go_arch_of("aarch64"), "arm64");
        assert_eq!(go_arch_of("riscv64"), "riscv64");
        let bad = prost_types::Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert!(to_utc(&bad).is_none());
    }
}
