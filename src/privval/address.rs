//! Where a node's privval listener is: `tcp://[NODE_ID@]HOST:PORT` or `unix:///PATH`, the two
//! forms CometBFT's `priv_validator_laddr` takes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A node's `priv_validator_laddr` as a cosigner dials it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeAddress {
    /// Lowercase hex node ID to pin, if given (TCP only: a Unix socket has no
    /// SecretConnection, hence no node key).
    pub node_id: Option<String>,
    /// Where the node listens.
    pub endpoint: NodeEndpoint,
}

/// How a node is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEndpoint {
    /// TCP, with a SecretConnection inside.
    Tcp {
        /// The node's host name or IP address.
        host: String,
        /// The port of the node's `priv_validator_laddr`.
        port: u16,
    },
    /// A Unix socket the node listens on, with the privval messages as they are: CometBFT's
    /// Unix listener runs no SecretConnection (the socket's file mode is the access control).
    Unix(PathBuf),
}

impl NodeAddress {
    /// Parses `tcp://[NODE_ID@]HOST:PORT`; the error says what is wrong with `s`.
    pub fn parse(s: &str) -> Result<NodeAddress, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.contains('@') && !path.starts_with('/') {
                return Err(format!(
                    "`{s}`: a Unix socket carries no SecretConnection, so there is no node ID \
                     to pin: give unix:///PATH"
                ));
            }
            if !path.starts_with('/') {
                return Err(format!(
                    "`{s}`: give the socket's absolute path, as in unix:///var/run/node/privval.sock"
                ));
            }
            return Ok(NodeAddress {
                node_id: None,
                endpoint: NodeEndpoint::Unix(PathBuf::from(path)),
            });
        }
        let rest = s
            .strip_prefix("tcp://")
            .ok_or_else(|| format!("`{s}` must start with tcp:// or unix://"))?;
        let (node_id, host_port) = match rest.split_once('@') {
            Some((id, hp)) => {
                let id = id.to_ascii_lowercase();
                if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("node ID `{id}` in `{s}` is not 40 hex digits"));
                }
                (Some(id), hp)
            }
            None => (None, rest),
        };
        let (host, port) =
            crate::host_port::split_host_port(host_port).map_err(|e| format!("`{s}`: {e}"))?;
        Ok(NodeAddress {
            node_id,
            endpoint: NodeEndpoint::Tcp { host, port },
        })
    }

    /// How logs name the node: `host:port` (IPv6 hosts bracketed) or the socket's path.
    pub fn label(&self) -> String {
        match &self.endpoint {
            NodeEndpoint::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            NodeEndpoint::Tcp { host, port } => format!("{host}:{port}"),
            NodeEndpoint::Unix(path) => path.display().to_string(),
        }
    }
}

impl TryFrom<String> for NodeAddress {
    type Error = String;

    fn try_from(s: String) -> Result<NodeAddress, String> {
        NodeAddress::parse(&s)
    }
}

impl std::str::FromStr for NodeAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<NodeAddress, String> {
        NodeAddress::parse(s)
    }
}

impl From<NodeAddress> for String {
    fn from(a: NodeAddress) -> String {
        a.to_string()
    }
}

impl std::fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.endpoint, &self.node_id) {
            (NodeEndpoint::Unix(path), _) => write!(f, "unix://{}", path.display()),
            (NodeEndpoint::Tcp { .. }, Some(id)) => write!(f, "tcp://{id}@{}", self.label()),
            (NodeEndpoint::Tcp { .. }, None) => write!(f, "tcp://{}", self.label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_addresses() {
        let a = NodeAddress::parse("tcp://ABCDEF0123456789abcdef0123456789ABCDEF01@10.0.0.1:26659")
            .unwrap();
        assert_eq!(
            a.node_id.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef01")
        );
        assert_eq!(a.label(), "10.0.0.1:26659");
        assert_eq!(
            NodeAddress::parse("tcp://[::1]:26659").unwrap().label(),
            "[::1]:26659"
        );
        let unix = NodeAddress::parse("unix:///run/node/privval.sock").unwrap();
        assert_eq!(
            unix.endpoint,
            NodeEndpoint::Unix("/run/node/privval.sock".into())
        );
        assert_eq!(unix.to_string(), "unix:///run/node/privval.sock");
        for bad in [
            "127.0.0.1:1",
            "tcp://host",
            "tcp://abc@h:1",
            "tcp://h:99999",
            "tcp://h:0",
            "unix://relative.sock",
            "unix://abcdef0123456789abcdef0123456789abcdef01@/x.sock",
        ] {
            assert!(NodeAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_and_writes_itself_as_a_string() {
        let a: NodeAddress = "tcp://[::1]:26659".parse().unwrap();
        assert_eq!(a.to_string(), "tcp://[::1]:26659");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<NodeAddress>(&json).unwrap(), a);
        assert!(serde_json::from_str::<NodeAddress>("\"udp://x:1\"").is_err());
    }
}
