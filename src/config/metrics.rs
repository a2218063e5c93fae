//! `[metrics]`: where the Prometheus endpoint listens. Absent means no endpoint (the
//! process still counts, for `cosigner status`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// The `[metrics]` section of `cosigner.toml`.
pub struct MetricsConfig {
    /// `IP:PORT` of `GET /metrics`. Loopback unless a scraper on another host needs it: the
    /// series hold no secret, but they tell anyone who reaches them when this validator signs.
    pub listen: SocketAddr,
}

/// The endpoint `split-key` suggests for a cosigner whose cluster port is
/// `cluster_listen`: loopback, at the cluster port plus 1000 (7101 gives 8101), so that
/// cosigners of one host (a local cluster) do not collide.
pub fn suggested_listen(cluster_listen: SocketAddr) -> SocketAddr {
    let port = cluster_listen.port().checked_add(1000).unwrap_or(9101);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// The commented-out `[metrics]` section `split-key` appends to each `cosigner.toml`: off
/// until the operator enables it, since a port taken on the host would stop the start.
pub fn commented_section(cluster_listen: SocketAddr) -> String {
    format!(
        "\n# Prometheus metrics (GET /metrics); uncomment to serve them on loopback.\n\
         # [metrics]\n\
         # listen = \"{}\"\n",
        suggested_listen(cluster_listen)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_section_becomes_a_valid_one_when_uncommented() {
        let text = commented_section("0.0.0.0:7101".parse().unwrap());
        let enabled: String = text
            .lines()
            .filter(|l| !l.starts_with("# Prometheus"))
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n");
        #[derive(Deserialize)]
        struct Doc {
            metrics: MetricsConfig,
        }
        let doc: Doc = toml::from_str(&enabled).unwrap();
        assert_eq!(doc.metrics.listen, "127.0.0.1:8101".parse().unwrap());
    }
}
