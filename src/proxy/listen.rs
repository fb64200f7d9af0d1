//! The proxy's listening sockets: taken from socket activation (`LISTEN_FDS`), matched to the
//! port specs by local address, or bound here when there are none.

use std::net::{SocketAddr, TcpListener};

use anyhow::{bail, Context};

use super::PortSpec;
use crate::supervise::sockets;

/// One listener per spec, in the specs' order.
pub fn listeners(specs: &[PortSpec]) -> anyhow::Result<Vec<TcpListener>> {
    let inherited = sockets::inherited().context("taking the sockets passed by systemd")?;
    if inherited.is_empty() {
        return specs
            .iter()
            .map(|s| sockets::listen(s.listen).with_context(|| format!("binding {}", s.listen)))
            .collect();
    }
    let mut given: Vec<(SocketAddr, TcpListener)> = Vec::new();
    for s in inherited {
        let Some(addr) = s.local else {
            bail!("inherited socket {:?} has no local address", s.name);
        };
        given.push((addr, TcpListener::from(s.fd)));
    }
    match_specs(specs, given)
}

/// Pair each spec with the inherited listener of the same address; every spec needs one and
/// every listener must be used.
fn match_specs(
    specs: &[PortSpec],
    mut given: Vec<(SocketAddr, TcpListener)>,
) -> anyhow::Result<Vec<TcpListener>> {
    let offered: Vec<String> = given.iter().map(|(a, _)| a.to_string()).collect();
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for s in specs {
        match given.iter().position(|(a, _)| sockets::same_listen(s.listen, *a)) {
            Some(i) => out.push(given.remove(i).1),
            None => missing.push(s.listen.to_string()),
        }
    }
    if !missing.is_empty() || !given.is_empty() {
        let extra: Vec<String> = given.iter().map(|(a, _)| a.to_string()).collect();
        bail!(
            "the sockets passed by systemd ({}) do not match the configured ports: {}{}\n\
             (make the ListenStream= lines of dewy-proxy@APP.socket list exactly the proxy ports)",
            offered.join(", "),
            if missing.is_empty() {
                String::new()
            } else {
                format!("no socket for {}", missing.join(", "))
            },
            if extra.is_empty() {
                String::new()
            } else {
                format!(
                    "{}not configured: {}",
                    if missing.is_empty() { "" } else { "; " },
                    extra.join(", ")
                )
            }
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_mismatch() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let spec = |addr: SocketAddr| format!("{addr}").parse::<PortSpec>().unwrap();
        let got = match_specs(&[spec(ba), spec(aa)], vec![(aa, a), (ba, b)]).unwrap();
        assert_eq!(got[0].local_addr().unwrap(), ba);
        let c = TcpListener::bind("127.0.0.1:0").unwrap();
        let ca = c.local_addr().unwrap();
        let err = match_specs(&[spec(aa)], vec![(ca, c)]).unwrap_err().to_string();
        assert!(err.contains(&format!("no socket for {aa}")), "{err}");
        assert!(err.contains(&format!("not configured: {ca}")), "{err}");
        assert!(sockets::same_listen(
            "0.0.0.0:80".parse().unwrap(),
            "[::]:80".parse().unwrap()
        ));
    }
}
