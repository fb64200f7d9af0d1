//! Artifact helpers around a registry: published checksums and small downloads held in memory.

pub mod checksum;

use anyhow::{bail, Context};
use futures_util::StreamExt;

use crate::registry::Registry;

/// Read a small file (such as `checksums.txt`) from a registry into memory, failing once it
/// exceeds `limit` bytes.
pub async fn fetch_small(reg: &dyn Registry, url: &str, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut stream = reg.fetch(url).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading {url}"))?;
        if out.len() + chunk.len() > limit {
            bail!("{url} is larger than {limit} bytes");
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ByteStream, CheckError, Release};
    use bytes::Bytes;

    struct Fixed(Vec<&'static [u8]>);

    #[async_trait::async_trait]
    impl Registry for Fixed {
        async fn latest(&self) -> Result<Release, CheckError> {
            Err(CheckError::NoRelease("none".into()))
        }
        async fn find(&self, _: &str) -> Result<Release, CheckError> {
            Err(CheckError::NoRelease("none".into()))
        }
        async fn fetch(&self, _: &str) -> anyhow::Result<ByteStream> {
            let chunks: Vec<std::io::Result<Bytes>> =
                self.0.iter().map(|c| Ok(Bytes::from_static(c))).collect();
            Ok(Box::pin(futures_util::stream::iter(chunks)))
        }
    }

    #[tokio::test]
    async fn reads_within_limit_and_rejects_beyond() {
        let reg = Fixed(vec![b"abc", b"def"]);
        assert_eq!(fetch_small(&reg, "x", 6).await.expect("fits"), b"abcdef");
        let err = fetch_small(&reg, "x", 5).await.expect_err("too big");
        assert!(err.to_string().contains("larger than 5 bytes"), "{err}");
    }
}
