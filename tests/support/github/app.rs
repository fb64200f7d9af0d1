//! GitHub App authentication and the uploads API of the GitHub stand-in: RS256 JWTs checked
//! like GitHub does (signature with the app's public key, `iss`, `iat`/`exp` bounds), expiring
//! installation tokens (401 "Bad credentials" once expired), and release-asset uploads.

use super::routes::{decode, error, header, json_response, query, refusal};
use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};

/// The app the fake stands in for.
#[derive(Debug)]
pub struct App {
    app_id: u64,
    installation_id: u64,
    public_key_der: Vec<u8>,
    token_life: Duration,
    /// (token, expiry in Unix milliseconds)
    pub issued: Vec<(String, u64)>,
    pub refusals: Vec<String>,
    pub expired_uses: u64,
}

impl App {
    pub fn new(app_id: u64, installation_id: u64, public_key_der: Vec<u8>, token_life: Duration) -> App {
        App {
            app_id,
            installation_id,
            public_key_der,
            token_life,
            issued: Vec::new(),
            refusals: Vec::new(),
            expired_uses: 0,
        }
    }
}

/// One upload as received.
#[derive(Debug, Clone)]
pub struct Upload {
    pub method: String,
    pub path: String,
    pub name: String,
    pub label: Option<String>,
    pub content_type: String,
    pub authorization: String,
    pub body: Bytes,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a JWT is refused, in GitHub's words: 401, or 404 for an app id that is not this app's.
fn check_jwt(app: &App, jwt: &str) -> Result<(), (StatusCode, String)> {
    check_claims(app, jwt).map_err(|why| match why.strip_prefix("404 ") {
        Some(w) => (StatusCode::NOT_FOUND, w.to_string()),
        None => (StatusCode::UNAUTHORIZED, why),
    })
}

fn check_claims(app: &App, jwt: &str) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [head, claims, sig] = parts.as_slice() else {
        return Err("A JSON web token could not be decoded".into());
    };
    let decode_json = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let (Some(head), Some(claims), Ok(sig)) = (
        decode_json(head),
        decode_json(claims),
        URL_SAFE_NO_PAD.decode(sig),
    ) else {
        return Err("A JSON web token could not be decoded".into());
    };
    if head["alg"] != "RS256" {
        return Err("A JSON web token could not be decoded".into());
    }
    // GitHub finds the app by `iss`, then checks the signature with that app's key.
    let iss = match &claims["iss"] {
        Value::String(s) => s.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    match iss {
        None => return Err("'Issuer' claim ('iss') must be an Integer".into()),
        Some(id) if id != app.app_id => return Err("404 Integration not found".into()),
        Some(_) => {}
    }
    let signed = &jwt[..jwt.rfind('.').unwrap_or(0)];
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &app.public_key_der,
    );
    if key.verify(signed.as_bytes(), &sig).is_err() {
        return Err("A JSON web token could not be decoded".into());
    }
    let now = (now_ms() / 1000) as i64;
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err("Missing 'issued at' or 'expiration time' claim".into());
    };
    if iat > now + 60 {
        return Err("'Issued at' claim ('iat') must be an Integer representing a time in the past.".into());
    }
    if exp <= now {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.".into());
    }
    if exp - iat > 660 || exp > now + 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future".into());
    }
    Ok(())
}

/// `POST /app/installations/{id}/access_tokens`.
pub(super) fn access_tokens(st: &mut State, req: &Request<Bytes>, id: &str) -> Response<Body> {
    let Some(app) = st.app.as_mut() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if req.method() != hyper::Method::POST {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let jwt = header(req, AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if let Err((status, why)) = check_jwt(app, jwt) {
        app.refusals.push(why.clone());
        return error(status, &why);
    }
    if id != app.installation_id.to_string() {
        app.refusals.push(format!("no installation {id}"));
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let token = format!("ghs_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let expires_ms = now_ms() + app.token_life.as_millis() as u64;
    app.issued.push((token.clone(), expires_ms));
    let expires_at = DateTime::<Utc>::from_timestamp_millis(expires_ms as i64).expect("time");
    json_response(
        StatusCode::CREATED,
        &json!({
            "token": token,
            "expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "permissions": {"contents": "write", "metadata": "read"},
            "repository_selection": "selected",
        }),
    )
}

/// App mode: the request must carry a live installation token.
pub(super) fn installation_token_refusal(st: &mut State, given: Option<&str>) -> Option<Response<Body>> {
    let app = st.app.as_mut().expect("app mode");
    let token = given
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("token ")))
        .unwrap_or("");
    match app.issued.iter().find(|(t, _)| t == token) {
        Some((_, until)) if *until > now_ms() => None,
        Some(_) => {
            app.expired_uses += 1;
            Some(error(StatusCode::UNAUTHORIZED, "Bad credentials"))
        }
        None => Some(error(StatusCode::UNAUTHORIZED, "Bad credentials")),
    }
}

/// The uploads host: `POST /repos/{o}/{r}/releases/{id}/assets?name=…[&label=…]`.
pub(super) fn uploads_route(state: &Mutex<State>, req: &Request<Bytes>) -> Response<Body> {
    let mut st = lock(state);
    if let Some(resp) = refusal(&mut st, req) {
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
    let ["repos", o, r, "releases", id, "assets"] = segs.as_slice() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if req.method() != hyper::Method::POST {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let Some(ctype) = header(req, CONTENT_TYPE).map(str::to_string) else {
        return error(StatusCode::BAD_REQUEST, "Content-Type header is required");
    };
    let Some(name) = query(req, "name")
        .map(|n| decode(&n.replace('+', " ")))
        .filter(|n| !n.is_empty())
    else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let Some(ri) = st.find_repo(o, r) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let aid = st.id();
    let Some(rel_i) = st.repos[ri].releases.iter().position(|x| x.id.to_string() == *id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if st.repos[ri].releases[rel_i].assets.iter().any(|a| a.name == name) {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"message": "Validation Failed", "errors": [{"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}], "documentation_url": "https://docs.github.com/rest/releases/assets#upload-a-release-asset", "status": "422"}),
        );
    }
    st.uploaded.push(Upload {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        name: name.clone(),
        label: query(req, "label"),
        content_type: ctype,
        authorization: header(req, AUTHORIZATION).unwrap_or("").to_string(),
        body: req.body().clone(),
    });
    st.repos[ri].releases[rel_i].assets.push(Asset {
        id: aid,
        name,
        body: AssetBody::Bytes(req.body().clone()),
        created_at: Utc::now(),
    });
    let st = &*st;
    let repo = &st.repos[ri];
    let rel = &repo.releases[rel_i];
    let asset = rel.assets.last().expect("asset");
    json_response(StatusCode::CREATED, &st.asset_json(repo, rel, asset))
}
