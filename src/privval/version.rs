//! The privval protocol versions a node may speak.

use serde::{Deserialize, Serialize};

/// The privval protocol a node speaks; it changes the wire format of a few messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProtocolVersion {
    /// CometBFT v0.34.
    #[serde(rename = "v0.34")]
    V0_34,
    /// CometBFT v0.37.
    #[serde(rename = "v0.37")]
    V0_37,
    /// CometBFT v0.38: adds vote extensions.
    #[serde(rename = "v0.38")]
    V0_38,
    /// CometBFT v1.0: adds SignBytes and a new public key response layout.
    #[serde(rename = "v1")]
    V1,
}

impl ProtocolVersion {
    /// Whether votes of this version carry vote extensions (v0.38 and later).
    pub fn has_vote_extensions(self) -> bool {
        matches!(self, ProtocolVersion::V0_38 | ProtocolVersion::V1)
    }

    /// The config spelling (`v0.34`, `v0.37`, `v0.38`, `v1`).
    pub fn name(self) -> &'static str {
        match self {
            ProtocolVersion::V0_34 => "v0.34",
            ProtocolVersion::V0_37 => "v0.37",
            ProtocolVersion::V0_38 => "v0.38",
            ProtocolVersion::V1 => "v1",
        }
    }
}

impl std::str::FromStr for ProtocolVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v0.34" => Ok(ProtocolVersion::V0_34),
            "v0.37" => Ok(ProtocolVersion::V0_37),
            "v0.38" => Ok(ProtocolVersion::V0_38),
            "v1" | "v1.0" => Ok(ProtocolVersion::V1),
            other => Err(format!(
                "unknown protocol `{other}`: expected v0.34, v0.37, v0.38 or v1"
            )),
        }
    }
}
