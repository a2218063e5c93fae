//! The validator's public key in every form an operator pastes somewhere: the hex address,
//! base64 (genesis `pub_key.value`, `create-validator --pubkey`), hex, and with a bech32
//! prefix the `valconspub` key and `valcons` address. The one home of how `split-key`,
//! `cosigner dkg` and `cosigner import-horcrux` print a key.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::validator_key::address_of;

/// Amino prefix of an Ed25519 public key in `valconspub` bech32 strings (the registered
/// prefix of `tendermint/PubKeyEd25519`, then the length 32).
pub const AMINO_ED25519_PUBKEY_PREFIX: [u8; 5] = [0x16, 0x24, 0xde, 0x64, 0x20];

/// A bech32 string could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Bech32Error {
    /// The prefix is not a bech32 human-readable part a chain would use.
    #[error("bech32 prefix `{0}`: expected 1 to 30 lowercase letters and digits, like `cosmos`")]
    BadPrefix(String),
    /// The bech32 encoder refused the data; carries its reason.
    #[error("bech32 encoding failed: {0}")]
    Encode(String),
}

/// Checks a bech32 account prefix (`cosmos`, `osmo`, ...).
pub fn check_prefix(prefix: &str) -> Result<(), Bech32Error> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 30
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    match ok {
        true => Ok(()),
        false => Err(Bech32Error::BadPrefix(prefix.to_string())),
    }
}

/// The bech32 `valconspub` string of an Ed25519 consensus key.
pub fn valconspub(prefix: &str, public_key: &[u8; 32]) -> Result<String, Bech32Error> {
    let mut data = AMINO_ED25519_PUBKEY_PREFIX.to_vec();
    data.extend_from_slice(public_key);
    bech32_encode(&format!("{prefix}valconspub"), &data)
}

/// The bech32 `valcons` address of a validator address.
pub fn valcons(prefix: &str, address: &[u8; 20]) -> Result<String, Bech32Error> {
    bech32_encode(&format!("{prefix}valcons"), address)
}

fn bech32_encode(hrp: &str, data: &[u8]) -> Result<String, Bech32Error> {
    let hrp = bech32::Hrp::parse(hrp).map_err(|e| Bech32Error::Encode(e.to_string()))?;
    bech32::encode::<bech32::Bech32>(hrp, data).map_err(|e| Bech32Error::Encode(e.to_string()))
}

/// Every printed form of one validator public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeyForms {
    /// The raw 32-byte Ed25519 key.
    pub public_key: [u8; 32],
    /// Uppercase hex of the 20-byte address, as CometBFT prints it.
    pub address_hex: String,
    /// Base64 of the key, as `priv_validator_key.json` holds it.
    pub base64: String,
    /// Lowercase hex of the key.
    pub hex: String,
    /// `(valconspub, valcons)` with the bech32 prefix, if one was given.
    pub bech32: Option<(String, String)>,
}

impl PublicKeyForms {
    /// Every form of `public_key`, the bech32 ones too when a chain's `prefix` is given.
    pub fn new(public_key: &[u8; 32], prefix: Option<&str>) -> Result<Self, Bech32Error> {
        let address = address_of(public_key);
        let bech32 = match prefix {
            Some(prefix) => {
                check_prefix(prefix)?;
                Some((valconspub(prefix, public_key)?, valcons(prefix, &address)?))
            }
            None => None,
        };
        Ok(PublicKeyForms {
            public_key: *public_key,
            address_hex: hex::encode_upper(address),
            base64: BASE64.encode(public_key),
            hex: hex::encode(public_key),
            bech32,
        })
    }
}

/// One line per form, labels aligned; tests and scripts read `public key (base64): `.
impl fmt::Display for PublicKeyForms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "validator address:   {}", self.address_hex)?;
        writeln!(f, "public key (base64): {}", self.base64)?;
        writeln!(f, "public key (hex):    {}", self.hex)?;
        if let Some((pubkey, address)) = &self.bech32 {
            writeln!(f, "valconspub:          {pubkey}")?;
            writeln!(f, "valcons address:     {address}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valconspub_uses_the_amino_prefix() {
        let s = valconspub("cosmos", &[0; 32]).unwrap();
        // Every Ed25519 valconspub starts like this: the amino prefix bytes in bech32.
        assert!(s.starts_with("cosmosvalconspub1zcjduepq"), "{s}");
        let (hrp, data) = bech32::decode(&s).unwrap();
        assert_eq!(hrp.as_str(), "cosmosvalconspub");
        assert_eq!(&data[..5], &AMINO_ED25519_PUBKEY_PREFIX);
        assert!(valcons("cosmos", &[1; 20])
            .unwrap()
            .starts_with("cosmosvalcons1"));
    }

    #[test]
    fn prints_every_form() {
        let forms = PublicKeyForms::new(&[7; 32], Some("osmo")).unwrap();
        let text = forms.to_string();
        assert!(text.contains(&format!(
            "public key (base64): {}\n",
            BASE64.encode([7; 32])
        )));
        assert!(text.contains(&format!("public key (hex):    {}\n", "07".repeat(32))));
        assert!(
            text.contains("valconspub:          osmovalconspub1"),
            "{text}"
        );
        assert!(text.contains("valcons address:     osmovalcons1"), "{text}");
        assert_eq!(forms.address_hex, hex::encode_upper(address_of(&[7; 32])));
        assert!(!PublicKeyForms::new(&[7; 32], None)
            .unwrap()
            .to_string()
            .contains("valcons"));
        assert_eq!(
            PublicKeyForms::new(&[7; 32], Some("Cosmos")),
            Err(Bech32Error::BadPrefix("Cosmos".into()))
        );
    }
}
