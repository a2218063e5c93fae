//! Which source addresses may open a handshake with us: the configured peers' addresses as
//! they resolve now, plus any networks the operator allows in `[threshold] allowed_sources`.
//!
//! The rule is on the IP address only. A cosigner dials from the socket it listens on, so its
//! Initials normally come from the IP its peers have configured for it; the port can differ
//! behind NAT and through relays, and the TLS pin, not the address, is what authenticates.
//! Connections are symmetric, so a peer whose own dials are ignored (it sends from another
//! IP) is still reached by ours; `allowed_sources` is for hosts where that matters (a
//! multi-homed or NATed peer whose restarts should be seen at once, or two such peers).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::timeout;
use tracing::debug;

use super::{until_shutdown, Inner, DIAL_TIMEOUT};
use crate::cluster::PeerId;

/// How often the peers' addresses are resolved again (they are also resolved on every dial).
const RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// An IP network, `ADDR/PREFIX` (or a single address), as `allowed_sources` lists them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in this network; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or ADDRESS/PREFIX network"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0..={max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;
    fn try_from(s: String) -> Result<IpNet, String> {
        s.parse()
    }
}

impl From<IpNet> for String {
    fn from(n: IpNet) -> String {
        n.to_string()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpNet({self})")
    }
}

/// The source addresses handshakes are accepted from.
#[derive(Debug)]
pub(super) struct AllowedSources {
    /// Each peer's address as it last resolved; a failed resolution keeps the previous one.
    resolved: RwLock<BTreeMap<PeerId, Vec<IpAddr>>>,
    networks: Vec<IpNet>,
}

impl AllowedSources {
    pub(super) fn new(networks: Vec<IpNet>) -> AllowedSources {
        AllowedSources {
            resolved: RwLock::new(BTreeMap::new()),
            networks,
        }
    }

    pub(super) fn allows(&self, source: IpAddr) -> bool {
        let ip = source.to_canonical();
        self.networks.iter().any(|n| n.contains(ip))
            || self
                .resolved
                .read()
                .is_ok_and(|r| r.values().any(|ips| ips.contains(&ip)))
    }

    /// Records what `peer`'s address resolves to now.
    pub(super) fn record(&self, peer: PeerId, addrs: &[SocketAddr]) {
        if addrs.is_empty() {
            return;
        }
        let mut ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip().to_canonical()).collect();
        ips.sort_unstable();
        ips.dedup();
        if let Ok(mut r) = self.resolved.write() {
            r.insert(peer, ips);
        }
    }
}

/// Resolves every peer's address now and then every [`RESOLVE_INTERVAL`], so a peer whose
/// name moves to another IP is let in without a restart.
pub(super) async fn refresh_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut tick = tokio::time::interval(RESOLVE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = until_shutdown(&mut shutdown) => return,
        }
        for peer in inner.peers.values() {
            match timeout(DIAL_TIMEOUT, tokio::net::lookup_host(&peer.address)).await {
                Ok(Ok(addrs)) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    inner.sources.record(peer.id, &addrs);
                }
                Ok(Err(e)) => {
                    debug!(peer = peer.id, addr = %peer.address, error = %e, "cannot resolve cluster peer")
                }
                Err(_) => {
                    debug!(peer = peer.id, addr = %peer.address, "resolving cluster peer timed out")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: IpNet = "10.1.2.0/23".parse().unwrap();
        assert!(n.contains(ip("10.1.3.255")));
        assert!(!n.contains(ip("10.1.4.0")));
        assert!(!n.contains(ip("::1")));
        // An IPv4-mapped IPv6 source (a dual-stack socket) is its IPv4 address.
        assert!(n.contains(ip("::ffff:10.1.2.9")));
        let single: IpNet = "192.0.2.7".parse().unwrap();
        assert_eq!(single.to_string(), "192.0.2.7/32");
        assert!(single.contains(ip("192.0.2.7")) && !single.contains(ip("192.0.2.8")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host/8",
            "10.0.0.0/",
            "",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_are_the_peers_resolved_ips_and_the_allowed_networks() {
        let s = AllowedSources::new(vec!["192.0.2.0/24".parse().unwrap()]);
        assert!(!s.allows(ip("10.0.0.2")));
        s.record(2, &["10.0.0.2:7101".parse().unwrap()]);
        assert!(s.allows(ip("10.0.0.2")));
        // The port does not matter, only the IP.
        assert!(s.allows(ip("::ffff:10.0.0.2")));
        assert!(s.allows(ip("192.0.2.200")));
        // A new resolution replaces the old; an empty one keeps it.
        s.record(2, &["10.0.0.3:7101".parse().unwrap()]);
        assert!(!s.allows(ip("10.0.0.2")) && s.allows(ip("10.0.0.3")));
        s.record(2, &[]);
        assert!(s.allows(ip("10.0.0.3")));
    }

    #[test]
    fn networks_serialise_as_strings() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct T {
            n: Vec<IpNet>,
        }
        let t: T = toml::from_str(r#"n = ["10.0.0.0/8", "::1"]"#).unwrap();
        assert_eq!(t.n[1].to_string(), "::1/128");
        assert_eq!(
            toml::to_string(&t).unwrap().trim(),
            r#"n = ["10.0.0.0/8", "::1/128"]"#
        );
        let e = toml::from_str::<T>(r#"n = ["10.0.0.0/40"]"#).unwrap_err();
        assert!(e.to_string().contains("prefix length"), "{e}");
    }
}
