//! Reading validator keys: CometBFT `priv_validator_key.json` and tmkms softsign files, and
//! the SecretConnection identity key file (tmkms format: base64 of a 32-byte seed).
//!
//! Loading is strict: a key file whose parts disagree with each other (public half, public
//! key, address) is refused rather than "repaired", because a mismatch means the file is not
//! the key the operator thinks it is. Every error names the file and the problem.
//!
//! A key a cosigner keeps (its identity key, a single-key signer's validator key) must be
//! private to its owner ([`crate::secret_file`]). The secret's text is parsed where it was
//! read, in a buffer wiped on drop, without copies: the JSON's private key string is
//! borrowed from that buffer, and decoded bytes and seeds sit in wiping wrappers.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::secret_file::{self, LooseMode, SecretFileProblem};

/// Key files are a few hundred bytes; anything much larger is not a key file.
const MAX_KEY_FILE_BYTES: usize = 64 * 1024;

const PRIV_ED25519: &str = "tendermint/PrivKeyEd25519";
const PUB_ED25519: &str = "tendermint/PubKeyEd25519";
const PRIV_SECP256K1: &str = "tendermint/PrivKeySecp256k1";
const PUB_SECP256K1: &str = "tendermint/PubKeySecp256k1";

/// A key file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct KeyFileError {
    /// The key file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: KeyFileProblem,
}

/// What is wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileProblem {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// The file is larger than any key file, so it is not read whole.
    #[error("file is larger than {MAX_KEY_FILE_BYTES} bytes; not a key file")]
    TooLarge,
    /// Its group or others may access the file; a key must be private to its owner.
    #[error(transparent)]
    Loose(LooseMode),
    /// The file is not the JSON of a key file; the reason never quotes its contents.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The key is secp256k1, which FROST Ed25519 cannot split.
    #[error("secp256k1 keys cannot be split: FROST Ed25519 only")]
    Secp256k1,
    /// A `type` field names a key type other than Ed25519.
    #[error("unsupported key type `{found}` in `{field}`; expected `{expected}`")]
    UnsupportedType {
        /// The JSON field.
        field: &'static str,
        /// The type it names.
        found: String,
        /// The type expected there.
        expected: &'static str,
    },
    /// A key field is not base64.
    #[error("`{field}` is not valid base64")]
    NotBase64 {
        /// The JSON field.
        field: &'static str,
    },
    /// A key field decodes to the wrong number of bytes.
    #[error("`{field}` is {found} bytes; expected {expected}")]
    WrongLength {
        /// The JSON field.
        field: &'static str,
        /// How many bytes it holds.
        found: usize,
        /// How many it should hold.
        expected: &'static str,
    },
    /// The 64-byte private key's public half is not the key its seed derives.
    #[error("the public half of `priv_key.value` does not match the key derived from its seed")]
    PrivateHalvesDisagree,
    /// `pub_key` is not the public key of the private key.
    #[error("`pub_key.value` does not match the public key of the private key")]
    PublicKeyMismatch,
    /// `address` is not the address of the public key.
    #[error("`address` {found} does not match the public key (expected {expected})")]
    WrongAddress {
        /// The address in the file.
        found: String,
        /// The address of the public key.
        expected: String,
    },
}

/// A validator's Ed25519 consensus key.
pub struct ValidatorKey {
    signing_key: SigningKey,
}

impl std::fmt::Debug for ValidatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorKey")
            .field("address", &self.address_hex())
            .finish_non_exhaustive()
    }
}

impl From<SecretFileProblem> for KeyFileProblem {
    fn from(p: SecretFileProblem) -> Self {
        match p {
            SecretFileProblem::Read(e) => KeyFileProblem::Read(e),
            SecretFileProblem::TooLarge(_) => KeyFileProblem::TooLarge,
            SecretFileProblem::Loose(l) => KeyFileProblem::Loose(l),
        }
    }
}

/// `value` is borrowed from the file's buffer unless the JSON escapes a character in it
/// (base64 needs no escapes, so in practice it always is); an owned copy is wiped on drop.
#[derive(Deserialize)]
struct TypedValue<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    value: Cow<'a, str>,
}

#[derive(Deserialize)]
struct PrivValidatorKeyJson<'a> {
    address: String,
    #[serde(borrow)]
    pub_key: TypedValue<'a>,
    #[serde(borrow)]
    priv_key: TypedValue<'a>,
}

impl Drop for PrivValidatorKeyJson<'_> {
    fn drop(&mut self) {
        if let Cow::Owned(value) = &mut self.priv_key.value {
            value.zeroize();
        }
    }
}

impl ValidatorKey {
    /// Reads the validator key a single-key signer keeps: a CometBFT
    /// `priv_validator_key.json` or a tmkms softsign key (base64 of the 32-byte seed), whose
    /// mode must be private to its owner.
    pub fn load(path: &Path) -> Result<ValidatorKey, KeyFileError> {
        let bytes = secret_file::read_private(path, MAX_KEY_FILE_BYTES)
            .map_err(|p| key_file_error(path, p.into()))?;
        ValidatorKey::parse(path, &bytes)
    }

    /// Reads the key file a new cosigner directory is made from (`split-key`,
    /// `init-single`), whatever its mode: it is the old signer's file, read once, and the
    /// key is written on into private files only. Returns the file's bytes too (wiped on
    /// drop), for a caller that copies the file.
    pub fn load_source(path: &Path) -> Result<(ValidatorKey, Zeroizing<Vec<u8>>), KeyFileError> {
        let bytes = secret_file::read_any_mode(path, MAX_KEY_FILE_BYTES)
            .map_err(|p| key_file_error(path, p.into()))?;
        Ok((ValidatorKey::parse(path, &bytes)?, bytes))
    }

    /// Parses the contents of a key file read from `path`. A file whose first non-blank
    /// character is `{` is read as JSON.
    fn parse(path: &Path, bytes: &[u8]) -> Result<ValidatorKey, KeyFileError> {
        let key = utf8(bytes).and_then(|text| {
            if text.trim_start().starts_with('{') {
                parse_cometbft_json(text)
            } else {
                parse_base64_seed(text, "key").map(|seed| ValidatorKey::from_seed(&seed))
            }
        });
        key.map_err(|problem| key_file_error(path, problem))
    }

    /// The key with this 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> ValidatorKey {
        ValidatorKey {
            signing_key: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key.verifying_key().to_bytes()
    }

    /// The 20-byte validator address: the first 20 bytes of SHA-256(public key).
    pub fn address(&self) -> [u8; 20] {
        address_of(&self.public_key())
    }

    /// The address as CometBFT prints it: uppercase hex.
    pub fn address_hex(&self) -> String {
        hex::encode_upper(self.address())
    }

    /// The 32-byte seed, wiped when the returned value is dropped.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing_key.to_bytes())
    }

    /// The key as an `ed25519_dalek` signing key (for the single-key signer and for tests).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// The key as CometBFT writes `priv_validator_key.json` (`cmtjson.MarshalIndent` with a
    /// two-space indent, no trailing newline), so that a key that came from such a file is
    /// written back byte for byte. The text holds the seed and is wiped on drop.
    pub fn cometbft_json(&self) -> Zeroizing<String> {
        let public = self.public_key();
        let mut private = Zeroizing::new([0u8; 64]);
        private[..32].copy_from_slice(self.signing_key.as_bytes());
        private[32..].copy_from_slice(&public);
        // Base64 of 64 bytes is 88 characters; encoded into a buffer of that size so that no
        // reallocation leaves a copy.
        let mut private_b64 = Zeroizing::new([0u8; 88]);
        let len = BASE64
            .encode_slice(private.as_slice(), private_b64.as_mut_slice())
            .unwrap_or_default();
        // Base64 is ASCII; a failed encoding leaves the value empty, which the caller's
        // reload check refuses.
        let private_text = std::str::from_utf8(&private_b64[..len]).unwrap_or_default();
        let parts = [
            "{\n  \"address\": \"",
            &self.address_hex(),
            "\",\n  \"pub_key\": {\n    \"type\": \"",
            PUB_ED25519,
            "\",\n    \"value\": \"",
            &BASE64.encode(public),
            "\"\n  },\n  \"priv_key\": {\n    \"type\": \"",
            PRIV_ED25519,
            "\",\n    \"value\": \"",
            private_text,
            "\"\n  }\n}",
        ];
        // Allocated once at its final size, for the same reason.
        let mut text = Zeroizing::new(String::with_capacity(parts.iter().map(|p| p.len()).sum()));
        for part in parts {
            text.push_str(part);
        }
        text
    }
}

/// The first 20 bytes of SHA-256(public key).
pub fn address_of(public_key: &[u8; 32]) -> [u8; 20] {
    let digest = Sha256::digest(public_key);
    let mut address = [0u8; 20];
    address.copy_from_slice(&digest[..20]);
    address
}

/// Reads a SecretConnection identity key: base64 of a 32-byte Ed25519 seed, as tmkms writes
/// `kms-identity.key`.
/// The identity key's mode must be private to its owner.
pub fn load_identity_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let err = |problem| key_file_error(path, problem);
    let bytes = secret_file::read_private(path, MAX_KEY_FILE_BYTES).map_err(|p| err(p.into()))?;
    let seed = utf8(&bytes)
        .and_then(|text| parse_base64_seed(text, "identity key"))
        .map_err(err)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The contents of an identity key file: base64 of the 32-byte seed and a newline (tmkms's
/// format).
pub fn identity_key_file_contents(key: &SigningKey) -> Zeroizing<String> {
    // Encoded into a buffer of the final size, so that no reallocation leaves a copy.
    let mut encoded = Zeroizing::new([0u8; 44]);
    let len = BASE64
        .encode_slice(key.as_bytes(), encoded.as_mut_slice())
        .unwrap_or_default();
    let mut text = Zeroizing::new(String::with_capacity(len + 1));
    // Base64 is ASCII; an empty file (the impossible failure) fails its reload check.
    text.push_str(std::str::from_utf8(&encoded[..len]).unwrap_or_default());
    text.push('\n');
    text
}

fn key_file_error(path: &Path, problem: KeyFileProblem) -> KeyFileError {
    KeyFileError {
        path: path.to_path_buf(),
        problem,
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, KeyFileProblem> {
    std::str::from_utf8(bytes).map_err(|_| KeyFileProblem::NotBase64 { field: "key" })
}

fn decode_base64(text: &str, field: &'static str) -> Result<Zeroizing<Vec<u8>>, KeyFileProblem> {
    BASE64
        .decode(text)
        .map(Zeroizing::new)
        .map_err(|_| KeyFileProblem::NotBase64 { field })
}

fn parse_base64_seed(
    text: &str,
    field: &'static str,
) -> Result<Zeroizing<[u8; 32]>, KeyFileProblem> {
    // tmkms writes the base64 with a trailing newline; editors may add `\r\n`.
    let bytes = decode_base64(text.trim_end(), field)?;
    if bytes.len() != 32 {
        return Err(KeyFileProblem::WrongLength {
            field,
            found: bytes.len(),
            expected: "32 (an Ed25519 seed)",
        });
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&bytes);
    Ok(seed)
}

fn parse_cometbft_json(text: &str) -> Result<ValidatorKey, KeyFileProblem> {
    let json: PrivValidatorKeyJson = serde_json::from_str(text)
        .map_err(|e| KeyFileProblem::MalformedJson(secret_file::redacted_json_error(&e)))?;
    if json.priv_key.kind == PRIV_SECP256K1 || json.pub_key.kind == PUB_SECP256K1 {
        return Err(KeyFileProblem::Secp256k1);
    }
    if json.priv_key.kind != PRIV_ED25519 {
        return Err(KeyFileProblem::UnsupportedType {
            field: "priv_key.type",
            found: json.priv_key.kind.clone(),
            expected: PRIV_ED25519,
        });
    }
    if json.pub_key.kind != PUB_ED25519 {
        return Err(KeyFileProblem::UnsupportedType {
            field: "pub_key.type",
            found: json.pub_key.kind.clone(),
            expected: PUB_ED25519,
        });
    }
    let private = decode_base64(&json.priv_key.value, "priv_key.value")?;
    if private.len() != 64 {
        return Err(KeyFileProblem::WrongLength {
            field: "priv_key.value",
            found: private.len(),
            expected: "64 (seed || public key)",
        });
    }
    let public = decode_base64(&json.pub_key.value, "pub_key.value")?;
    if public.len() != 32 {
        return Err(KeyFileProblem::WrongLength {
            field: "pub_key.value",
            found: public.len(),
            expected: "32",
        });
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&private[..32]);
    let key = ValidatorKey::from_seed(&seed);
    let derived = key.public_key();
    if private[32..] != derived {
        return Err(KeyFileProblem::PrivateHalvesDisagree);
    }
    if public.as_slice() != derived {
        return Err(KeyFileProblem::PublicKeyMismatch);
    }
    let expected = key.address_hex();
    if json.address != expected {
        return Err(KeyFileProblem::WrongAddress {
            found: json.address.clone(),
            expected,
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The made-up example from privval-protocol.md §(d).
    const EXAMPLE: &str = r#"{
  "address": "C9F9D8673A92064679F6C83A7926E24CC952B2A7",
  "pub_key": {
    "type": "tendermint/PubKeyEd25519",
    "value": "auxRjzEMlDge96bGG02DdwhT4a3BxuF5+BeCuf6HLl8="
  },
  "priv_key": {
    "type": "tendermint/PrivKeyEd25519",
    "value": "TekHYIvfGyH0XHqAlJlQiX2kgrRbQLOkSJN31luviPdq7FGPMQyUOB73psYbTYN3CFPhrcHG4Xn4F4K5/ocuXw=="
  }
}"#;

    fn write_private(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn load_text(text: &str) -> Result<ValidatorKey, KeyFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_private(dir.path(), "priv_validator_key.json", text.as_bytes());
        let key = ValidatorKey::load(&path);
        // The import path parses the same way, whatever the mode.
        assert_eq!(
            ValidatorKey::load_source(&path)
                .map(|(k, _)| k.public_key())
                .map_err(|e| e.to_string()),
            key.as_ref()
                .map(|k| k.public_key())
                .map_err(|e| e.to_string())
        );
        key
    }

    fn problem(text: &str) -> String {
        let e = load_text(text).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("priv_validator_key.json"), "{msg}");
        msg
    }

    #[test]
    fn loads_the_documented_example() {
        let key = load_text(EXAMPLE).unwrap();
        assert_eq!(
            key.address_hex(),
            "C9F9D8673A92064679F6C83A7926E24CC952B2A7"
        );
        assert_eq!(
            BASE64.encode(key.public_key()),
            "auxRjzEMlDge96bGG02DdwhT4a3BxuF5+BeCuf6HLl8="
        );
        let seed: [u8; 32] = Sha256::digest(b"made-up example key -- do not use").into();
        assert_eq!(*key.seed(), seed);
    }

    #[test]
    fn writes_the_key_file_as_cometbft_does() {
        let key = load_text(EXAMPLE).unwrap();
        let json = key.cometbft_json();
        // The documented example is laid out as CometBFT writes it.
        assert_eq!(json.as_str(), EXAMPLE);
        assert_eq!(json.capacity(), json.len());
        let other = ValidatorKey::from_seed(&[5; 32]);
        assert_eq!(
            load_text(&other.cometbft_json()).unwrap().public_key(),
            other.public_key()
        );
    }

    #[test]
    fn loads_a_softsign_seed_with_or_without_newline() {
        let key = load_text(EXAMPLE).unwrap();
        let b64 = BASE64.encode(*key.seed());
        for text in [b64.clone(), format!("{b64}\n"), format!("{b64}\r\n")] {
            assert_eq!(load_text(&text).unwrap().public_key(), key.public_key());
        }
    }

    #[test]
    fn names_each_problem() {
        assert!(problem("{\"address\": ").contains("malformed JSON"));
        let secp = EXAMPLE
            .replace("PrivKeyEd25519", "PrivKeySecp256k1")
            .replace("PubKeyEd25519", "PubKeySecp256k1");
        assert!(problem(&secp).contains("secp256k1 keys cannot be split"));
        let other = ValidatorKey::from_seed(&[7; 32]);
        let wrong_pub = EXAMPLE.replace(
            "auxRjzEMlDge96bGG02DdwhT4a3BxuF5+BeCuf6HLl8=",
            &BASE64.encode(other.public_key()),
        );
        assert!(problem(&wrong_pub).contains("`pub_key.value` does not match"));
        let example = load_text(EXAMPLE).unwrap();
        let mut private = example.seed().to_vec();
        private.extend_from_slice(&other.public_key());
        let wrong_half = EXAMPLE.replace(
            "TekHYIvfGyH0XHqAlJlQiX2kgrRbQLOkSJN31luviPdq7FGPMQyUOB73psYbTYN3CFPhrcHG4Xn4F4K5/ocuXw==",
            &BASE64.encode(&private),
        );
        assert!(problem(&wrong_half).contains("public half"));
        let truncated = EXAMPLE.replace(
            "TekHYIvfGyH0XHqAlJlQiX2kgrRbQLOkSJN31luviPdq7FGPMQyUOB73psYbTYN3CFPhrcHG4Xn4F4K5/ocuXw==",
            &BASE64.encode(&private[..40]),
        );
        assert!(problem(&truncated).contains("40 bytes; expected 64"));
        let garbage = EXAMPLE.replace("TekHYIvfGyH0", "Tek!YIvfGyH0");
        assert!(problem(&garbage).contains("`priv_key.value` is not valid base64"));
        let wrong_address = EXAMPLE.replace("C9F9D8673A92", "C9F9D8673A93");
        assert!(problem(&wrong_address).contains("does not match the public key"));
        let lowercase = EXAMPLE.replace(
            "C9F9D8673A92064679F6C83A7926E24CC952B2A7",
            "c9f9d8673a92064679f6c83a7926e24cc952b2a7",
        );
        assert!(problem(&lowercase).contains("`address`"));
        assert!(problem("AAAA\n").contains("3 bytes; expected 32"));
        assert!(problem("not base64 at all").contains("not valid base64"));
    }

    #[test]
    fn names_a_missing_file() {
        let msg = ValidatorKey::load(Path::new("/nonexistent/key.json"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/nonexistent/key.json") && msg.contains("cannot read"),
            "{msg}"
        );
    }

    #[test]
    fn identity_key_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let contents = identity_key_file_contents(&key);
        assert_eq!(contents.len(), 45);
        assert!(contents.ends_with('\n'));
        let path = write_private(dir.path(), "identity.key", contents.as_bytes());
        assert_eq!(load_identity_key(&path).unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    fn keys_a_cosigner_keeps_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let identity = write_private(
            dir.path(),
            "identity.key",
            identity_key_file_contents(&SigningKey::from_bytes(&[9; 32])).as_bytes(),
        );
        let key = write_private(dir.path(), "priv_validator_key.json", EXAMPLE.as_bytes());
        for path in [&identity, &key] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let chmod = |p: &Path| format!("chmod 600 {}", p.display());
        let msg = load_identity_key(&identity).unwrap_err().to_string();
        assert!(
            msg.starts_with(&identity.display().to_string())
                && msg.contains("mode 0640")
                && msg.contains(&chmod(&identity)),
            "{msg}"
        );
        let msg = ValidatorKey::load(&key).unwrap_err().to_string();
        assert!(msg.contains(&chmod(&key)), "{msg}");
        // The old signer's file a directory is made from is only read.
        let (imported, bytes) = ValidatorKey::load_source(&key).unwrap();
        assert_eq!(
            imported.address_hex(),
            "C9F9D8673A92064679F6C83A7926E24CC952B2A7"
        );
        assert_eq!(bytes.as_slice(), EXAMPLE.as_bytes());
    }

    #[test]
    fn a_json_error_does_not_quote_the_private_key() {
        // The private key given as a bare string where an object belongs.
        let text = EXAMPLE.replace(
            "\"priv_key\": {\n    \"type\": \"tendermint/PrivKeyEd25519\",\n    \"value\": \"TekHYIvfGyH0XHqAlJlQiX2kgrRbQLOkSJN31luviPdq7FGPMQyUOB73psYbTYN3CFPhrcHG4Xn4F4K5/ocuXw==\"\n  }",
            "\"priv_key\": \"TekHYIvfGyH0XHqAlJlQiX2kgrRbQLOkSJN31luviPdq7FGPMQyUOB73psYbTYN3CFPhrcHG4Xn4F4K5/ocuXw==\"",
        );
        assert_ne!(text, EXAMPLE);
        let msg = problem(&text);
        assert!(
            msg.contains("malformed JSON") && !msg.contains("TekHY"),
            "{msg}"
        );
    }

    #[test]
    fn an_escaped_private_key_still_loads() {
        // `\/` is a legal JSON escape of `/`, which base64 uses: the value is then copied
        // out of the buffer, and that copy is wiped on drop.
        let escaped = EXAMPLE.replace("F4K5/ocuXw", "F4K5\\/ocuXw");
        assert_ne!(escaped, EXAMPLE);
        assert_eq!(
            load_text(&escaped).unwrap().address_hex(),
            "C9F9D8673A92064679F6C83A7926E24CC952B2A7"
        );
    }
}
