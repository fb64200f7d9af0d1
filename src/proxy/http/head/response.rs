//! A backend's response head: parsed, its body framing decided from the status, the request
//! and the headers, and written for the client without hop-by-hop headers.

use super::*;

/// A backend's response head, rewritten for the client.
#[derive(Debug)]
pub struct Response {
    /// Bytes of the head in the backend's buffer.
    pub len: usize,
    pub status: u16,
    /// How the backend delimits the body.
    pub body: Framing,
    /// The backend keeps the connection open after this response.
    pub reusable: bool,
    /// The client connection must close after this response (close-delimited body, or a
    /// chunked body for an HTTP/1.0 client).
    pub close_client: bool,
}

/// What the client's request tells the response writer.
#[derive(Debug, Clone, Copy)]
pub struct ForClient {
    pub head_request: bool,
    pub http10: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

/// Parse the response at the front of `buf` and write the head for the client into `out`.
/// `Ok(None)`: incomplete. Errors name what was wrong (the client gets a 502).
pub fn parse_response(
    buf: &[u8],
    client: ForClient,
    out: &mut Vec<u8>,
) -> Result<Option<Response>, &'static str> {
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => return Err("the response head is too large"),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err("the response head is too large")
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed response head"),
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Err("malformed status line");
    };
    // RFC 9110 §15: three digits, the first 1 to 5. `000` would reach the client as `0`, which
    // no client parses.
    if !(100..=599).contains(&status) {
        return Err("a status code outside 100-599");
    }
    if status == 101 && !client.upgrade {
        // Not an interim response: the backend would go on in another protocol.
        return Err("a 101 Switching Protocols the client did not ask for");
    }
    let reason = resp.reason.unwrap_or("");
    let headers = resp.headers;
    let mut tokens = Tokens::new();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let mut upgrade_value: Option<&[u8]> = None;
    for h in headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("connection") {
            tokens.add_all(h.value);
        } else if n.eq_ignore_ascii_case("content-length") {
            let v = content_length(h.value).ok_or("bad Content-Length")?;
            if length.is_some_and(|l| l != v) {
                return Err("conflicting Content-Length headers");
            }
            length = Some(v);
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            chunked = ends_chunked(h.value);
        } else if n.eq_ignore_ascii_case("upgrade") {
            upgrade_value = Some(h.value);
        }
    }
    let informational = (100..200).contains(&status);
    let switching = status == 101 && client.upgrade;
    let no_body = client.head_request || informational || status == 204 || status == 304;
    let body = if no_body {
        Framing::Empty
    } else if te {
        // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); anything but a final
        // chunked is read until close.
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let reusable = !switching
        && body != Framing::UntilClose
        && if version == 0 {
            tokens.has(b"keep-alive")
        } else {
            !tokens.has(b"close")
        };
    let unchunk = body == Framing::Chunked && client.http10;
    let close_client = !client.keep_alive || body == Framing::UntilClose || unchunk;

    // Repeated equal lengths become one (RFC 9110 §8.6). A length the body no longer has is
    // dropped; for HEAD and 304 it describes the resource and stays; 1xx and 204 never carry one.
    let keep_length = if no_body {
        !informational && status != 204
    } else {
        !(te || unchunk)
    };
    out.clear();
    let _ = write!(out, "HTTP/1.1 {status} ");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers.iter() {
        let n = h.name;
        // `Connection` cannot remove the length: the client needs it to find the body's end.
        if hop_by_hop(n)
            || (named_by_connection(n, &tokens, headers) && !n.eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        // Written once, where the first copy was, whatever number of copies the backend sent.
        if n.eq_ignore_ascii_case("content-length") {
            if let Some(n) = length.take().filter(|_| keep_length) {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
            continue;
        }
        put(out, n.as_bytes(), h.value);
    }
    if body == Framing::Chunked && !unchunk {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if switching {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        if let Some(u) = upgrade_value {
            put(out, b"Upgrade", u);
        }
    } else if close_client && !informational {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client.http10 && !informational {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(Response {
        len,
        status,
        body,
        reusable,
        close_client,
    }))
}
