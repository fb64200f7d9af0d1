//! The client's side of a connection: reading a request head, answering locally (refusals,
//! errors made by the proxy) and lingering before a close.

use super::*;

impl Conn {
    /// The next request head, or `None` when the client closed, went quiet, or the proxy stops.
    ///
    /// A head must be complete within the head timeout (30 s) of the accept (first request) or of
    /// its first byte (later ones), however it trickles in (then 408): a deadline, not a limit on
    /// each read. Between requests the connection may idle for [`KEEPALIVE_IDLE`]. Once the proxy
    /// stops, a new connection's first request is still waited for
    /// [`FIRST_REQUEST_WHEN_STOPPING`], and an idle keep-alive connection for the drain's idle
    /// grace (5 s): a request arriving meanwhile is served (and answered with
    /// `Connection: close`), else the connection gets a lingering close.
    pub(super) async fn read_request(&mut self, first: bool) -> io::Result<Option<Request>> {
        use tokio::time::Instant;
        self.head_only = false;
        let limits = self.port.timeouts;
        let idle_since = Instant::now();
        let mut head_by = first.then_some(self.accepted + limits.head);
        loop {
            if !self.inbuf.is_empty() {
                match head::parse_request(&self.inbuf, &self.peer_ip, &mut self.head) {
                    Ok(Some(r)) => {
                        self.inbuf.advance(r.len);
                        return Ok(Some(r));
                    }
                    Ok(None) => {}
                    Err(why) => {
                        self.reject(why).await;
                        self.linger().await;
                        return Ok(None);
                    }
                }
                head_by.get_or_insert_with(|| Instant::now() + limits.head);
            }
            let stopped = self.life.is_stopped();
            let started = !self.inbuf.is_empty();
            let until = match head_by {
                Some(by) if !started && stopped => by.min(idle_since + FIRST_REQUEST_WHEN_STOPPING),
                Some(by) => by,
                None if stopped => idle_since + limits.drain_idle.min(KEEPALIVE_IDLE),
                None => idle_since + KEEPALIVE_IDLE,
            };
            let left = until.saturating_duration_since(Instant::now());
            let read = if stopped || started {
                body::read_some(&mut self.client, &mut self.inbuf, left).await
            } else {
                // Waiting between requests: a stop changes how long to wait.
                tokio::select! {
                    r = body::read_some(&mut self.client, &mut self.inbuf, left) => r,
                    _ = self.life.stopped() => continue,
                }
            };
            match read {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !self.inbuf.is_empty() => {
                    self.local(
                        408,
                        "Request Timeout",
                        "the request head did not arrive in time",
                        true,
                    )
                    .await;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut && stopped => {
                    // Last call: a request that came just now is still served.
                    if matches!(self.client.try_read_buf(&mut self.inbuf), Ok(n) if n > 0) {
                        continue;
                    }
                    self.open.ended(DrainEnd::IdleGrace);
                    self.linger().await;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Close the sending side, then read and drop what the client still sends, up to
    /// [`LINGER_BYTES`] or for [`LINGER_FOR`].
    pub(super) async fn linger(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = self.client.shutdown().await;
        let until = tokio::time::Instant::now() + LINGER_FOR;
        let mut drained = 0;
        let mut scratch = [0u8; 16 * 1024];
        while drained < LINGER_BYTES {
            match tokio::time::timeout_at(until, self.client.read(&mut scratch)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }

    /// Answer a request refused before any backend saw it, then close.
    pub(super) async fn reject(&mut self, why: Reject) {
        let (status, reason, text) = why.status();
        tracing::debug!(peer = %self.peer_ip, status, reason = text, "Request refused");
        // Counted as a request, not as an error of the proxy or its backends.
        self.port.observe(Duration::ZERO, false);
        self.local(status, reason, text, true).await;
    }

    /// Write a short plain-text response made here.
    pub(super) async fn local(&mut self, status: u16, reason: &str, text: &str, close: bool) {
        self.local_with(status, reason, text, close, "").await;
    }

    /// [`Conn::local`] with `extra` header lines (each ending in CRLF). A stopping proxy closes
    /// the connection after it unless another request has already arrived.
    pub(super) async fn local_with(
        &mut self,
        status: u16,
        reason: &str,
        text: &str,
        close: bool,
        extra: &str,
    ) {
        use std::io::Write as _;
        let close = close || (self.life.is_stopped() && self.inbuf.is_empty());
        self.said_close = close;
        self.out.clear();
        let _ = write!(
            self.out,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{extra}{}\r\n",
            status.to_string().len() + reason.len() + text.len() + 4,
            if close { "Connection: close\r\n" } else { "" },
        );
        if !self.head_only {
            let _ = writeln!(self.out, "{status} {reason}: {text}");
        }
        let _ = body::write_all(&mut self.client, &self.out, BODY_IDLE).await;
    }
}
