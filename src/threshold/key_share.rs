//! The `key_share.json` file each cosigner loads (made by the dealer,
//! [`crate::threshold::deal`], or by a ceremony).
//!
//! Loading a share file re-checks everything the file can check about itself, so a share that
//! does not belong to its public key package, or a package whose shares are not on one
//! polynomial of degree t-1 through the group key, is refused at start-up and not mid-vote.
//!
//! Secrets stay in wiping containers where this code holds them: the file is read into one
//! buffer wiped on drop and must be private to its owner ([`crate::secret_file`]); its hex
//! strings are parsed in place (serde borrows them); the share lives in frost's
//! `KeyPackage`, which zeroizes itself; JSON is written into a buffer sized exactly, so no
//! reallocation leaves a copy. What this code cannot reach: frost's `SigningShare` is `Copy`
//! and its API takes and returns it (and scalars) by value, so a few stack temporaries inside
//! frost-core, curve25519-dalek and sha2 are not wiped.

use std::io::Write;
use std::path::{Path, PathBuf};

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use frost_ed25519 as frost;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage, VerifyingShare};
use frost_ed25519::Identifier;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::epoch::KeyEpoch;
pub use super::quorum::{check_threshold, ThresholdError, MAX_COSIGNERS};
use crate::secret_file::{self, LooseMode, SecretFileProblem};
use crate::threshold::seed_escrow::SeedEscrow;

/// The `version` of the share files this code writes and reads.
pub const KEY_SHARE_VERSION: u32 = 1;

/// Share files hold two packages and a few numbers; anything much larger is not one.
const MAX_SHARE_FILE_BYTES: usize = 256 * 1024;

/// One cosigner's `key_share.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyShareFile {
    /// The file format version, [`KEY_SHARE_VERSION`]; another is refused.
    pub version: u32,
    /// This share's FROST identifier as a number, 1..=shares.
    pub id: u16,
    /// How many cosigners must sign together (`t`).
    pub threshold: u16,
    /// How many shares were dealt (`n`).
    pub shares: u16,
    /// Which generation of shares of the key this is: 0 from a split or a DKG, one more at
    /// every refresh ([`super::epoch`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u32,
    /// Secret: this cosigner's signing share.
    pub key_package: KeyPackage,
    /// Public: every cosigner's verifying share and the group key, the same in every share file.
    pub public_key_package: PublicKeyPackage,
    /// The validator's seed encrypted to the group key (public; see
    /// [`crate::threshold::seed_escrow`]), the same in every share file of a split. Absent in files written before it existed, and
    /// for a key that never had a seed; signing does not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_escrow: Option<SeedEscrow>,
}

impl KeyShareFile {
    /// Pretty JSON and a newline; the text holds the secret share and is wiped on drop.
    pub fn to_json(&self) -> Result<Zeroizing<String>, serde_json::Error> {
        // Measured first, so that the buffer is allocated once at its final size: a
        // growing one would leave copies of the share behind in freed memory.
        let mut counter = ByteCounter(0);
        serde_json::to_writer_pretty(&mut counter, self)?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(counter.0 + 1));
        serde_json::to_writer_pretty(&mut *bytes, self)?;
        bytes.push(b'\n');
        // serde_json writes UTF-8 only; the conversion takes the buffer over without a copy.
        let text = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
            serde_json::Error::io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
        Ok(Zeroizing::new(text))
    }

    /// The cosigner numbers of the public key package, ascending: `1..=n` after a split or a
    /// DKG, a subset of them after a refresh that removed cosigners.
    pub fn members(&self) -> Result<Vec<u16>, KeyShareProblem> {
        let mut members = Vec::with_capacity(self.public_key_package.verifying_shares().len());
        for id in self.public_key_package.verifying_shares().keys() {
            match crate::threshold::messages::peer_of(id) {
                Some(peer) if (1..=MAX_COSIGNERS).contains(&peer) => members.push(peer),
                _ => {
                    return Err(KeyShareProblem::Inconsistent(
                        "public_key_package.verifying_shares has an identifier that is not a \
                         cosigner number 1..=32",
                    ))
                }
            }
        }
        members.sort_unstable();
        Ok(members)
    }

    /// Checks everything the file can check about itself and returns its identifier.
    pub fn validate(&self) -> Result<Identifier, KeyShareProblem> {
        if self.version != KEY_SHARE_VERSION {
            return Err(KeyShareProblem::Version {
                found: self.version,
            });
        }
        check_threshold(self.threshold, self.shares).map_err(KeyShareProblem::Threshold)?;
        let members = self.members()?;
        if usize::from(self.shares) != members.len() {
            return Err(KeyShareProblem::Inconsistent(
                "public_key_package.verifying_shares must list exactly `shares` cosigners",
            ));
        }
        if !members.contains(&self.id) {
            return Err(KeyShareProblem::IdOutOfRange {
                id: self.id,
                members: members_list(&members),
            });
        }
        let id = identifier(self.id)?;
        let kp = &self.key_package;
        let pkp = &self.public_key_package;
        if *kp.identifier() != id {
            return Err(KeyShareProblem::Inconsistent(
                "key_package.identifier differs from `id`",
            ));
        }
        if *kp.min_signers() != self.threshold {
            return Err(KeyShareProblem::Inconsistent(
                "key_package.min_signers differs from `threshold`",
            ));
        }
        if pkp.min_signers() != Some(self.threshold) {
            return Err(KeyShareProblem::Inconsistent(
                "public_key_package.min_signers differs from `threshold`",
            ));
        }
        if pkp.verifying_shares().get(&id) != Some(kp.verifying_share()) {
            return Err(KeyShareProblem::Inconsistent(
                "key_package.verifying_share differs from the public key package's entry for `id`",
            ));
        }
        // `from` takes the share by value: the copy is held in a wiping wrapper here, and the
        // argument's temporary is frost's to keep.
        let share = Zeroizing::new(*kp.signing_share());
        if VerifyingShare::from(*share) != *kp.verifying_share() {
            return Err(KeyShareProblem::Inconsistent(
                "key_package.signing_share does not match its verifying_share",
            ));
        }
        if kp.verifying_key() != pkp.verifying_key() {
            return Err(KeyShareProblem::Inconsistent(
                "key_package.verifying_key differs from the public key package's group key",
            ));
        }
        check_public_shares(pkp, self.threshold)?;
        Ok(id)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Counts what is written and keeps nothing.
struct ByteCounter(usize);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A loaded, checked key share.
#[derive(Clone, Debug)]
pub struct KeyShare {
    file: KeyShareFile,
    id: Identifier,
    group_public_key: [u8; 32],
    epoch: KeyEpoch,
}

impl KeyShare {
    /// Checks a share file's contents (see [`KeyShareFile::validate`]).
    pub fn from_file(file: KeyShareFile) -> Result<KeyShare, KeyShareProblem> {
        let id = file.validate()?;
        let group_public_key = group_key_bytes(&file.public_key_package)?;
        let epoch = KeyEpoch::of(file.epoch, &file.public_key_package);
        Ok(KeyShare {
            file,
            id,
            group_public_key,
            epoch,
        })
    }

    /// This share's FROST identifier.
    pub fn id(&self) -> Identifier {
        self.id
    }
    /// The identifier as the number used in configs and file names.
    pub fn index(&self) -> u16 {
        self.file.id
    }
    /// Secret: this cosigner's signing share, with the group's public data.
    pub fn key_package(&self) -> &KeyPackage {
        &self.file.key_package
    }
    /// Every cosigner's verifying share and the group key.
    pub fn public_key_package(&self) -> &PublicKeyPackage {
        &self.file.public_key_package
    }
    /// The group's Ed25519 public key: the validator's consensus public key.
    pub fn group_public_key(&self) -> [u8; 32] {
        self.group_public_key
    }
    /// How many cosigners must sign together (`t`).
    pub fn threshold(&self) -> u16 {
        self.file.threshold
    }
    /// How many shares the key was dealt into (`n`).
    pub fn shares(&self) -> u16 {
        self.file.shares
    }
    /// Which generation of shares this is.
    pub fn epoch(&self) -> KeyEpoch {
        self.epoch
    }
    /// The file as loaded.
    pub fn file(&self) -> &KeyShareFile {
        &self.file
    }
    /// The seed escrow, if the share file has one.
    pub fn seed_escrow(&self) -> Option<&SeedEscrow> {
        self.file.seed_escrow.as_ref()
    }
}

/// A share file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct KeyShareError {
    /// The share file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: KeyShareProblem,
}

/// What is wrong with a share file.
#[derive(Debug, thiserror::Error)]
pub enum KeyShareProblem {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// The file is larger than any share file, so it is not read whole.
    #[error("file is larger than {MAX_SHARE_FILE_BYTES} bytes; not a key share")]
    TooLarge,
    /// Its group or others may access the file; a share must be private to its owner.
    #[error(transparent)]
    Loose(LooseMode),
    /// The file is not the share JSON; the reason never quotes its contents.
    #[error("malformed key share JSON: {0}")]
    Malformed(String),
    /// The file has a format version this build does not read.
    #[error("unsupported version {found}; this build reads version {KEY_SHARE_VERSION}")]
    Version {
        /// The version the file carries.
        found: u32,
    },
    /// Its threshold and share count do not make a safe cluster.
    #[error("{0}")]
    Threshold(ThresholdError),
    /// Its identifier is not one of the cosigners of its public key package.
    #[error("id {id} is not one of the cosigners {members} of its public key package")]
    IdOutOfRange {
        /// The identifier it carries.
        id: u16,
        /// The package's cosigners, as a list for the message.
        members: String,
    },
    /// Its parts disagree with each other; says how.
    #[error("inconsistent key share: {0}")]
    Inconsistent(&'static str),
    /// A package does not hold valid FROST key material.
    #[error("invalid key material: {0}")]
    Frost(frost::Error),
}

/// Reads and checks a cosigner's `key_share.json`, which must be private to its owner.
pub fn load(path: &Path) -> Result<KeyShare, KeyShareError> {
    let err = |problem| KeyShareError {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = secret_file::read_private(path, MAX_SHARE_FILE_BYTES).map_err(|p| {
        err(match p {
            SecretFileProblem::Read(e) => KeyShareProblem::Read(e),
            SecretFileProblem::TooLarge(_) => KeyShareProblem::TooLarge,
            SecretFileProblem::Loose(l) => KeyShareProblem::Loose(l),
        })
    })?;
    let file: KeyShareFile = serde_json::from_slice(&bytes).map_err(|e| {
        err(KeyShareProblem::Malformed(
            secret_file::redacted_json_error(&e),
        ))
    })?;
    KeyShare::from_file(file).map_err(err)
}

pub(super) fn identifier(index: u16) -> Result<Identifier, KeyShareProblem> {
    Identifier::try_from(index).map_err(KeyShareProblem::Frost)
}

pub(super) fn group_key_bytes(pkp: &PublicKeyPackage) -> Result<[u8; 32], KeyShareProblem> {
    let bytes = pkp
        .verifying_key()
        .serialize()
        .map_err(KeyShareProblem::Frost)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| KeyShareProblem::Inconsistent("group key is not 32 bytes"))
}

fn point(bytes: &[u8]) -> Result<EdwardsPoint, KeyShareProblem> {
    let compressed = CompressedEdwardsY::from_slice(bytes)
        .map_err(|_| KeyShareProblem::Inconsistent("a public key is not 32 bytes"))?;
    compressed.decompress().ok_or(KeyShareProblem::Inconsistent(
        "a public key is not a curve point",
    ))
}

/// The cosigner numbers for messages: "1, 2, 3".
pub fn members_list(members: &[u16]) -> String {
    members
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that the verifying shares lie on one polynomial of degree t-1 whose value at 0 is
/// the group key, i.e. that every t-subset of shares yields the group key. The polynomial is
/// fixed by the t lowest ids; every other share and the group key must match its Lagrange
/// interpolation. The ids are the cosigner numbers (`1..=n`, or a subset after a refresh
/// that removed cosigners).
fn check_public_shares(pkp: &PublicKeyPackage, t: u16) -> Result<(), KeyShareProblem> {
    let mut points = Vec::with_capacity(pkp.verifying_shares().len());
    for (id, share) in pkp.verifying_shares() {
        let x = crate::threshold::messages::peer_of(id).ok_or(KeyShareProblem::Inconsistent(
            "public_key_package.verifying_shares has an identifier that is not a cosigner number",
        ))?;
        points.push((
            u64::from(x),
            point(&share.serialize().map_err(KeyShareProblem::Frost)?)?,
        ));
    }
    let group = point(&group_key_bytes(pkp)?)?;
    let (base, rest) = points.split_at(usize::from(t).min(points.len()));
    let targets = std::iter::once((0u64, group)).chain(rest.iter().copied());
    for (x, expected) in targets {
        let mut interpolated = EdwardsPoint::default();
        for &(i, p) in base {
            let mut num = Scalar::ONE;
            let mut den = Scalar::ONE;
            for &(j, _) in base.iter().filter(|(j, _)| *j != i) {
                num *= Scalar::from(x) - Scalar::from(j);
                den *= Scalar::from(i) - Scalar::from(j);
            }
            interpolated += p * (num * den.invert());
        }
        if interpolated != expected {
            return Err(KeyShareProblem::Inconsistent(
                "the public key package's shares do not all lie on one polynomial through the group key",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::deal::{deal, DealtShares};
    use crate::validator_key::ValidatorKey;
    use rand_core::OsRng;

    fn dealt(t: u16, n: u16) -> (ValidatorKey, DealtShares) {
        let key = ValidatorKey::from_seed(&[42; 32]);
        let shares = deal(&key, t, n, &mut OsRng).unwrap();
        (key, shares)
    }

    #[test]
    fn every_share_file_carries_one_escrow_of_the_seed() {
        let (key, dealt) = dealt(2, 3);
        let escrow = dealt.share_files()[0].seed_escrow.clone().unwrap();
        for f in dealt.share_files() {
            assert_eq!(f.seed_escrow.as_ref(), Some(&escrow));
        }
        // t shares rebuild the scalar, which opens it.
        let packages: Vec<_> = dealt.share_files()[1..]
            .iter()
            .map(|f| f.key_package.clone())
            .collect();
        let scalar = frost::keys::reconstruct(&packages).unwrap().to_scalar();
        assert_eq!(
            *escrow.open(&scalar, &key.public_key()).unwrap(),
            *key.seed()
        );
        // A file without it, as split-key wrote them before, still loads.
        let json = dealt.share_files()[0].to_json().unwrap();
        assert!(json.contains("\"seed_escrow\""));
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value.as_object_mut().unwrap().remove("seed_escrow");
        let old: KeyShareFile = serde_json::from_value(value).unwrap();
        assert!(KeyShare::from_file(old).unwrap().seed_escrow().is_none());
    }

    #[test]
    fn load_names_the_file_and_refuses_tampering() {
        let (_, dealt) = dealt(2, 3);
        let (_, other) = dealt_other();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key_share.json");
        let check = |file: &KeyShareFile, want: &str| {
            write_private(&path, file.to_json().unwrap().as_bytes());
            let msg = load(&path).unwrap_err().to_string();
            assert!(
                msg.contains("key_share.json") && msg.contains(want),
                "{msg}"
            );
        };
        let good = dealt.share_files()[1].clone();
        let mut f = good.clone();
        f.version = 2;
        check(&f, "version 2");
        let mut f = good.clone();
        f.id = 3;
        check(&f, "identifier differs");
        let mut f = good.clone();
        f.id = 4;
        check(&f, "not one of the cosigners 1, 2, 3");
        let mut f = good.clone();
        f.threshold = 3;
        check(&f, "min_signers");
        let mut f = good.clone();
        f.public_key_package = other.share_files()[1].public_key_package.clone();
        check(&f, "verifying_share differs");
        let mut f = good.clone();
        f.key_package = dealt.share_files()[0].key_package.clone();
        f.id = 1;
        f.public_key_package = good.public_key_package.clone();
        assert!(KeyShare::from_file(f).is_ok());
        // A public key package whose shares belong to two different polynomials.
        let mut shares = good.public_key_package.verifying_shares().clone();
        let id3 = Identifier::try_from(3).unwrap();
        shares.insert(
            id3,
            other.share_files()[2]
                .key_package
                .verifying_share()
                .to_owned(),
        );
        let mut f = good.clone();
        f.public_key_package =
            PublicKeyPackage::new(shares, *good.public_key_package.verifying_key(), Some(2));
        check(&f, "one polynomial");
        write_private(&path, b"{");
        assert!(load(&path).unwrap_err().to_string().contains("malformed"));
        let _ = std::fs::remove_file(&path);
        let msg = load(&path).unwrap_err().to_string();
        assert!(msg.contains("cannot read"), "{msg}");
    }

    fn write_private(path: &Path, contents: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::remove_file(path);
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn a_share_others_can_read_is_refused_with_the_chmod_to_run() {
        use std::os::unix::fs::PermissionsExt;
        let (_, dealt) = dealt(2, 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key_share.json");
        write_private(&path, dealt.share_files()[0].to_json().unwrap().as_bytes());
        assert!(load(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let msg = load(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with(&path.display().to_string())
                && msg.contains("mode 0644")
                && msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
    }

    #[test]
    fn share_json_is_written_into_one_allocation_of_its_final_size() {
        let (_, dealt) = dealt(2, 3);
        let json = dealt.share_files()[0].to_json().unwrap();
        assert!(json.ends_with("}\n"));
        assert_eq!(json.capacity(), json.len());
    }

    #[test]
    fn a_malformed_share_does_not_quote_its_secret() {
        let (_, dealt) = dealt(2, 3);
        let json = dealt.share_files()[0].to_json().unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let secret = value["key_package"]["signing_share"]
            .as_str()
            .unwrap()
            .to_string();
        // The share where a number belongs: serde would quote it in its message.
        let broken = json.replace(
            "\"min_signers\": 2",
            &format!("\"min_signers\": \"{secret}\""),
        );
        assert_ne!(broken.as_str(), json.as_str());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key_share.json");
        write_private(&path, broken.as_bytes());
        let msg = load(&path).unwrap_err().to_string();
        assert!(msg.contains("malformed") && !msg.contains(&secret), "{msg}");
    }

    fn dealt_other() -> (ValidatorKey, DealtShares) {
        let key = ValidatorKey::from_seed(&[43; 32]);
        let shares = deal(&key, 2, 3, &mut OsRng).unwrap();
        (key, shares)
    }
}
