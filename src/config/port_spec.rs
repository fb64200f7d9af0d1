//! Container-mode port specifications: `[HOST:]PROXY[:CONTAINER][/http|/tcp]`.
//!
//! `8080` — the proxy listens on `0.0.0.0:8080`, the container port comes from the image's
//! `EXPOSE`; `8080:80` — container port 80; `127.0.0.1:8080:80/tcp` — bind address given, raw TCP
//! proxying instead of HTTP (the default). IPv6 bind addresses are written in brackets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// How the proxy forwards one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 reverse proxy (forwarded headers, keep-alive upstream pool, upgrades).
    #[default]
    Http,
    /// Raw TCP: bytes copied both ways.
    Tcp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        })
    }
}

/// One `--port` of container mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// The port inside the container; `None` means "take it from the image's EXPOSE".
    pub container_port: Option<u16>,
    pub protocol: Protocol,
}

impl FromStr for PortSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        let (body, protocol) = match s.rsplit_once('/') {
            Some((b, "http")) => (b, Protocol::Http),
            Some((b, "tcp")) => (b, Protocol::Tcp),
            Some((_, other)) => bail!("port {s:?}: unknown protocol {other:?} (use /http or /tcp)"),
            None => (s, Protocol::Http),
        };
        let (host, rest) = split_host(body).with_context(|| format!("port {s:?}"))?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (proxy, container) = match parts.as_slice() {
            [p] => (*p, None),
            [p, c] => (*p, Some(*c)),
            _ => bail!("port {s:?}: expected [HOST:]PROXY[:CONTAINER][/http|/tcp]"),
        };
        let proxy = parse_port(proxy).with_context(|| format!("port {s:?}: proxy port"))?;
        let container_port = container
            .map(|c| parse_port(c).with_context(|| format!("port {s:?}: container port")))
            .transpose()?;
        Ok(PortSpec {
            listen: SocketAddr::new(host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), proxy),
            container_port,
            protocol,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.listen)?;
        if let Some(c) = self.container_port {
            write!(f, ":{c}")?;
        }
        write!(f, "/{}", self.protocol)
    }
}

/// Parse the `port` list of container mode: at least one spec, no listen port twice.
pub fn parse_all(ports: &[String]) -> anyhow::Result<Vec<PortSpec>> {
    let specs = ports
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.parse::<PortSpec>())
        .collect::<anyhow::Result<Vec<_>>>()?;
    if specs.is_empty() {
        bail!("container mode needs at least one port: port = [\"8080:80\"] (PROXY:CONTAINER)");
    }
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|o| o.listen.port() == s.listen.port()) {
            bail!("proxy port {} is given twice", s.listen.port());
        }
    }
    Ok(specs)
}

/// Split an optional leading bind address (`1.2.3.4:` or `[::1]:`) from the ports.
fn split_host(s: &str) -> anyhow::Result<(Option<IpAddr>, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, rest) = rest.split_once("]:").context("expected [IPv6]:PORT")?;
        let ip: IpAddr = ip.parse().with_context(|| format!("bad IPv6 address {ip:?}"))?;
        return Ok((Some(ip), rest));
    }
    match s.split_once(':') {
        Some((first, rest)) if first.parse::<u16>().is_err() => {
            let ip: IpAddr = first
                .parse()
                .with_context(|| format!("bad bind address {first:?}"))?;
            Ok((Some(ip), rest))
        }
        _ => Ok((None, s)),
    }
}

fn parse_port(s: &str) -> anyhow::Result<u16> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => bail!("{s:?} is not a port number (1-65535)"),
        Ok(p) => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PortSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e:#}"))
    }

    #[test]
    fn forms() {
        let p = spec("8080");
        assert_eq!(p.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!((p.container_port, p.protocol), (None, Protocol::Http));
        let p = spec("8080:80");
        assert_eq!((p.listen.port(), p.container_port), (8080, Some(80)));
        let p = spec("127.0.0.1:8080:80/tcp");
        assert_eq!(p.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((p.container_port, p.protocol), (Some(80), Protocol::Tcp));
        let p = spec("[::1]:9000/http");
        assert_eq!(p.listen, "[::1]:9000".parse().unwrap());
        assert_eq!(p.container_port, None);
        assert_eq!(
            spec(&spec("127.0.0.1:8080:80/tcp").to_string()),
            spec("127.0.0.1:8080:80/tcp")
        );
    }

    #[test]
    fn lists() {
        let l = |v: &[&str]| parse_all(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(l(&["8080:80", "9000/tcp"]).unwrap().len(), 2);
        assert!(l(&[]).is_err());
        assert!(l(&["8080", "127.0.0.1:8080:81"])
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(l(&["8080", "x"]).is_err());
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "0",
            "x",
            "8080:80:90",
            "8080/udp",
            "host:8080",
            "[::1:8080",
            "70000",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad:?} accepted");
        }
    }
}
