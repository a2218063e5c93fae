//! The trusted-dealer split that `split-key` runs: a validator's Ed25519 key into FROST
//! shares, one [`KeyShareFile`] per cosigner.
//!
//! The dealer proves its own output before anyone sees it: the group key must equal the
//! validator's public key, every share must pass the VSS check, and t-subsets of the shares
//! must produce signatures that strict Ed25519 verification accepts under the original key.

use std::collections::BTreeMap;

use curve25519_dalek::scalar::Scalar;
use frost_ed25519 as frost;
use frost_ed25519::keys::{IdentifierList, KeyPackage, PublicKeyPackage};
use frost_ed25519::rand_core::{CryptoRng, RngCore};
use frost_ed25519::Identifier;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, Zeroizing};

use super::key_share::{group_key_bytes, identifier, KeyShareFile, KEY_SHARE_VERSION};
use super::quorum::{check_threshold, ThresholdError};
use super::seed_escrow::{self, SeedEscrow};
use crate::validator_key::ValidatorKey;

/// Above this many t-subsets the dealer checks a sample instead of all of them; see [`deal`].
pub const MAX_SUBSETS_CHECKED: usize = 2000;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::key_share::KeyShare;
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
}
