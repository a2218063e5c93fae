//! Where a node's privval listener is.

use serde::{Deserialize, Serialize};

/// A node's `priv_validator_laddr` as a cosigner dials it: `tcp://[NODE_ID@]HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeAddress {
    /// Lowercase hex node ID to pin, if given.
    pub node_id: Option<String>,
    /// The node's host name or IP address.
    pub host: String,
    /// The port of the node's `priv_validator_laddr`.
    pub port: u16,
}

impl NodeAddress {
    /// Parses `tcp://[NODE_ID@]HOST:PORT`; the error says what is wrong with `s`.
    pub fn parse(s: &str) -> Result<NodeAddress, String> {
        let rest = s
            .strip_prefix("tcp://")
            .ok_or_else(|| format!("`{s}` must start with tcp://"))?;
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
            host,
            port,
        })
    }

    /// `host:port`, with IPv6 hosts bracketed, for `TcpStream::connect`.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
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
        match &self.node_id {
            Some(id) => write!(f, "tcp://{id}@{}", self.host_port()),
            None => write!(f, "tcp://{}", self.host_port()),
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
        assert_eq!(a.host_port(), "10.0.0.1:26659");
        assert_eq!(
            NodeAddress::parse("tcp://[::1]:26659").unwrap().host_port(),
            "[::1]:26659"
        );
        for bad in [
            "127.0.0.1:1",
            "tcp://host",
            "tcp://abc@h:1",
            "tcp://h:99999",
            "tcp://h:0",
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
