//! `ceremony.json`: what `split-key --dkg` or `split-key --horcrux-pubkey` writes into every
//! cosigner directory that has no key share yet, and the session id derived from it.
//!
//! The file is public (it holds no secret) and stays after the ceremony as its record. Its
//! presence next to a `cosigner.toml` whose key share is missing is what lets `cosigner
//! start` say which ceremony to run instead of only "file not found".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::PeerId;
use crate::threshold::quorum::check_threshold;

/// The file's name, in the directory of `cosigner.toml`.
pub const CEREMONY_FILE: &str = "ceremony.json";
/// The only version this build reads and writes.
pub(crate) const CEREMONY_VERSION: u32 = 1;
/// A ceremony file is a few hundred bytes.
const MAX_CEREMONY_FILE_BYTES: u64 = 16 * 1024;

/// A ceremony's session id: every request of the ceremony carries it.
pub(crate) type SessionId = [u8; 32];

/// Which ceremony makes this directory's key share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CeremonyKind {
    /// A new key by distributed key generation.
    Dkg,
    /// An existing key, from the Horcrux shard on each host.
    HorcruxImport,
    /// A share of the cluster's key for a cosigner being added (`cosigner enroll` wrote the
    /// directory; `cosigner join` with `cosigner refresh --add` on the members makes it).
    Join,
}

impl CeremonyKind {
    /// The command that runs it, as the operator types it.
    pub fn command(self) -> &'static str {
        match self {
            CeremonyKind::Dkg => "cosigner dkg",
            CeremonyKind::HorcruxImport => "cosigner import-horcrux",
            CeremonyKind::Join => "cosigner join",
        }
    }

    fn tag(self) -> u8 {
        match self {
            CeremonyKind::Dkg => 1,
            CeremonyKind::HorcruxImport => 2,
            CeremonyKind::Join => 3,
        }
    }
}

/// `ceremony.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyFile {
    /// The format version of `ceremony.json`; another is refused.
    pub version: u32,
    /// Which ceremony the directories are made for.
    pub kind: CeremonyKind,
    /// 32 random bytes (hex) from `split-key`: one ceremony per set of directories.
    pub nonce: String,
    /// How many cosigners must sign together (`t`).
    pub threshold: u16,
    /// How many cosigners take part (`n`).
    pub shares: u16,
    /// The validator key (base64) the imported shards must add up to; Horcrux import only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator_public_key: Option<String>,
    /// The bech32 prefix to print the key with, from `split-key --bech32-prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bech32_prefix: Option<String>,
}

/// A ceremony file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct CeremonyFileError {
    pub path: PathBuf,
    pub problem: String,
}

impl CeremonyFile {
    /// A new ceremony for `threshold`-of-`shares` cosigners.
    pub fn new<R: RngCore + CryptoRng>(
        kind: CeremonyKind,
        threshold: u16,
        shares: u16,
        validator_public_key: Option<[u8; 32]>,
        bech32_prefix: Option<String>,
        rng: &mut R,
    ) -> CeremonyFile {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        CeremonyFile {
            version: CEREMONY_VERSION,
            kind,
            nonce: hex::encode(nonce),
            threshold,
            shares,
            validator_public_key: validator_public_key.map(|k| BASE64.encode(k)),
            bech32_prefix,
        }
    }

    /// Pretty JSON and a newline.
    pub fn to_json(&self) -> String {
        // Plain strings and numbers: serialising cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads and checks a ceremony file.
    pub fn load(path: &Path) -> Result<CeremonyFile, CeremonyFileError> {
        let err = |problem: String| CeremonyFileError {
            path: path.to_path_buf(),
            problem,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| err(format!("cannot read: {e}")))?
            .len();
        if len > MAX_CEREMONY_FILE_BYTES {
            return Err(err(format!("{len} bytes; not a ceremony file")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let file: CeremonyFile =
            serde_json::from_str(&text).map_err(|e| err(format!("malformed: {e}")))?;
        file.validate().map_err(err)?;
        Ok(file)
    }

    /// Checks the fields against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != CEREMONY_VERSION {
            return Err(format!(
                "version {} is not supported; this build reads version {CEREMONY_VERSION}",
                self.version
            ));
        }
        self.nonce_bytes()?;
        check_threshold(self.threshold, self.shares).map_err(|e| e.to_string())?;
        match (self.kind, self.public_key()?) {
            (CeremonyKind::Dkg | CeremonyKind::Join, None)
            | (CeremonyKind::HorcruxImport, Some(_)) => {}
            (CeremonyKind::Dkg, Some(_)) => {
                return Err("a DKG makes a new key: validator_public_key must be absent".into())
            }
            (CeremonyKind::Join, Some(_)) => {
                return Err(
                    "a join learns the key from the members: validator_public_key must \
                            be absent"
                        .into(),
                )
            }
            (CeremonyKind::HorcruxImport, None) => {
                return Err("a Horcrux import needs validator_public_key".into())
            }
        }
        if let Some(prefix) = &self.bech32_prefix {
            crate::key_forms::check_prefix(prefix).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn nonce_bytes(&self) -> Result<[u8; 32], String> {
        let bytes = hex::decode(&self.nonce).map_err(|e| format!("nonce: not hex: {e}"))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| format!("nonce: {} bytes, not 32", bytes.len()))
    }

    /// The validator key a Horcrux import must reproduce.
    pub fn public_key(&self) -> Result<Option<[u8; 32]>, String> {
        let Some(text) = &self.validator_public_key else {
            return Ok(None);
        };
        let bytes = BASE64
            .decode(text)
            .map_err(|e| format!("validator_public_key: not base64: {e}"))?;
        let key = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| format!("validator_public_key: {} bytes, not 32", bytes.len()))?;
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|_| "validator_public_key is not an Ed25519 public key".to_string())?;
        Ok(Some(key))
    }
}

/// The session id of a ceremony: SHA-256 over a domain tag, the ceremony file's fields and
/// the certificate pin of every cosigner `1..=n`. Hosts agree on it exactly when their
/// directories come from one `split-key` run and nobody edited a pin, a threshold or a key.
pub(crate) fn session_id(
    file: &CeremonyFile,
    pins: &BTreeMap<PeerId, String>,
) -> Result<SessionId, String> {
    file.validate()?;
    if !pins.keys().copied().eq(1..=file.shares) {
        return Err(format!(
            "the cluster has cosigners {:?}, but the ceremony is for cosigners 1..={}",
            pins.keys().collect::<Vec<_>>(),
            file.shares
        ));
    }
    let mut h = Sha256::new();
    h.update(b"cosigner key ceremony v1\x00");
    h.update([file.kind.tag()]);
    h.update(file.nonce_bytes()?);
    h.update(file.threshold.to_be_bytes());
    h.update(file.shares.to_be_bytes());
    match file.public_key()? {
        Some(key) => {
            h.update([1]);
            h.update(key);
        }
        None => h.update([0]),
    }
    for (id, pin) in pins {
        h.update(id.to_be_bytes());
        h.update(pin.to_ascii_lowercase().as_bytes());
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn pins(n: u16) -> BTreeMap<PeerId, String> {
        (1..=n).map(|i| (i, format!("{i:064x}"))).collect()
    }

    #[test]
    fn round_trips_and_validates() {
        let dkg = CeremonyFile::new(CeremonyKind::Dkg, 2, 3, None, None, &mut OsRng);
        let back: CeremonyFile = serde_json::from_str(&dkg.to_json()).unwrap();
        assert_eq!(back, dkg);
        assert!(dkg.to_json().contains("\"kind\": \"dkg\""));
        let import = CeremonyFile::new(
            CeremonyKind::HorcruxImport,
            2,
            3,
            Some(
                ed25519_dalek::SigningKey::from_bytes(&[1; 32])
                    .verifying_key()
                    .to_bytes(),
            ),
            Some("cosmos".into()),
            &mut OsRng,
        );
        assert_eq!(import.validate(), Ok(()));
        assert!(import.to_json().contains("horcrux-import"));

        let mut bad = dkg.clone();
        bad.threshold = 1;
        assert!(bad.validate().unwrap_err().contains("below 2"));
        let mut bad = dkg.clone();
        bad.validator_public_key = import.validator_public_key.clone();
        assert!(bad.validate().unwrap_err().contains("new key"));
        let mut bad = import.clone();
        bad.validator_public_key = None;
        assert!(bad.validate().unwrap_err().contains("needs"));
        let mut bad = dkg.clone();
        bad.nonce = "00".into();
        assert!(bad.validate().unwrap_err().contains("not 32"));
        let mut bad = dkg;
        bad.version = 2;
        assert!(bad.validate().unwrap_err().contains("version 2"));
    }

    #[test]
    fn the_session_binds_every_field_and_every_pin() {
        let file = CeremonyFile::new(CeremonyKind::Dkg, 2, 3, None, None, &mut OsRng);
        let id = session_id(&file, &pins(3)).unwrap();
        assert_eq!(session_id(&file, &pins(3)).unwrap(), id);
        let mut other_pins = pins(3);
        other_pins.insert(2, "ab".repeat(32));
        assert_ne!(session_id(&file, &other_pins).unwrap(), id);
        let mut other = file.clone();
        other.threshold = 3;
        assert_ne!(session_id(&other, &pins(3)).unwrap(), id);
        let again = CeremonyFile::new(CeremonyKind::Dkg, 2, 3, None, None, &mut OsRng);
        assert_ne!(session_id(&again, &pins(3)).unwrap(), id);
        // The prefix only changes what is printed.
        let mut prefixed = file.clone();
        prefixed.bech32_prefix = Some("osmo".into());
        assert_eq!(session_id(&prefixed, &pins(3)).unwrap(), id);
        assert!(session_id(&file, &pins(4)).unwrap_err().contains("1..=3"));
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CEREMONY_FILE);
        std::fs::write(&path, "{").unwrap();
        let msg = CeremonyFile::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains("ceremony.json") && msg.contains("malformed"),
            "{msg}"
        );
        let file = CeremonyFile::new(CeremonyKind::Dkg, 3, 5, None, None, &mut OsRng);
        std::fs::write(&path, file.to_json()).unwrap();
        assert_eq!(CeremonyFile::load(&path).unwrap(), file);
    }
}
