//! `fleet-lock`, `fleet-group` and `fleet-id`: the FleetLock server (the HTTP protocol Zincati
//! speaks) whose semaphore bounds how many hosts of a group deploy at once.

use serde::Serialize;

use super::ConfigError;

/// The group when `fleet-group` is not set (Zincati's default).
pub const DEFAULT_GROUP: &str = "default";

/// A FleetLock server and this deployer's place in it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FleetLock {
    /// The server's base URL (`/v1/pre-reboot` and `/v1/steady-state` are under it).
    #[serde(rename = "fleet-lock", serialize_with = "ser_url")]
    pub url: url::Url,
    #[serde(rename = "fleet-group")]
    pub group: String,
    /// This deployer's id in the group (`fleet-id`; default `<hostname>-<app>`).
    #[serde(rename = "fleet-id")]
    pub id: String,
    /// The etcd form (`etcd://…`, `etcds://…`): a semaphore kept in etcd itself; `url` is then
    /// the URL as written, without its password.
    #[serde(skip)]
    pub etcd: Option<super::etcd_lock::EtcdLock>,
}

pub(super) fn ser_url<S: serde::Serializer>(u: &url::Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(u.as_str())
}

fn invalid(msg: String) -> ConfigError {
    ConfigError::Invalid(msg)
}

/// A group or id: 1 to 128 characters of letters, digits, `.`, `_` and `-` (Zincati's group
/// rule, with `_`).
pub(super) fn check_name(key: &str, v: &str) -> Result<(), ConfigError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        return Ok(());
    }
    Err(invalid(format!(
        "{key} {} must be 1 to 128 letters, digits, '.', '_' or '-'",
        crate::text::shown(v)
    )))
}

/// The settings from the keys as written; `None` without `fleet-lock`.
pub fn parse(
    url: Option<&str>,
    group: Option<&str>,
    id: Option<&str>,
    app: &str,
) -> Result<Option<FleetLock>, ConfigError> {
    let Some(text) = url.map(str::trim).filter(|u| !u.is_empty()) else {
        if group.is_some() || id.is_some() {
            return Err(invalid(
                "fleet-group and fleet-id need fleet-lock (the FleetLock server's URL)".into(),
            ));
        }
        return Ok(None);
    };
    let mut url = url::Url::parse(text).map_err(|e| {
        invalid(format!(
            "fleet-lock {}: {e}",
            crate::text::shown(&super::etcd_lock::redacted(text))
        ))
    })?;
    if matches!(url.scheme(), "etcd" | "etcds") {
        let etcd = super::etcd_lock::parse(text, &url)?;
        if group.is_some() {
            return Err(invalid(
                "fleet-group is for a FleetLock server; with etcd the URL's key prefix names the semaphore"
                    .into(),
            ));
        }
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        let id = match id {
            Some(id) => id.to_string(),
            None => format!("{}-{app}", crate::host::name()),
        };
        check_name("fleet-id", &id)?;
        return Ok(Some(FleetLock {
            url,
            group: DEFAULT_GROUP.to_string(),
            id,
            etcd: Some(etcd),
        }));
    }
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(invalid(format!(
            "fleet-lock {} must be an http:// or https:// URL with a host (a FleetLock server, e.g. https://fleetlock.example.com/) or an etcd:// or etcds:// one (e.g. etcd://etcd.example.com:2379/dewy/web?slots=2)",
            crate::text::shown(&super::etcd_lock::redacted(text))
        )));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid(format!(
            "fleet-lock {} must not have a query, a fragment or credentials",
            crate::text::shown(&super::etcd_lock::redacted(text))
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    let group = group.unwrap_or(DEFAULT_GROUP).to_string();
    check_name("fleet-group", &group)?;
    let id = match id {
        Some(id) => id.to_string(),
        None => format!("{}-{app}", crate::host::name()),
    };
    check_name("fleet-id", &id)?;
    Ok(Some(FleetLock {
        url,
        group,
        id,
        etcd: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(parse(None, None, None, "web").unwrap().is_none());
        let l = parse(
            Some("https://lock.example.com/fleet"),
            Some("web-eu"),
            Some("host-1"),
            "web",
        )
        .unwrap()
        .unwrap();
        assert_eq!(l.url.as_str(), "https://lock.example.com/fleet/");
        assert_eq!(
            l.url.join("v1/pre-reboot").unwrap().as_str(),
            "https://lock.example.com/fleet/v1/pre-reboot"
        );
        assert_eq!((l.group.as_str(), l.id.as_str()), ("web-eu", "host-1"));
        let d = parse(Some("http://127.0.0.1:3333"), None, None, "web")
            .unwrap()
            .unwrap();
        assert_eq!(d.group, "default");
        assert!(d.id.ends_with("-web"), "{}", d.id);
        assert!(d.etcd.is_none());
        let e = parse(
            Some("etcd://u:pw@127.0.0.1:2379/dewy?slots=3"),
            None,
            Some("h1"),
            "web",
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.etcd.as_ref().map(|e| e.slots), Some(3));
        assert!(!e.url.as_str().contains("pw"), "{}", e.url);
        for (url, group, id, want) in [
            (None, Some("g"), None, "need fleet-lock"),
            (Some("ftp://h/"), None, None, "http:// or https://"),
            (Some("not a url"), None, None, "fleet-lock \"not a url\""),
            (Some("https://h/?x=1"), None, None, "query"),
            (Some("https://u:p@h/"), None, None, "credentials"),
            (Some("https://h/"), Some("a b"), None, "fleet-group \"a b\""),
            (Some("https://h/"), None, Some(""), "fleet-id \"\""),
            (Some("etcd://h/x?slots=0"), None, None, "slots=0"),
            (
                Some("etcd://h/x"),
                Some("g"),
                None,
                "fleet-group is for a FleetLock",
            ),
            (Some("etcd://h/x"), None, Some("a b"), "fleet-id \"a b\""),
        ] {
            let err = parse(url, group, id, "web").unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err}");
        }
    }

    #[test]
    fn a_refused_url_is_shown_without_its_password() {
        for url in [
            "https://u:hunter2@lock.example.com/",
            "https://u:hunter2@lock.example.com/?x=1",
            "ftp://u:hunter2@lock.example.com/",
            "etcd://u:hunter2@h/x?slots=0",
        ] {
            let err = parse(Some(url), None, Some("h1"), "web").unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("u:***@"), "{err}");
        }
    }
}
