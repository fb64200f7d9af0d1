//! GitHub API answers that are not successes: rate limits (primary and secondary) and errors
//! carrying the API's `message`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};

use crate::registry::CheckError;

/// Most bytes of an error body worth reading.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The wait GitHub documents for a secondary rate limit without `Retry-After`.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The body of `resp`, refused once it passes `max` bytes (an answer is never trusted to be
/// small).
pub async fn read_limited(resp: Response, max: usize) -> anyhow::Result<Vec<u8>> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > max {
            anyhow::bail!("the answer is larger than {max} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Return the response when it succeeded, otherwise the matching [`CheckError`].
pub async fn check(resp: Response, what: &str) -> Result<Response, CheckError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers().clone();
    let message = error_message(resp).await;
    Err(classify(status, &headers, &message, what, SystemTime::now()))
}

/// The API's `message` field, or the start of the body when it is not JSON.
async fn error_message(resp: Response) -> String {
    let body = match read_limited(resp, MAX_ERROR_BODY).await {
        Ok(b) => b,
        Err(e) => return format!("(error body unreadable: {e:#})"),
    };
    let body = body.as_slice();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(msg) = value.get("message").and_then(|m| m.as_str()) {
            return msg.chars().filter(|c| !c.is_control()).take(300).collect();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    text.chars().take(200).collect()
}

/// Map a failed answer to a [`CheckError`].
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    what: &str,
    now: SystemTime,
) -> CheckError {
    if matches!(status.as_u16(), 403 | 429) {
        if let Some(retry_after) = rate_limit_wait(status, headers, message, now) {
            return CheckError::RateLimited { retry_after };
        }
    }
    let detail = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    CheckError::Other(anyhow!("GitHub API {what}: HTTP {status}{detail}"))
}

/// How long to wait when a 403/429 is a rate limit; `None` when it is not one.
fn rate_limit_wait(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
    };
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, now));
    if header("x-ratelimit-remaining").as_deref() == Some("0") {
        let reset = header("x-ratelimit-reset")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|epoch| {
                let at = UNIX_EPOCH + Duration::from_secs(epoch);
                at.duration_since(now).unwrap_or(Duration::ZERO)
            });
        return Some(at_least_one_second(
            reset.or(retry_after).unwrap_or(SECONDARY_LIMIT_WAIT),
        ));
    }
    if let Some(wait) = retry_after {
        return Some(at_least_one_second(wait));
    }
    let lower = message.to_ascii_lowercase();
    if status == StatusCode::TOO_MANY_REQUESTS || lower.contains("rate limit") {
        return Some(SECONDARY_LIMIT_WAIT);
    }
    None
}

fn at_least_one_second(d: Duration) -> Duration {
    d.max(Duration::from_secs(1))
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn wait(status: u16, h: &HeaderMap, msg: &str) -> Option<Duration> {
        match classify(StatusCode::from_u16(status).expect("status"), h, msg, "x", now()) {
            CheckError::RateLimited { retry_after } => Some(retry_after),
            _ => None,
        }
    }

    #[test]
    fn primary_limit_uses_reset() {
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000042"),
        ]);
        assert_eq!(
            wait(403, &h, "API rate limit exceeded"),
            Some(Duration::from_secs(42))
        );
        assert_eq!(wait(429, &h, ""), Some(Duration::from_secs(42)));
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let h = headers(&[("retry-after", "17")]);
        assert_eq!(wait(429, &h, ""), Some(Duration::from_secs(17)));
        let date = httpdate::fmt_http_date(now() + Duration::from_secs(90));
        let h = headers(&[("retry-after", &date)]);
        assert_eq!(wait(403, &h, ""), Some(Duration::from_secs(90)));
    }

    #[test]
    fn secondary_limit_without_headers() {
        let h = HeaderMap::new();
        let msg = "You have exceeded a secondary rate limit.";
        assert_eq!(wait(403, &h, msg), Some(SECONDARY_LIMIT_WAIT));
    }

    #[test]
    fn other_errors_carry_message() {
        let h = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(wait(403, &h, "Resource not accessible by integration"), None);
        let err = classify(StatusCode::UNAUTHORIZED, &h, "Bad credentials", "GET x", now());
        let text = err.to_string();
        assert!(text.contains("401") && text.contains("Bad credentials"), "{text}");
    }
}
