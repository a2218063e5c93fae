//! FROST key shares: turning a validator's Ed25519 key into FROST shares (the trusted-dealer
//! split that `split-key` runs) and the `key_share.json` file each cosigner loads.
//!
//! The dealer proves its own output before anyone sees it: the group key must equal the
//! validator's public key, every share must pass the VSS check, and t-subsets of the shares
//! must produce signatures that strict Ed25519 verification accepts under the original key.
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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use frost_ed25519 as frost;
use frost_ed25519::keys::{IdentifierList, KeyPackage, PublicKeyPackage, VerifyingShare};
use frost_ed25519::rand_core::{CryptoRng, RngCore};
use frost_ed25519::Identifier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, Zeroizing};

use super::epoch::KeyEpoch;
pub use super::quorum::{check_threshold, ThresholdError, MAX_COSIGNERS};
use crate::secret_file::{self, LooseMode, SecretFileProblem};
use crate::threshold::seed_escrow::{self, SeedEscrow};
use crate::validator_key::ValidatorKey;

/// The `version` of the share files this code writes and reads.
pub const KEY_SHARE_VERSION: u32 = 1;

/// Above this many t-subsets the dealer checks a sample instead of all of them; see [`deal`].
pub const MAX_SUBSETS_CHECKED: usize = 2000;

/// Share files hold two packages and a few numbers; anything much larger is not one.
const MAX_SHARE_FILE_BYTES: usize = 256 * 1024;

/// Why a key could not be dealt.
#[derive(Debug, thiserror::Error)]
pub enum DealError {
    /// The threshold and share count do not make a safe cluster.
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    /// The validator key does not convert to a FROST signing key.
    #[error("cannot turn the validator key into a FROST key: {0}")]
    Key(frost::Error),
    /// frost-ed25519's trusted-dealer split failed.
    #[error("FROST split failed: {0}")]
    Split(frost::Error),
    /// The dealer's own output failed its self-check; nothing may be written.
    #[error("self-check of the dealt shares failed: {0}")]
    SelfCheck(String),
    /// The seed could not be encrypted to the validator key.
    #[error("cannot escrow the seed: {0}")]
    Escrow(seed_escrow::EscrowError),
}

/// The FROST signing key with the same public key as the Ed25519 key with this seed
/// (RFC 8032 §5.1.5): SHA-512 of the seed, first half clamped, reduced mod l. The second half
/// of the hash (RFC 8032's nonce prefix) is not used: FROST nonces are random.
pub fn frost_signing_key(seed: &[u8; 32]) -> Result<frost::SigningKey, frost::Error> {
    let mut h = Zeroizing::new([0u8; 64]);
    let mut hasher = Sha512::new();
    hasher.update(seed);
    hasher.finalize_into(h.as_mut_slice().into());
    // The clamped half, with the unused half cleared, read as one 512-bit little-endian
    // integer is the clamped integer itself: reducing it through a reference keeps it in
    // this wiped buffer instead of passing a copy by value.
    h[32..].zeroize();
    h[0] &= 248;
    h[31] &= 127;
    h[31] |= 64;
    // The clamped integer is in [2^254, 2^255), above l: FROST needs the canonical form, and
    // since B has order l the reduced scalar gives the same public key.
    let s = Zeroizing::new(Scalar::from_bytes_mod_order_wide(&h));
    // frost takes the scalar by value; the key it returns zeroizes itself on drop.
    frost::SigningKey::from_scalar(*s)
}

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
    /// The validator's seed encrypted to the group key (public; see [`seed_escrow`]), the
    /// same in every share file of a split. Absent in files written before it existed, and
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

/// The output of [`deal`]: one share file per cosigner, already self-checked.
#[derive(Debug)]
pub struct DealtShares {
    threshold: u16,
    files: Vec<KeyShareFile>,
    public_key_package: PublicKeyPackage,
    subsets_checked: usize,
}

impl DealtShares {
    /// How many cosigners must sign together (`t`).
    pub fn threshold(&self) -> u16 {
        self.threshold
    }
    /// How many shares were dealt (`n`).
    pub fn shares(&self) -> u16 {
        self.files.len() as u16
    }
    /// Share files in identifier order: `share_files()[i]` has id `i + 1`.
    pub fn share_files(&self) -> &[KeyShareFile] {
        &self.files
    }
    /// Every cosigner's verifying share and the group key, the same in every share.
    pub fn public_key_package(&self) -> &PublicKeyPackage {
        &self.public_key_package
    }
    /// How many t-subsets produced a signature that verified during the self-check.
    pub fn subsets_checked(&self) -> usize {
        self.subsets_checked
    }
}

/// Splits `key` into `shares` FROST shares of which `threshold` can sign, and checks the
/// result before returning it.
///
/// The check signs a fixed self-check message with t-subsets of the shares and verifies each
/// signature with `ed25519_dalek::VerifyingKey::verify_strict` under the validator's public
/// key. While C(n, t) <= [`MAX_SUBSETS_CHECKED`] every t-subset is checked. Beyond that
/// (only possible for large n, e.g. 17-of-32) the check covers the n "rotations"
/// `{i, i+1, .., i+t-1 mod n}`, so every share signs at least t times in different company,
/// plus uniformly random t-subsets up to [`MAX_SUBSETS_CHECKED`] in total. Because every
/// share also passes the VSS check and the public shares are checked to lie on one polynomial
/// of degree t-1 through the group key, the sample is a belt-and-braces test of the signing
/// path, not the only evidence that every subset works.
///
/// The self-check signatures are over a message that is not CometBFT sign bytes, and are
/// dropped immediately.
pub fn deal<R: RngCore + CryptoRng>(
    key: &ValidatorKey,
    threshold: u16,
    shares: u16,
    rng: &mut R,
) -> Result<DealtShares, DealError> {
    check_threshold(threshold, shares)?;
    let secret = frost_signing_key(key.signing_key().as_bytes()).map_err(DealError::Key)?;
    let (secret_shares, public_key_package) =
        frost::keys::split(&secret, shares, threshold, IdentifierList::Default, rng)
            .map_err(DealError::Split)?;
    let public_key = key.public_key();
    let self_check = |what: String| DealError::SelfCheck(what);
    let escrow = SeedEscrow::seal(&key.seed(), &public_key, rng).map_err(DealError::Escrow)?;
    // Opened once with the whole scalar before anything is written, so that an escrow that
    // could not give the seed back is never dealt.
    let scalar = Zeroizing::new(secret.to_scalar());
    let opened = escrow
        .open(&scalar, &public_key)
        .map_err(|e| self_check(format!("the seed escrow does not open: {e}")))?;
    if *opened != *key.seed() {
        return Err(self_check("the seed escrow gives another seed".into()));
    }
    drop((opened, scalar));
    if group_key_bytes(&public_key_package).ok() != Some(public_key) {
        return Err(self_check(
            "the group key differs from the validator's public key".into(),
        ));
    }

    let mut key_packages = BTreeMap::new();
    let mut files = Vec::with_capacity(usize::from(shares));
    for index in 1..=shares {
        let id = identifier(index).map_err(|e| self_check(e.to_string()))?;
        let secret_share = secret_shares
            .get(&id)
            .ok_or_else(|| self_check(format!("share {index} is missing")))?;
        let key_package = KeyPackage::try_from(secret_share.clone())
            .map_err(|e| self_check(format!("share {index} fails the VSS check: {e}")))?;
        let file = KeyShareFile {
            version: KEY_SHARE_VERSION,
            id: index,
            threshold,
            shares,
            epoch: 0,
            key_package: key_package.clone(),
            public_key_package: public_key_package.clone(),
            seed_escrow: Some(escrow.clone()),
        };
        file.validate()
            .map_err(|e| self_check(format!("share {index}: {e}")))?;
        key_packages.insert(id, key_package);
        files.push(file);
    }
    drop(secret_shares);

    let verifying_key = ed25519_dalek::VerifyingKey::from_bytes(&public_key)
        .map_err(|e| self_check(format!("validator public key: {e}")))?;
    let subsets = subsets_to_check(shares, threshold, rng);
    for subset in &subsets {
        let message = self_check_message(subset);
        let signature = sign_with(subset, &key_packages, &public_key_package, &message, rng)
            .map_err(|e| self_check(format!("shares {subset:?} cannot sign: {e}")))?;
        verifying_key
            .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
            .map_err(|e| {
                self_check(format!(
                    "signature by shares {subset:?} fails verify_strict: {e}"
                ))
            })?;
    }
    Ok(DealtShares {
        threshold,
        files,
        public_key_package,
        subsets_checked: subsets.len(),
    })
}

/// `0xff` first so the bytes can never be a length-prefixed CometBFT sign-bytes message.
fn self_check_message(subset: &[u16]) -> Vec<u8> {
    let mut message = b"\xffsplit-key self-check\x00".to_vec();
    for id in subset {
        message.extend_from_slice(&id.to_be_bytes());
    }
    message
}

/// One full FROST signing (both rounds and aggregation) by the shares in `subset`.
fn sign_with<R: RngCore + CryptoRng>(
    subset: &[u16],
    key_packages: &BTreeMap<Identifier, KeyPackage>,
    public_key_package: &PublicKeyPackage,
    message: &[u8],
    rng: &mut R,
) -> Result<[u8; 64], frost::Error> {
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for &index in subset {
        let id = Identifier::try_from(index)?;
        let key_package = key_packages
            .get(&id)
            .ok_or(frost::Error::UnknownIdentifier)?;
        let (n, c) = frost::round1::commit(key_package.signing_share(), rng);
        nonces.insert(id, n);
        commitments.insert(id, c);
    }
    let signing_package = frost::SigningPackage::new(commitments, message);
    let mut signature_shares = BTreeMap::new();
    for (id, n) in nonces {
        let key_package = key_packages
            .get(&id)
            .ok_or(frost::Error::UnknownIdentifier)?;
        signature_shares.insert(id, frost::round2::sign(&signing_package, &n, key_package)?);
    }
    let signature = frost::aggregate(&signing_package, &signature_shares, public_key_package)?;
    let bytes = signature.serialize()?;
    <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| frost::Error::MalformedSignature)
}

/// C(n, k), saturating: how many k-subsets n shares have.
pub fn binomial(n: u16, k: u16) -> u128 {
    if k > n {
        return 0;
    }
    let (n, k) = (u128::from(n), u128::from(k.min(n - k)));
    (0..k).fold(1u128, |acc, i| acc.saturating_mul(n - i) / (i + 1))
}

/// The t-subsets of 1..=n the dealer signs with (see [`deal`]), each sorted ascending.
fn subsets_to_check<R: RngCore>(n: u16, t: u16, rng: &mut R) -> Vec<Vec<u16>> {
    if binomial(n, t) <= MAX_SUBSETS_CHECKED as u128 {
        return all_subsets(n, t);
    }
    let mut out: Vec<Vec<u16>> = (0..n)
        .map(|start| {
            let mut s: Vec<u16> = (0..t).map(|k| (start + k) % n + 1).collect();
            s.sort_unstable();
            s
        })
        .collect();
    let mut pool: Vec<u16> = (1..=n).collect();
    while out.len() < MAX_SUBSETS_CHECKED {
        // Partial Fisher-Yates; the slight modulo bias is irrelevant for a test sample.
        for i in 0..usize::from(t) {
            let j = i + (rng.next_u32() as usize) % (pool.len() - i);
            pool.swap(i, j);
        }
        let mut s = pool[..usize::from(t)].to_vec();
        s.sort_unstable();
        out.push(s);
    }
    out
}

fn all_subsets(n: u16, t: u16) -> Vec<Vec<u16>> {
    let mut out = Vec::new();
    let mut current: Vec<u16> = (1..=t).collect();
    loop {
        out.push(current.clone());
        // Advance to the next combination in lexicographic order.
        let mut i = usize::from(t);
        while i > 0 && current[i - 1] == n - t + i as u16 {
            i -= 1;
        }
        if i == 0 {
            return out;
        }
        current[i - 1] += 1;
        for j in i..usize::from(t) {
            current[j] = current[j - 1] + 1;
        }
    }
}

fn identifier(index: u16) -> Result<Identifier, KeyShareProblem> {
    Identifier::try_from(index).map_err(KeyShareProblem::Frost)
}

fn group_key_bytes(pkp: &PublicKeyPackage) -> Result<[u8; 32], KeyShareProblem> {
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
    use rand_core::OsRng;

    fn dealt(t: u16, n: u16) -> (ValidatorKey, DealtShares) {
        let key = ValidatorKey::from_seed(&[42; 32]);
        let shares = deal(&key, t, n, &mut OsRng).unwrap();
        (key, shares)
    }

    #[test]
    fn frost_key_matches_dalek_scalar_and_public_key() {
        for seed in [[0u8; 32], [42; 32], [255; 32]] {
            let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
            let frost_key = frost_signing_key(&seed).unwrap();
            assert_eq!(frost_key.serialize(), dalek.to_scalar().to_bytes().to_vec());
            let vk = frost::VerifyingKey::from(&frost_key);
            assert_eq!(
                vk.serialize().unwrap(),
                dalek.verifying_key().to_bytes().to_vec()
            );
        }
    }

    #[test]
    fn refuses_bad_thresholds() {
        let key = ValidatorKey::from_seed(&[1; 32]);
        for (t, n, want) in [
            (1, 3, ThresholdError::TooSmall { t: 1, n: 3 }),
            (4, 3, ThresholdError::AboveShares { t: 4, n: 3 }),
            (2, 4, ThresholdError::NoMajority { t: 2, n: 4 }),
            (3, 6, ThresholdError::NoMajority { t: 3, n: 6 }),
            (20, 33, ThresholdError::TooManyShares { n: 33 }),
        ] {
            match deal(&key, t, n, &mut OsRng) {
                Err(DealError::Threshold(got)) => assert_eq!(got, want),
                other => panic!("{t}-of-{n}: {other:?}"),
            }
        }
        assert!(check_threshold(2, 2).is_ok());
        assert!(check_threshold(17, 32).is_ok());
    }

    #[test]
    fn enumerates_every_subset() {
        let all = all_subsets(5, 3);
        assert_eq!(all.len(), 10);
        assert_eq!(all[0], vec![1, 2, 3]);
        assert_eq!(all[9], vec![3, 4, 5]);
        let unique: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), 10);
        assert_eq!(binomial(7, 5), 21);
        assert_eq!(binomial(32, 17), 565_722_720);
    }

    #[test]
    fn samples_large_clusters_covering_every_share() {
        let sample = subsets_to_check(32, 17, &mut OsRng);
        assert_eq!(sample.len(), MAX_SUBSETS_CHECKED);
        for id in 1..=32 {
            assert!(sample.iter().any(|s| s.contains(&id)));
        }
        assert!(sample
            .iter()
            .all(|s| s.len() == 17 && s.windows(2).all(|w| w[0] < w[1])));
    }

    #[test]
    fn deals_checks_and_round_trips_through_json() {
        let (key, dealt) = dealt(3, 5);
        assert_eq!(dealt.subsets_checked(), 10);
        for file in dealt.share_files() {
            let json = file.to_json().unwrap();
            let back: KeyShareFile = serde_json::from_str(&json).unwrap();
            let share = KeyShare::from_file(back).unwrap();
            assert_eq!(share.group_public_key(), key.public_key());
            assert_eq!(share.threshold(), 3);
            assert_eq!(share.id(), Identifier::try_from(file.id).unwrap());
        }
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
