//! HTTP serving of the GitHub stand-in: the API routes and the CDN.

use super::*;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LINK, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const DOCS: &str = "https://docs.github.com/rest";

/// Which listener a connection came to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Api,
    Cdn,
    Uploads,
}

/// Largest request body read (uploads included).
const MAX_BODY: usize = 1 << 20;

pub async fn serve(listener: tokio::net::TcpListener, state: Arc<Mutex<State>>, host: Host) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => {
                            return Ok::<_, Infallible>(error(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "Request body too large",
                            ))
                        }
                    };
                    let req = Request::from_parts(parts, body);
                    let resp = match host {
                        Host::Cdn => cdn_route(&state, &req),
                        Host::Api => api_route(&state, &req),
                        Host::Uploads => app::uploads_route(&state, &req),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(conn), svc)
                .await;
        });
    }
}

pub(super) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("JSON");
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"message": message, "documentation_url": DOCS, "status": status.as_u16().to_string()}),
    )
}

pub(super) fn header(req: &Request<Bytes>, name: hyper::header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn query(req: &Request<Bytes>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}

pub(super) fn decode(seg: &str) -> String {
    let bytes = seg.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn add_rate_headers(st: &State, resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    let mut put = |k: &'static str, v: String| {
        h.insert(k, HeaderValue::from_str(&v).expect("header"));
    };
    let exhausted = st.exhausted_until.is_some();
    put("x-ratelimit-limit", st.rate_limit.to_string());
    put(
        "x-ratelimit-remaining",
        if exhausted { 0 } else { st.rate_remaining }.to_string(),
    );
    put(
        "x-ratelimit-reset",
        st.exhausted_until.unwrap_or(st.rate_reset).to_string(),
    );
    put(
        "x-ratelimit-used",
        (st.rate_limit - st.rate_remaining).to_string(),
    );
    put("x-ratelimit-resource", "core".to_string());
    put("x-github-api-version-selected", "2022-11-28".to_string());
    put("x-github-request-id", format!("FAKE:{:X}", st.api_requests));
}

fn api_route(state: &Mutex<State>, req: &Request<Bytes>) -> Response<Body> {
    let mut st = lock(state);
    st.api_requests += 1;
    if let Some(until) = st.exhausted_until {
        if epoch_now() >= until {
            st.exhausted_until = None;
        }
    }
    let mut resp = api_answer(&mut st, req);
    if resp.status() != StatusCode::NOT_MODIFIED && st.exhausted_until.is_none() {
        st.rate_remaining = st.rate_remaining.saturating_sub(1);
    }
    add_rate_headers(&st, &mut resp);
    resp
}

fn api_answer(st: &mut State, req: &Request<Bytes>) -> Response<Body> {
    let segs: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(decode)
        .collect();
    if let ["app", "installations", id, "access_tokens"] =
        segs.iter().map(String::as_str).collect::<Vec<_>>().as_slice()
    {
        return app::access_tokens(st, req, id);
    }
    if let Some(resp) = refusal(st, req) {
        return resp;
    }
    if st.exhausted_until.is_some() {
        return error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)",
        );
    }
    if req.method() != hyper::Method::GET {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["repos", o, r, "releases"] => match st.find_repo(o, r) {
            Some(i) => list(st, i, req),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        },
        ["repositories", id, "releases"] => match st.repos.iter().position(|r| r.id.to_string() == *id) {
            Some(i) => list(st, i, req),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        },
        ["repos", o, r, "releases", "tags", tag] => {
            let Some(i) = st.find_repo(o, r) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let repo = &st.repos[i];
            match repo.releases.iter().find(|x| x.tag == *tag && !x.draft) {
                Some(rel) => json_response(StatusCode::OK, &st.release_json(repo, rel)),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        ["repos", o, r, "releases", "assets", id] => {
            let Some(i) = st.find_repo(o, r) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            asset(st, i, id, req)
        }
        ["repos", o, r, "releases", id] => {
            let Some(i) = st.find_repo(o, r) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let repo = &st.repos[i];
            match repo.releases.iter().find(|x| x.id.to_string() == *id) {
                Some(rel) => json_response(StatusCode::OK, &st.release_json(repo, rel)),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Check `Authorization` against the configured token, or the App's live installation tokens:
/// the 401 answer when it does not pass.
pub(super) fn refusal(st: &mut State, req: &Request<Bytes>) -> Option<Response<Body>> {
    let given = header(req, AUTHORIZATION).map(str::to_string);
    let given = given.as_deref();
    if st.app.is_some() {
        return app::installation_token_refusal(st, given);
    }
    if let Some(token) = &st.token {
        let ok = given.is_some_and(|v| v == format!("Bearer {token}") || v == format!("token {token}"));
        if !ok {
            return Some(error(StatusCode::UNAUTHORIZED, "Bad credentials"));
        }
    }
    None
}

fn etag_matches(if_none_match: Option<&str>, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == "*" || strip(t) == strip(etag)))
}

fn list(st: &mut State, i: usize, req: &Request<Bytes>) -> Response<Body> {
    let per_page = query(req, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, st.max_per_page);
    let page = query(req, "page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let repo = &st.repos[i];
    let total = repo.releases.len();
    let last = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = repo
        .releases
        .iter()
        .rev()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|rel| st.release_json(repo, rel))
        .collect();
    let body = serde_json::to_vec(&Value::Array(items)).expect("JSON");
    let etag = format!("W/\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    let link = |n: usize, rel: &str| {
        format!(
            "<{}/repositories/{}/releases?per_page={per_page}&page={n}>; rel=\"{rel}\"",
            st.api, repo.id
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
    }
    if etag_matches(header(req, IF_NONE_MATCH), &etag) {
        st.list_304 += 1;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp.headers_mut()
            .insert(ETAG, HeaderValue::from_str(&etag).expect("etag"));
        return resp;
    }
    st.list_200 += 1;
    let mut resp = Response::new(full(body));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(ETAG, HeaderValue::from_str(&etag).expect("etag"));
    if !links.is_empty() {
        h.insert(LINK, HeaderValue::from_str(&links.join(", ")).expect("link"));
    }
    resp
}

fn asset(st: &State, i: usize, id: &str, req: &Request<Bytes>) -> Response<Body> {
    let repo = &st.repos[i];
    let found = repo
        .releases
        .iter()
        .flat_map(|rel| rel.assets.iter().map(move |a| (rel, a)))
        .find(|(_, a)| a.id.to_string() == id);
    let Some((rel, a)) = found else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let wants_bytes = header(req, ACCEPT).is_some_and(|v| v.contains("application/octet-stream"));
    if !wants_bytes {
        return json_response(StatusCode::OK, &st.asset_json(repo, rel, a));
    }
    let mut location = url::Url::parse(&st.cdn).expect("CDN URL");
    location
        .path_segments_mut()
        .expect("CDN base")
        .extend(["download", &a.id.to_string(), &a.name]);
    location
        .query_pairs_mut()
        .append_pair("X-Amz-Algorithm", "AWS4-HMAC-SHA256")
        .append_pair("X-Amz-Expires", "300")
        .append_pair("X-Amz-Signature", &format!("{:016x}", fastrand::u64(..)));
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::FOUND;
    resp.headers_mut().insert(
        LOCATION,
        HeaderValue::from_str(location.as_str()).expect("location"),
    );
    resp
}

fn cdn_route(state: &Mutex<State>, req: &Request<Bytes>) -> Response<Body> {
    let mut st = lock(state);
    st.cdn_requests += 1;
    if req.headers().contains_key(AUTHORIZATION) {
        st.cdn_rejected += 1;
        let mut resp = Response::new(full(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>",
        ));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        return resp;
    }
    let segs: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let all = st.repos.iter().flat_map(|repo| {
        repo.releases
            .iter()
            .flat_map(move |rel| rel.assets.iter().map(move |a| (repo, rel, a)))
    });
    let body = match segs.as_slice() {
        ["download", id, _name] => all.clone().find(|(_, _, a)| a.id.to_string() == *id),
        [o, r, "releases", "download", tag, name] => all.clone().find(|(repo, rel, a)| {
            repo.owner.eq_ignore_ascii_case(o)
                && repo.name.eq_ignore_ascii_case(r)
                && rel.tag == *tag
                && a.name == *name
        }),
        _ => None,
    }
    .map(|(_, _, a)| a.body.clone());
    let Some(body) = body else {
        let mut resp = Response::new(full("Not Found"));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    };
    let len = body.len();
    let stall = st.cdn_stall;
    drop(st);
    let limit = stall.unwrap_or(u64::MAX).min(len);
    let mut sent = 0u64;
    let chunks = body.chunks().map_while(move |c| {
        if sent >= limit {
            return None;
        }
        let n = (limit - sent).min(c.len() as u64) as usize;
        sent += n as u64;
        Some(Ok::<_, std::io::Error>(Frame::data(c.slice(..n))))
    });
    let frames = stream::iter(chunks);
    let body: Body = if stall.is_some_and(|s| s < len) {
        BodyExt::boxed(StreamBody::new(frames.chain(stream::pending())))
    } else {
        BodyExt::boxed(StreamBody::new(frames))
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}
