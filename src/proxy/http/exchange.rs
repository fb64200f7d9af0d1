//! One exchange with a backend: the request sent, interim and final response heads read, the
//! body relayed, or a tunnel after `101 Switching Protocols`.

use super::*;

impl Conn {
    /// Send the head and body on `up` and read the response head (interim responses handled).
    /// On success the response head for the client is in `out` and its body starts in `upbuf`.
    pub(super) async fn exchange(
        &mut self,
        up: &mut TcpStream,
        req: &Request,
        body_taken: &mut bool,
        continued: &mut bool,
    ) -> Result<head::Response, Failure> {
        // A body already here goes in the same write as the head.
        // It stays in `inbuf` until the response comes, so a retry can send it again.
        let mut body_done = req.body == Framing::Empty;
        let mut combined = 0;
        if let Framing::Length(n) = req.body {
            if self.inbuf.len() as u64 >= n {
                combined = n as usize;
                self.head.extend_from_slice(&self.inbuf[..combined]);
                body_done = true;
            }
        }
        if let Err(e) = body::write_all(up, &self.head, BODY_IDLE).await {
            return Err(stale_or(e));
        }
        if !body_done {
            if req.expect_continue && !*continued && self.inbuf.is_empty() {
                *continued = true;
                body::write_all(&mut self.client, b"HTTP/1.1 100 Continue\r\n\r\n", BODY_IDLE)
                    .await
                    .map_err(Failure::Client)?;
            }
            *body_taken = true;
            let pace = Pace::floor(BODY_IDLE, self.port.timeouts.body_grace, BODY_MIN_RATE);
            match body::copy(&mut self.client, &mut self.inbuf, up, req.body, false, pace).await {
                Ok(_) => {}
                Err(BodyError::Read(e)) => return Err(Failure::Client(e)),
                Err(BodyError::Write(e)) => {
                    // The backend may have answered before taking the whole body (413, 401) and
                    // closed: that answer goes to the client, whose connection then closes.
                    let soon = tokio::time::Instant::now() + EARLY_ANSWER_WAIT;
                    return match self.response_head(up, req, soon, false).await {
                        Ok(mut r) => {
                            r.reusable = false;
                            self.linger = true;
                            Ok(r)
                        }
                        Err(_) => Err(Failure::Unanswered(e)),
                    };
                }
            }
        }
        let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
        self.body_in_inbuf = combined;
        let r = self.response_head(up, req, deadline, true).await;
        self.body_in_inbuf = 0;
        let r = r?;
        self.inbuf.advance(combined);
        Ok(r)
    }

    /// Read the backend's response head (passing interim responses on) until `deadline`. With
    /// `keep_alive` false the client connection is closed after the response.
    pub(super) async fn response_head(
        &mut self,
        up: &mut TcpStream,
        req: &Request,
        deadline: tokio::time::Instant,
        keep_alive: bool,
    ) -> Result<head::Response, Failure> {
        loop {
            let client = ForClient {
                head_request: req.method == Method::Head,
                http10: req.http10,
                // A stopping proxy says so in the last response of each connection.
                // unless the client's next request has already arrived (pipelined).
                keep_alive: keep_alive
                    && req.keep_alive
                    && (!self.life.is_stopped() || self.inbuf.len() > self.body_in_inbuf),
                upgrade: req.upgrade,
            };
            match head::parse_response(&self.upbuf, client, &mut self.out) {
                // A 101 is final (tunnel); one the client did not ask for was refused by the parser.
                Ok(Some(r)) if (100..200).contains(&r.status) && r.status != 101 => {
                    // Interim: 100 is answered here already; others go to HTTP/1.1 clients.
                    self.upbuf.advance(r.len);
                    if r.status != 100 && !req.http10 {
                        body::write_all(&mut self.client, &self.out, BODY_IDLE)
                            .await
                            .map_err(Failure::Client)?;
                    }
                    continue;
                }
                Ok(Some(r)) => {
                    self.upbuf.advance(r.len);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(why) => return Err(Failure::Malformed(why)),
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match body::read_some(up, &mut self.upbuf, left).await {
                Ok(0) if self.upbuf.is_empty() => return Err(Failure::Stale),
                Ok(0) => {
                    return Err(Failure::Malformed(
                        "the backend closed in the middle of the response head",
                    ))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(Failure::Timeout),
                Err(e) if self.upbuf.is_empty() => return Err(stale_or(e)),
                Err(e) => return Err(Failure::Unanswered(e)),
            }
        }
    }

    /// Send the response head and body to the client; keep the backend connection when it can
    /// serve another request.
    pub(super) async fn relay(
        &mut self,
        mut up: TcpStream,
        resp: head::Response,
        req: &Request,
        backend: &Backend,
    ) -> Next {
        if resp.status == 101 && req.upgrade {
            return self.tunnel(up, backend).await;
        }
        // A body already here goes in the same write as the head.
        let mut body_done = resp.body == Framing::Empty;
        if let Framing::Length(n) = resp.body {
            if self.upbuf.len() as u64 >= n {
                self.out.extend_from_slice(&self.upbuf[..n as usize]);
                self.upbuf.advance(n as usize);
                body_done = true;
            }
        }
        if let Err(e) = body::write_all(&mut self.client, &self.out, BODY_IDLE).await {
            tracing::debug!(peer = %self.peer_ip, error = %e, "Client went away before the response");
            return Next::Close;
        }
        if !body_done {
            let unchunk = req.http10 && resp.body == Framing::Chunked;
            match body::copy(
                &mut up,
                &mut self.upbuf,
                &mut self.client,
                resp.body,
                unchunk,
                Pace::idle(BODY_IDLE),
            )
            .await
            {
                Ok(_) => {}
                Err(BodyError::Read(e)) => {
                    backend.error();
                    tracing::warn!(proxy_port = self.port.spec.listen.port(), backend = %backend.addr, error = %e, "Backend failed in the middle of a response body");
                    return Next::Close;
                }
                Err(BodyError::Write(e)) => {
                    tracing::debug!(peer = %self.peer_ip, error = %e, "Client went away during the response");
                    return Next::Close;
                }
            }
        }
        if resp.reusable && self.upbuf.is_empty() {
            backend.conns.put(up);
        }
        self.upbuf.clear();
        if resp.close_client {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// After `101`: bytes both ways until either side closes (counted in flight meanwhile).
    pub(super) async fn tunnel(&mut self, mut up: TcpStream, backend: &Backend) -> Next {
        let result = async {
            body::write_all(&mut self.client, &self.out, BODY_IDLE).await?;
            if !self.upbuf.is_empty() {
                body::write_all(&mut self.client, &self.upbuf, BODY_IDLE).await?;
                self.upbuf.clear();
            }
            if !self.inbuf.is_empty() {
                body::write_all(&mut up, &self.inbuf, BODY_IDLE).await?;
                self.inbuf.clear();
            }
            crate::proxy::copy::both_ways(&mut self.client, &mut up, self.tunnel_idle).await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(backend = %backend.addr, error = %e, "Tunnel ended with an error");
        }
        Next::Close
    }
}
