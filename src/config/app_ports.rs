//! Port specifications as dewy accepts them: `8080`, `8080,8081`, `8000-8005`, `host:port`,
//! `[::1]:8080`; repeatable. The result is deduplicated and sorted, which fixes the fd order.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{anyhow, bail, Context};

/// Largest span of one range: `end - start` may be at most this (101 ports).
pub const MAX_RANGE_SPAN: u16 = 100;

/// Parse every value (each may hold a comma list) into sorted, deduplicated addresses.
/// A bare port listens on all IPv4 interfaces, as the Go Dewy does.
pub fn parse(values: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for value in values {
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            out.extend(parse_item(item).with_context(|| format!("port {item:?}"))?);
        }
    }
    out.sort_by_key(|a| (a.port(), a.ip()));
    out.dedup();
    Ok(out)
}

fn parse_item(item: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let (host, ports) = split_host(item)?;
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(ports)?;
            (p, p)
        }
    };
    if end < start {
        bail!("range end {end} is below its start {start}");
    }
    if end - start > MAX_RANGE_SPAN {
        bail!(
            "range {start}-{end} spans {} ports; at most {} are allowed",
            u32::from(end - start) + 1,
            u32::from(MAX_RANGE_SPAN) + 1
        );
    }
    Ok((start..=end).map(|p| SocketAddr::new(host, p)).collect())
}

fn split_host(item: &str) -> anyhow::Result<(IpAddr, &str)> {
    if let Some(rest) = item.strip_prefix('[') {
        let (ip, ports) = rest
            .split_once("]:")
            .ok_or_else(|| anyhow!("expected [IPv6]:PORT"))?;
        let ip: IpAddr = ip.parse().with_context(|| format!("IPv6 address {ip:?}"))?;
        return Ok((ip, ports));
    }
    match item.rsplit_once(':') {
        Some((host, ports)) => {
            let ip: IpAddr = match host {
                "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                h => h
                    .parse()
                    .with_context(|| format!("address {h:?} (an IP address; IPv6 in brackets)"))?,
            };
            Ok((ip, ports))
        }
        None => Ok((IpAddr::V4(Ipv4Addr::UNSPECIFIED), item)),
    }
}

fn port(s: &str) -> anyhow::Result<u16> {
    let p: u16 = s
        .trim()
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a port number (1-65535)"))?;
    if p == 0 {
        bail!("port 0 is not allowed (1-65535)");
    }
    if p < 1024 {
        tracing::warn!(port = p, "Using privileged port may require root privileges");
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> anyhow::Result<Vec<String>> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map(|a| a.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn lists_ranges_hosts_dedupe_and_sort() {
        assert_eq!(
            p(&["8081,8080", "8080", "8000-8002"]).unwrap(),
            [
                "0.0.0.0:8000",
                "0.0.0.0:8001",
                "0.0.0.0:8002",
                "0.0.0.0:8080",
                "0.0.0.0:8081"
            ]
        );
        assert_eq!(
            p(&["127.0.0.1:9000", "[::1]:9000-9001"]).unwrap(),
            ["127.0.0.1:9000", "[::1]:9000", "[::1]:9001"]
        );
        assert_eq!(p(&["8000-8100"]).unwrap().len(), 101);
        assert!(p(&["8000-8101"]).unwrap_err().to_string().contains("8000-8101"));
        assert!(p(&["0"]).is_err());
        assert!(p(&["70000"]).is_err());
        assert!(p(&["9-8"]).is_err());
        assert!(p(&["host.example:80"]).is_err());
        assert!(p(&["[::1:80"]).is_err());
    }
}
