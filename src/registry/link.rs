//! Paging by `Link` headers (RFC 8288), shared by the GitHub and OCI registry clients.

use reqwest::header::{HeaderMap, LINK};
use reqwest::Url;

/// True when `a` and `b` have the same scheme, host and port: where credentials may follow.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The `rel="next"` target among the `Link` headers, resolved against the page URL.
pub fn next_link(headers: &HeaderMap, page: &Url) -> Option<Url> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim().strip_prefix('<')?.strip_suffix('>')?;
            let is_next = pieces.any(|p| {
                let p = p.trim();
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                page.join(target).ok()
            } else {
                None
            }
        })
}
