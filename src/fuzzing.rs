//! Entry points for the fuzz targets in `fuzz/`: thin wrappers that feed arbitrary bytes to the
//! parsers dewy runs on input from the network, archives and configuration. Not a stable API.

pub use http_proxy::{
    http_chunked, http_connection, http_request_head, http_response_head, Accepted, Body, Decoded, ForClient,
    Response,
};

mod http_proxy;

pub mod archives;
pub mod config_keys;

/// Version tags as a registry lists them or a D-Bus caller sends them: lines of text, each
/// parsed as SemVer; whatever is accepted passes the text rules, and the order is antisymmetric.
pub fn version(data: &[u8]) {
    use crate::registry::version::{check_text, Selector, Version, MAX_LEN};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let selector = Selector::default();
    let mut parsed = Vec::new();
    for line in text.split('\n') {
        let validated = selector.validate(line);
        let plain = Version::parse(line);
        assert_eq!(validated.is_ok(), plain.is_some(), "{line:?}");
        if let Ok(v) = validated {
            assert!(line.len() <= MAX_LEN && check_text(line).is_ok(), "{line:?}");
            assert_eq!(v.raw(), line);
            let _ = (v.is_prerelease(), v.build());
            parsed.push(v);
        } else {
            let err = validated.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
    }
    check_order(&parsed);
    let _ = selector.newest(text.split('\n').map(|t| (t, ())));
}

/// A CalVer format (first line) and tags (the other lines): the format parser never panics,
/// accepted tags pass the text rules, and precedence is a consistent order.
pub fn calver(data: &[u8]) {
    use crate::registry::calver::Format;
    use crate::registry::version::{check_text, Selector};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let Some(format) = lines.next().and_then(|f| Format::parse(f).ok()) else {
        return;
    };
    let selector = Selector {
        calver: Some(format.clone()),
        ..Selector::default()
    };
    let mut parsed = Vec::new();
    for tag in lines {
        let raw = format.parse_tag(tag);
        match selector.validate(tag) {
            Ok(v) => {
                assert!(check_text(tag).is_ok(), "{tag:?}");
                assert!(raw.is_some(), "{tag:?}");
                parsed.push(v);
            }
            Err(_) => assert!(raw.is_none() || check_text(tag).is_err(), "{tag:?}"),
        }
    }
    check_order(&parsed);
}

/// A gRPC registry's `Current` answer as it comes off the wire (protobuf; the first byte picks
/// the selector: bit 0 pre-releases, bit 1 slot `blue`, bit 2 CalVer `YYYY.0M.MICRO`). An answer
/// accepted names a release of the selector's grammar, slot and an artifact URL dewy downloads
/// from, and the release's own URL is accepted again as the same; no message carries a control
/// character from the answer.
pub fn grpc_answer(data: &[u8]) {
    use crate::registry::calver::Format;
    use crate::registry::grpc::{check_answer, proto};
    use crate::registry::version::Selector;
    use prost::Message;
    let Some((&flags, wire)) = data.split_first() else {
        return;
    };
    let Ok(answer) = proto::CurrentResponse::decode(wire) else {
        return;
    };
    let selector = Selector {
        prerelease: flags & 1 != 0,
        slot: (flags & 2 != 0).then(|| "blue".to_string()),
        calver: (flags & 4 != 0).then(|| Format::parse("YYYY.0M.MICRO").expect("a CalVer format")),
    };
    let server = "gRPC registry fuzz:443 (TLS)";
    let (release, url) = match check_answer(&selector, server, &answer) {
        Ok(r) => r,
        Err(e) => {
            let said = format!("{:#}", anyhow::Error::from(e));
            assert!(!said.chars().any(char::is_control), "{said:?}");
            return;
        }
    };
    assert_eq!(release.version, answer.tag);
    let version = selector
        .validate(&release.version)
        .unwrap_or_else(|e| panic!("{:?} accepted: {e}", release.version));
    if let Some(slot) = &selector.slot {
        assert_eq!(version.build(), slot);
    }
    assert!(answer.id.len() <= 1024);
    assert_eq!(release.artifact_url, url.as_str());
    assert!(
        matches!(url.scheme(), "http" | "https" | "s3" | "gs" | "ghr")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.username().is_empty()
            && url.password().is_none(),
        "{url}"
    );
    let name = &release.artifact;
    assert!(
        !name.is_empty() && name != "." && name != ".." && !name.chars().any(|c| c == '/' || c.is_control()),
        "{name:?}"
    );
    assert_eq!(
        release.published_at,
        answer.created_at.as_ref().and_then(proto::to_utc)
    );
    // The URL as kept (it may be longer than as sent: parsing percent-encodes).
    if url.as_str().len() <= 4096 {
        let again = proto::CurrentResponse {
            artifact_url: release.artifact_url.clone(),
            ..answer
        };
        let (r2, url2) = check_answer(&selector, server, &again)
            .unwrap_or_else(|e| panic!("{url} is refused when sent back: {e}"));
        assert_eq!((&r2.artifact, &url2), (&release.artifact, &url));
    }
}

/// Antisymmetry, reflexivity and transitivity of version precedence over every pair/triple.
fn check_order(versions: &[crate::registry::version::Version]) {
    let n = versions.len().min(12);
    for a in &versions[..n] {
        assert_eq!(a.cmp(a), std::cmp::Ordering::Equal);
        for b in &versions[..n] {
            assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} vs {b}");
            for c in &versions[..n] {
                if a <= b && b <= c {
                    assert!(a <= c, "{a} <= {b} <= {c}");
                }
            }
        }
    }
}

/// Config loader: TOML text of one app's file → validated settings, printed back the way
/// `dewy config check` prints them. Must refuse bad input with an error, never panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/etc/dewy/app.toml");
    if let Ok(settings) = crate::config::from_text("app", path, text) {
        let _ = toml::to_string(&settings);
    }
}

#[cfg(test)]
mod tests {
    /// The `config` target's seed corpus, cut at every byte and with single bytes replaced by
    /// characters that matter to TOML and to dewy's values: no panic (the fuzzer goes further).
    #[test]
    fn config_seeds_and_their_simple_mutations_do_not_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config");
        let mut seeds = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/config") {
            let seed = std::fs::read(entry.expect("corpus entry").path()).expect("seed");
            seeds += 1;
            for cut in 0..=seed.len() {
                super::config(&seed[..cut]);
            }
            for i in 0..seed.len() {
                for b in *b"9\"=[,\n" {
                    let mut m = seed.clone();
                    m[i] = b;
                    super::config(&m);
                }
            }
        }
        assert!(seeds >= 4, "{seeds} seeds in {}", dir.display());
    }

    /// The seed corpora of the config-key and gRPC answer targets hold the targets' properties
    /// (the fuzzer checks them on what it derives from the seeds).
    #[test]
    fn config_key_and_grpc_answer_seeds_hold() {
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 4] = [
            ("fleet_lock", super::config_keys::fleet_lock),
            ("window", super::config_keys::window),
            ("app_properties", super::config_keys::app_properties),
            ("grpc_answer", super::grpc_answer),
        ];
        for (target, run) in targets {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus")
                .join(target);
            let mut seeds = 0;
            for entry in std::fs::read_dir(&dir).expect("a seed corpus") {
                let path = entry.expect("corpus entry").path();
                run(&std::fs::read(&path).expect("seed"));
                seeds += 1;
            }
            assert!(seeds >= 4, "{seeds} seeds in {}", dir.display());
        }
    }
}
