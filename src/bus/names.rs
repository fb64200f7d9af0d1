//! Bus names, object paths and interface names, in one place.

use std::fmt;

/// Interface of the deployer.
pub const DEPLOYER_IFACE: &str = "io.dewy.Deployer1";
/// Interface of the watcher.
pub const WATCHER_IFACE: &str = "io.dewy.Watcher1";
/// Interface of the proxy.
pub const PROXY_IFACE: &str = "io.dewy.Proxy1";
/// Object path of the deployer.
pub const DEPLOYER_PATH: &str = "/io/dewy/Deployer1";
/// Object path of the watcher.
pub const WATCHER_PATH: &str = "/io/dewy/Watcher1";
/// Object path of the proxy.
pub const PROXY_PATH: &str = "/io/dewy/Proxy1";

/// Well-known name of an app's deployer.
pub fn deployer_name(app: &str) -> String {
    format!("io.dewy.Deployer.{}", escape(app))
}

/// Well-known name of an app's watcher.
pub fn watcher_name(app: &str) -> String {
    format!("io.dewy.Watcher.{}", escape(app))
}

/// Well-known name of an app's proxy.
pub fn proxy_name(app: &str) -> String {
    format!("io.dewy.Proxy.{}", escape(app))
}

/// Make an app name a valid bus-name element: `[A-Za-z0-9_-]`, not starting with a digit.
/// Other bytes become `_xx` (hex); a leading digit gets a `_` in front.
pub fn escape(app: &str) -> String {
    let mut out = String::with_capacity(app.len() + 1);
    if app.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    for b in app.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// Which bus to use: the system bus (daemons under systemd), the session bus, or an address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BusChoice {
    #[default]
    System,
    Session,
    Address(String),
}

impl std::str::FromStr for BusChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "system" => BusChoice::System,
            "session" | "user" => BusChoice::Session,
            addr => BusChoice::Address(addr.to_string()),
        })
    }
}

impl fmt::Display for BusChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusChoice::System => f.write_str("system"),
            BusChoice::Session => f.write_str("session"),
            BusChoice::Address(a) => f.write_str(a),
        }
    }
}

impl BusChoice {
    /// A connection builder for this bus.
    pub fn builder(&self) -> zbus::Result<zbus::connection::Builder<'static>> {
        match self {
            BusChoice::System => zbus::connection::Builder::system(),
            BusChoice::Session => zbus::connection::Builder::session(),
            BusChoice::Address(a) => zbus::connection::Builder::address(a.as_str()),
        }
    }

    /// Connect as a client.
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        self.builder()?.build().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("web-app"), "web-app");
        assert_eq!(escape("my.app"), "my_2eapp");
        assert_eq!(escape("1app"), "_1app");
        assert_eq!(deployer_name("api"), "io.dewy.Deployer.api");
        for app in ["a", "web-app", "my.app", "1x", "a_b"] {
            zbus::names::WellKnownName::try_from(deployer_name(app)).unwrap();
        }
    }
}
