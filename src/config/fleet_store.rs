//! `fleet-store`, `fleet-wave`, `canary-hosts` and `soak`: where the hosts of a fleet record which
//! release each runs and which releases are bad (an etcd key prefix, or an S3 or GCS bucket
//! prefix), and this host's wave in the canary rollout, parsed once into [`FleetStore`].

use std::time::Duration;

use serde::Serialize;

use super::etcd_lock::EtcdLock;
use super::fleet_lock::{check_name, ser_url};
use super::shared_cache::Spec;
use super::ConfigError;
use crate::units::DurationValue;

/// The highest wave accepted.
pub const MAX_WAVE: u32 = 100;
/// The most `canary-hosts` accepted.
pub const MAX_CANARY_HOSTS: u32 = 1000;
/// `soak` when not set.
pub const DEFAULT_SOAK: Duration = Duration::from_secs(30 * 60);

/// The fleet store and this host's place in it.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStore {
    /// The URL as written, without its password.
    #[serde(rename = "fleet-store", serialize_with = "ser_url")]
    pub url: url::Url,
    /// Where the records are kept.
    #[serde(skip)]
    pub backend: StoreBackend,
    /// This host's id in the fleet (`fleet-id`; default `<hostname>-<app>`).
    #[serde(skip)]
    pub id: String,
    /// `fleet-wave`: 0 is the canary wave; a host of wave N deploys a release only after hosts
    /// of wave N−1 ran it. `None`: the host records and honours fleet-wide bad releases but
    /// waits for no wave.
    #[serde(rename = "fleet-wave", skip_serializing_if = "Option::is_none")]
    pub wave: Option<u32>,
    /// How many hosts of the wave before must have run a release for `soak`.
    #[serde(rename = "canary-hosts")]
    pub canary_hosts: u32,
    #[serde(serialize_with = "super::ser_duration")]
    pub soak: Duration,
}

/// Where a fleet store keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// An etcd key prefix (`etcd://…`; `slots` and `ttl` do not apply).
    Etcd(EtcdLock),
    /// An S3 or GCS bucket prefix (`s3://<region>/<bucket>/<prefix>`, `gs://<bucket>/<prefix>`,
    /// with `endpoint=`), written with conditional writes.
    Objects(Spec),
}

/// The keys as written in the file.
#[derive(Debug, Default, Clone, Copy)]
pub struct Keys<'a> {
    pub store: Option<&'a str>,
    pub id: Option<&'a str>,
    pub wave: Option<u32>,
    pub canary_hosts: Option<u32>,
    pub soak: Option<DurationValue>,
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

/// The settings from the keys; `None` without `fleet-store`.
pub fn parse(keys: Keys<'_>, app: &str) -> Result<Option<FleetStore>, ConfigError> {
    let Some(text) = keys.store.map(str::trim).filter(|u| !u.is_empty()) else {
        if keys.wave.is_some() || keys.canary_hosts.is_some() || keys.soak.is_some() {
            return Err(invalid(
                "fleet-wave, canary-hosts and soak need fleet-store (an etcd:// URL where the fleet records its releases)"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let shown = super::etcd_lock::redacted(text);
    let mut url = url::Url::parse(text)
        .map_err(|e| invalid(format!("fleet-store {}: {e}", crate::text::shown(&shown))))?;
    let backend = match url.scheme() {
        "etcd" | "etcds" => {
            if let Some((k, _)) = url
                .query_pairs()
                .find(|(k, _)| matches!(k.as_ref(), "slots" | "ttl"))
            {
                return Err(invalid(format!(
                    "fleet-store {}: {k}= is for fleet-lock; the store keeps records, not slots",
                    crate::text::shown(&shown)
                )));
            }
            let etcd = super::etcd_lock::parse_for("fleet-store", text, &url)?;
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            StoreBackend::Etcd(etcd)
        }
        "s3" | "gs" => {
            let spec = super::shared_cache::parse_url(text).map_err(|e| {
                invalid(format!(
                    "fleet-store {}: {e:#}",
                    crate::text::shown(&shown)
                ))
            })?;
            if spec.registry_ttl.is_some() {
                return Err(invalid(format!(
                    "fleet-store {}: registry-ttl= is for the shared cache (cache =)",
                    crate::text::shown(&shown)
                )));
            }
            StoreBackend::Objects(spec)
        }
        _ => {
            return Err(invalid(format!(
                "fleet-store {} must be an etcd:// or etcds:// URL with a key prefix (e.g. etcd://etcd.example.com:2379/dewy/web-fleet), or an s3:// or gs:// bucket prefix (e.g. s3://eu-west-1/example-dewy/web-fleet)",
                crate::text::shown(&shown)
            )))
        }
    };
    let id = match keys.id {
        Some(id) => id.to_string(),
        None => format!("{}-{app}", crate::host::name()),
    };
    check_name("fleet-id", &id)?;
    if let Some(w) = keys.wave.filter(|w| *w > MAX_WAVE) {
        return Err(invalid(format!("fleet-wave {w} must be from 0 to {MAX_WAVE}")));
    }
    let canary_hosts = keys.canary_hosts.unwrap_or(1);
    if !(1..=MAX_CANARY_HOSTS).contains(&canary_hosts) {
        return Err(invalid(format!(
            "canary-hosts {canary_hosts} must be from 1 to {MAX_CANARY_HOSTS}"
        )));
    }
    let soak = match keys.soak {
        Some(d) => super::ranges::SOAK.check(d.0).map_err(invalid)?,
        None => DEFAULT_SOAK,
    };
    Ok(Some(FleetStore {
        url,
        backend,
        id,
        wave: keys.wave,
        canary_hosts,
        soak,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(store: &str) -> Keys<'_> {
        Keys {
            store: Some(store),
            ..Keys::default()
        }
    }

    #[test]
    fn stores_are_read() {
        let s = parse(
            Keys {
                wave: Some(2),
                canary_hosts: Some(3),
                soak: Some(DurationValue(Duration::from_secs(600))),
                id: Some("web-7"),
                ..keys("etcd://u:pw@10.0.0.1:23790/dewy/web-fleet")
            },
            "web",
        )
        .unwrap()
        .unwrap();
        let StoreBackend::Etcd(etcd) = &s.backend else {
            panic!("{:?}", s.backend)
        };
        assert_eq!(etcd.endpoint, "http://10.0.0.1:23790");
        assert_eq!(etcd.prefix, "/dewy/web-fleet/");
        assert_eq!(etcd.user, Some(("u".into(), "pw".into())));
        assert_eq!(s.url.as_str(), "etcd://u:***@10.0.0.1:23790/dewy/web-fleet");
        assert_eq!(
            (s.wave, s.canary_hosts, s.soak),
            (Some(2), 3, Duration::from_secs(600))
        );
        assert_eq!(s.id, "web-7");
        let d = parse(keys("etcds://etcd.example.com/f"), "web").unwrap().unwrap();
        assert_eq!((d.wave, d.canary_hosts, d.soak), (None, 1, DEFAULT_SOAK));
        assert!(matches!(&d.backend, StoreBackend::Etcd(e) if e.tls) && d.id.ends_with("-web"));
        let o = parse(
            keys("s3://eu-west-1/bucket/web/fleet?endpoint=http://127.0.0.1:9000"),
            "web",
        )
        .unwrap()
        .unwrap();
        let StoreBackend::Objects(spec) = &o.backend else {
            panic!("{:?}", o.backend)
        };
        assert_eq!(
            (spec.bucket.as_str(), spec.prefix.as_str()),
            ("bucket", "web/fleet/")
        );
        assert_eq!(spec.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(parse(keys("gs://bucket/fleet"), "web").unwrap().is_some());
        assert!(parse(Keys::default(), "web").unwrap().is_none());
    }

    #[test]
    fn bad_keys_are_named() {
        for (k, want) in [
            (
                Keys {
                    wave: Some(1),
                    ..Keys::default()
                },
                "need fleet-store",
            ),
            (keys("https://h/x"), "must be an etcd://"),
            (
                keys("s3://r/b/p?registry-ttl=30s"),
                "registry-ttl= is for the shared cache",
            ),
            (keys("s3://r/b/p?x=1"), "unknown parameter"),
            (keys("etcd://h/x?slots=2"), "slots= is for fleet-lock"),
            (keys("etcd://h/"), "fleet-store \"etcd://h/\": needs a key prefix"),
            (keys("etcd://h/x?tls=maybe"), "fleet-store"),
            (
                Keys {
                    wave: Some(101),
                    ..keys("etcd://h/x")
                },
                "fleet-wave 101",
            ),
            (
                Keys {
                    canary_hosts: Some(0),
                    ..keys("etcd://h/x")
                },
                "canary-hosts 0",
            ),
            (
                Keys {
                    id: Some("a/b"),
                    ..keys("etcd://h/x")
                },
                "fleet-id \"a/b\"",
            ),
            (
                Keys {
                    soak: Some(DurationValue(Duration::from_secs(90 * 86400))),
                    ..keys("etcd://h/x")
                },
                "soak",
            ),
        ] {
            let err = parse(k, "web").unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err}");
        }
    }
}
