//! Which hosts the GitHub client may be redirected to or send its token to: the API's own
//! origin, github.com's asset CDN, and an Enterprise server's own host and subdomains.

use url::Url;

use crate::registry::link::same_origin;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// The asset CDN hosts of github.com: the asset API answers with a redirect to one of them.
const GITHUB_CDN_HOSTS: &[&str] = &[
    "objects.githubusercontent.com",
    "release-assets.githubusercontent.com",
];

/// Whether a request to the API at `base` may be redirected to `target`: the API's own origin;
/// for api.github.com its asset CDN over HTTPS; for another API host (GitHub Enterprise
/// Server) the same host on another port or one of its subdomains (`media.HOST` with subdomain
/// isolation), never from HTTPS down to HTTP.
pub fn may_follow(base: &Url, target: &Url) -> bool {
    if same_origin(base, target) {
        return true;
    }
    let (Some(base_host), Some(host)) = (base.host_str(), target.host_str()) else {
        return false;
    };
    if target.scheme() != "https" && (base.scheme() == "https" || target.scheme() != "http") {
        return false;
    }
    if base_host.eq_ignore_ascii_case("api.github.com") {
        return target.scheme() == "https" && GITHUB_CDN_HOSTS.iter().any(|h| host.eq_ignore_ascii_case(h));
    }
    let host = host.to_ascii_lowercase();
    let base_host = base_host.to_ascii_lowercase();
    host == base_host
        || host
            .strip_suffix(&base_host)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Whether the token may be sent to `upload` for the API at `base`: uploads.github.com over
/// HTTPS for api.github.com; otherwise what [`may_follow`] allows (the Enterprise server's own
/// host, its subdomains, another port of it).
pub fn may_upload(base: &Url, upload: &Url) -> bool {
    let dotcom = base
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case("api.github.com"));
    if dotcom {
        return upload.scheme() == "https"
            && upload.port().is_none()
            && upload
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case("uploads.github.com"));
    }
    may_follow(base, upload)
}

/// Follow at most [`MAX_REDIRECTS`] redirects, each to where [`may_follow`] allows.
pub fn redirect_policy(base: Url) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if may_follow(&base, attempt.url()) {
            attempt.follow()
        } else {
            let refused = format!(
                "redirect to {} is outside the GitHub API {base} and its asset CDN",
                attempt.url().origin().ascii_serialization()
            );
            attempt.error(refused)
        }
    })
}
