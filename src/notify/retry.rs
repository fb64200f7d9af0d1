//! Which send failures are worth another try, and how long to wait before it: exponential
//! backoff, or the receiver's `Retry-After` (seconds or an HTTP date), both capped.

use std::time::{Duration, SystemTime};

/// Tries per message, the first included.
pub const MAX_ATTEMPTS: u32 = 8;
/// The wait after the first failed try; it doubles after each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two tries computed by the backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest wait a receiver's `Retry-After` can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A failure that may pass: the receiver was unreachable, timed out, was busy (5xx) or asked to
/// slow down (429). Any other failure is final for the message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Transient {
    pub message: String,
    /// What the receiver asked for in `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// A transient failure as an error.
pub(crate) fn transient(message: impl Into<String>, retry_after: Option<Duration>) -> anyhow::Error {
    anyhow::Error::new(Transient {
        message: message.into(),
        retry_after,
    })
}

/// How long to wait before try `attempt + 1` after try `attempt` (1-based) failed with `error`;
/// `None` when the failure is final or the tries are used up.
pub fn delay(error: &anyhow::Error, attempt: u32) -> Option<Duration> {
    let t = error.chain().find_map(|c| c.downcast_ref::<Transient>())?;
    if attempt >= MAX_ATTEMPTS {
        return None;
    }
    Some(match t.retry_after {
        Some(asked) => asked.min(MAX_RETRY_AFTER),
        None => backoff(attempt),
    })
}

/// `FIRST_BACKOFF`, doubled for each try after the first, at most `MAX_BACKOFF`.
fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .checked_mul(1 << doublings)
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

/// Turn an HTTP answer that is not a success into an error: 408, 425, 429 and 5xx are transient
/// (with their `Retry-After`), other statuses final.
pub(crate) fn http_status(resp: &reqwest::Response, what: &str) -> anyhow::Result<()> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let message = format!("{what} answered {status}");
    let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429);
    if !retryable {
        anyhow::bail!(message);
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::registry::github::status::parse_retry_after(v.trim(), SystemTime::now()));
    Err(transient(message, retry_after))
}

/// A request that could not be sent or answered (refused, reset, timed out) may work later; a
/// request that could not be built never will.
pub(crate) fn http_error(e: reqwest::Error, what: &str) -> anyhow::Error {
    if e.is_builder() {
        return anyhow::Error::new(e).context(format!("{what}: building the request"));
    }
    transient(format!("{what}: {}", error_chain(&e)), None)
}

/// An error and its causes on one line (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried_with_growing_capped_waits() {
        let t = transient("down", None);
        let waits: Vec<Option<Duration>> = (1..=MAX_ATTEMPTS).map(|a| delay(&t, a)).collect();
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(
            waits,
            [
                secs(1),
                secs(2),
                secs(4),
                secs(8),
                secs(16),
                secs(32),
                secs(60),
                None
            ]
        );
        assert_eq!(delay(&anyhow::anyhow!("404 Not Found"), 1), None);
        // Under a context, still transient.
        assert_eq!(delay(&t.context("sending"), 1), secs(1));
        let asked = transient("429", Some(Duration::from_secs(7)));
        assert_eq!(delay(&asked, 3), secs(7));
        let greedy = transient("429", Some(Duration::from_secs(86400)));
        assert_eq!(delay(&greedy, 1), Some(MAX_RETRY_AFTER));
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
