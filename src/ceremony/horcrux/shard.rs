//! Reading a Horcrux `<chain-id>_shard.json` (format: [`super`]).

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use frost_ed25519::keys::SigningShare;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::key_forms::AMINO_ED25519_PUBKEY_PREFIX;
use crate::secret_file::{self, SecretFileProblem};

/// A shard file is about 150 bytes.
const MAX_SHARD_FILE_BYTES: usize = 16 * 1024;
/// Protobuf `tendermint.crypto.PublicKey`, field 1 (`ed25519`, bytes) of length 32.
const PROTOBUF_ED25519_PREFIX: [u8; 2] = [0x0a, 0x20];

/// One Horcrux cosigner's shard: its Shamir index, the validator key, and its share.
pub struct HorcruxShard {
    /// Horcrux's shard id: the 1-based Shamir index, which is also the FROST identifier.
    pub id: u16,
    /// The validator's Ed25519 public key, from `pubKey`.
    pub public_key: [u8; 32],
    /// `privateShard` as a FROST signing share (validated canonical by frost).
    pub share: SigningShare,
}

impl std::fmt::Debug for HorcruxShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HorcruxShard")
            .field("id", &self.id)
            .field("public_key", &hex::encode(self.public_key))
            .field("share", &"<redacted>")
            .finish()
    }
}

/// Why a shard file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ShardProblem {
    /// The file could not be read, or is not private to its owner.
    #[error("cannot read: {0}")]
    Read(SecretFileProblem),
    /// The file is not the JSON Horcrux writes; the reason never quotes a secret.
    #[error("not a Horcrux v3 shard file: {0}")]
    Malformed(String),
    /// `pubKey` is not an Ed25519 public key; says why.
    #[error("pubKey: {0}")]
    PublicKey(String),
    /// `privateShard` is not a canonical scalar; says why.
    #[error("privateShard: {0}")]
    Share(String),
    /// `id` is outside 1..=255.
    #[error("id {0} is not a Horcrux shard id (1..=255)")]
    Id(i64),
}

/// `CosignerEd25519Key` as Go's `encoding/json` writes it. The secret is borrowed from the
/// (wiped) file buffer, never copied into a string of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardJson<'a> {
    #[serde(rename = "pubKey")]
    pub_key: &'a str,
    #[serde(rename = "privateShard")]
    private_shard: &'a str,
    id: i64,
}

/// Reads a shard file. Its mode is not checked: like a validator key being imported, it is
/// only read here (Horcrux writes it 0600).
pub fn load(path: &Path) -> Result<HorcruxShard, ShardProblem> {
    let bytes =
        secret_file::read_any_mode(path, MAX_SHARD_FILE_BYTES).map_err(ShardProblem::Read)?;
    parse(&bytes)
}

/// Parses the contents of a shard file.
pub fn parse(bytes: &[u8]) -> Result<HorcruxShard, ShardProblem> {
    let json: ShardJson = serde_json::from_slice(bytes)
        .map_err(|e| ShardProblem::Malformed(secret_file::redacted_json_error(&e)))?;
    if !(1..=255).contains(&json.id) {
        return Err(ShardProblem::Id(json.id));
    }
    let public_key = decode_public_key(json.pub_key).map_err(ShardProblem::PublicKey)?;
    let mut share = Zeroizing::new([0u8; 32]);
    let len = BASE64
        .decode_slice(json.private_shard, share.as_mut_slice())
        .map_err(|_| ShardProblem::Share("not base64 of 32 bytes".into()))?;
    if len != 32 {
        return Err(ShardProblem::Share(format!("{len} bytes, not 32")));
    }
    // Little-endian and reduced mod l as DealShares writes it; frost refuses anything else.
    let share = SigningShare::deserialize(share.as_slice()).map_err(|_| {
        ShardProblem::Share("not a canonical little-endian scalar below the group order".into())
    })?;
    Ok(HorcruxShard {
        id: json.id as u16,
        public_key,
        share,
    })
}

/// The validator key from `pubKey`: protobuf `PublicKey{ed25519}`, or go-amino's binary
/// encoding in files from before Horcrux moved to protobuf.
pub fn decode_public_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    let key = match bytes.as_slice() {
        b if b.len() == 34 && b[..2] == PROTOBUF_ED25519_PREFIX => &b[2..],
        b if b.len() == 37 && b[..5] == AMINO_ED25519_PUBKEY_PREFIX => &b[5..],
        // Fields 2 and 3 of `PublicKey`: secp256k1, and bn254 in Horcrux's fork.
        [0x12, ..] | [0x1a, ..] => {
            return Err("not an Ed25519 key (only Ed25519 shards can be imported)".into())
        }
        _ => {
            return Err(format!(
                "{} bytes that are not a protobuf-encoded Ed25519 public key",
                bytes.len()
            ))
        }
    };
    let key = <[u8; 32]>::try_from(key).map_err(|_| "not 32 bytes".to_string())?;
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| "not a valid Ed25519 public key".to_string())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(&[5; 32])
            .verifying_key()
            .to_bytes()
    }

    fn shard_json(pub_key: &[u8], share: &[u8], id: i64) -> String {
        // As Go's json.Marshal writes it: compact, padded standard base64.
        format!(
            r#"{{"pubKey":"{}","privateShard":"{}","id":{id}}}"#,
            BASE64.encode(pub_key),
            BASE64.encode(share)
        )
    }

    fn protobuf(key: &[u8; 32]) -> Vec<u8> {
        let mut b = PROTOBUF_ED25519_PREFIX.to_vec();
        b.extend_from_slice(key);
        b
    }

    #[test]
    fn reads_a_shard_as_horcrux_writes_it() {
        let mut share = [0u8; 32];
        share[0] = 7;
        let parsed = parse(shard_json(&protobuf(&key()), &share, 2).as_bytes()).unwrap();
        assert_eq!(parsed.id, 2);
        assert_eq!(parsed.public_key, key());
        assert_eq!(parsed.share.serialize(), share.to_vec());
        assert!(!format!("{parsed:?}").contains("07000000"));
    }

    #[test]
    fn reads_the_pre_protobuf_amino_public_key() {
        let mut amino = AMINO_ED25519_PUBKEY_PREFIX.to_vec();
        amino.extend_from_slice(&key());
        let parsed = parse(shard_json(&amino, &[1; 32], 1).as_bytes()).unwrap();
        assert_eq!(parsed.public_key, key());
    }

    #[test]
    fn refuses_what_is_not_an_ed25519_shard() {
        let ok_key = protobuf(&key());
        let mut secp = vec![0x12, 0x21];
        secp.extend_from_slice(&[2; 33]);
        let cases: Vec<(String, &str)> = vec![
            (shard_json(&secp, &[1; 32], 1), "only Ed25519"),
            (shard_json(&key(), &[1; 32], 1), "not a protobuf"),
            (shard_json(&ok_key, &[1; 31], 1), "31 bytes"),
            (shard_json(&ok_key, &[0xff; 32], 1), "canonical"),
            (shard_json(&ok_key, &[1; 32], 0), "id 0"),
            (shard_json(&ok_key, &[1; 32], 256), "id 256"),
            (r#"{"id":1}"#.to_string(), "not a Horcrux"),
            (
                r#"{"pubKey":"","privateShard":"","id":1,"keyType":"bn254"}"#.to_string(),
                "not a Horcrux",
            ),
        ];
        for (json, want) in cases {
            let err = parse(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn a_malformed_file_does_not_quote_the_secret() {
        let secret = BASE64.encode([9; 32]);
        let json = format!(r#"{{"pubKey":1,"privateShard":"{secret}","id":"{secret}"}}"#);
        let err = parse(json.as_bytes()).unwrap_err().to_string();
        assert!(!err.contains(&secret), "{err}");
    }
}
