//! The proxy's request-head parser on arbitrary bytes: no panic, refusals are the documented
//! statuses, and an accepted head is consistent (its own bytes give the same result, one byte
//! less is incomplete, and the head sent upstream is accepted again with the same framing).
#![no_main]

use dewy::fuzzing::{http_request_head, Body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let accepted = match http_request_head(data) {
        Ok(Some(a)) => a,
        Ok(None) => {
            assert!(data.len() < 64 * 1024, "a head over 64 KiB is still awaited");
            return;
        }
        Err((status, _)) => {
            assert!(matches!(status, 400 | 405 | 431 | 501), "refused with {status}");
            return;
        }
    };
    assert!(accepted.len > 0 && accepted.len <= data.len());
    let again = http_request_head(&data[..accepted.len])
        .expect("the head alone is accepted")
        .expect("the head alone is complete");
    assert_eq!(again.upstream, accepted.upstream);
    assert!(
        matches!(http_request_head(&data[..accepted.len - 1]), Ok(None)),
        "a head missing its last byte is not incomplete"
    );
    assert!(accepted.upstream.ends_with(b"\r\n\r\n"));
    assert!(
        accepted.body != Body::UntilClose,
        "a request body cannot run until close"
    );
    // What the backend gets is a request the proxy itself would forward the same way.
    let upstream = http_request_head(&accepted.upstream)
        .unwrap_or_else(|e| {
            panic!(
                "the upstream head is refused ({e:?}): {:?}",
                String::from_utf8_lossy(&accepted.upstream)
            )
        })
        .expect("the upstream head is complete");
    assert_eq!(upstream.len, accepted.upstream.len());
    assert_eq!(upstream.body, accepted.body);
    assert_eq!(upstream.upgrade, accepted.upgrade);
    assert!(!upstream.http10);
});
