//! Bytes both ways between two sockets until either side closes, or until neither has sent
//! anything for the idle timeout (`proxy-idle-timeout`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Copy both ways; `idle` zero means no idle limit. A connection closed for being idle ends with
/// an error of kind `TimedOut`.
pub async fn both_ways(a: &mut TcpStream, b: &mut TcpStream, idle: Duration) -> io::Result<(u64, u64)> {
    if idle.is_zero() {
        return tokio::io::copy_bidirectional(a, b).await;
    }
    let base = Instant::now();
    let last = AtomicU64::new(0);
    let mut a = Watched {
        inner: a,
        base,
        last: &last,
    };
    let mut b = Watched {
        inner: b,
        base,
        last: &last,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let quiet_until = base + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            r = &mut copy => return r,
            _ = tokio::time::sleep_until(quiet_until.into()) => {
                let seen = Duration::from_millis(last.load(Ordering::Relaxed));
                if base.elapsed() >= seen + idle {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
                }
            }
        }
    }
}

/// A socket that records when it last delivered bytes.
struct Watched<'a> {
    inner: &'a mut TcpStream,
    base: Instant,
    last: &'a AtomicU64,
}

impl AsyncRead for Watched<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last
                .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Watched<'_> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(l: &tokio::net::TcpListener) -> (TcpStream, TcpStream) {
        let addr = l.local_addr().expect("addr");
        let c = TcpStream::connect(addr).await.expect("connect");
        let (s, _) = l.accept().await.expect("accept");
        (c, s)
    }

    #[tokio::test]
    async fn traffic_keeps_it_open_silence_closes_it() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (mut client, mut proxy_in) = pair(&l).await;
        let (mut proxy_out, mut backend) = pair(&l).await;
        let idle = Duration::from_millis(300);
        let copy = tokio::spawn(async move { both_ways(&mut proxy_in, &mut proxy_out, idle).await });
        // Traffic every 100 ms for 600 ms: twice the idle timeout, still open.
        for _ in 0..6 {
            client.write_all(b"ping").await.expect("write");
            let mut got = [0u8; 4];
            backend.read_exact(&mut got).await.expect("read");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!copy.is_finished());
        // Then silence: closed as idle.
        let r = tokio::time::timeout(Duration::from_secs(5), copy)
            .await
            .expect("closed in time")
            .expect("task");
        assert_eq!(r.err().map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
    }
}
