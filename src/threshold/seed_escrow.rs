//! The seed escrow: the validator's Ed25519 seed, encrypted to the validator key itself and
//! kept in every share file, so that leaving the cluster (`split-key combine`) can give back
//! the original `priv_validator_key.json`.
//!
//! Why it is needed: CometBFT's key file holds the 32-byte *seed*, and FilePV signs with Go's
//! `ed25519.Sign`, which derives the secret scalar and the nonce prefix from SHA-512(seed).
//! FROST shares rebuild only the scalar `a` (clamped SHA-512(seed)[..32] mod l), and the seed
//! cannot be computed back from it. So the dealer, which holds the seed anyway, encrypts it to
//! the group key `A = a·B`. Opening it needs `a·E`, that is the whole scalar, which only `t`
//! shares give: the escrow adds no new secret and no new way in, and the ciphertext alone (or
//! with fewer than `t` shares) tells nothing about the seed. Refreshing shares keeps `a`, so an
//! escrow stays valid across refreshes.
//!
//! Construction (ECIES on edwards25519; the key schedule is modelled on HPKE's, RFC 9180):
//! - `r` uniformly random and nonzero, `E = r·B`, `S = r·A`;
//! - `okm = HKDF-SHA256(salt = empty, ikm = S ‖ E ‖ A, info = "cosigner seed escrow v1")`,
//!   44 bytes: `key = okm[0..32]`, `nonce = okm[32..44]`;
//! - `ciphertext = ChaCha20-Poly1305(key, nonce, aad = A ‖ E, seed)`, 32 bytes and a 16-byte
//!   tag.
//!
//! Only `E` and the ciphertext are stored. Every escrow has its own `r` and so its own key, so
//! a nonce taken from the same key schedule can never repeat under one key; a stored random
//! nonce would add a field and nothing else. Opening computes `S = a·E` (the same point,
//! since `E` has prime order), derives the same key, and checks that the seed it decrypts
//! gives `A` again. `E` and `A` are in both the key derivation and the associated data, so an
//! escrow moved to another key, or with its `E` replaced, does not open.
//!
//! The scalar is also the Ed25519 signing key. Using one key for Schnorr signatures and for
//! this hashed-ElGamal encryption is known to be jointly secure in the random-oracle model,
//! and nothing in this code computes `a·X` for anyone's `X` but in [`SeedEscrow::open`], which
//! only runs offline in `combine`: the cluster is never a decryption oracle.
//!
//! `r`, `S`, the key schedule's input and output and the cipher state are wiped on drop. The
//! HKDF state inside the `hkdf` crate is not (it has no zeroizing option).

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use frost_ed25519::rand_core::{CryptoRng, RngCore};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The escrow format this code writes and reads.
pub const SEED_ESCROW_VERSION: u32 = 1;

/// The key schedule's label: names the scheme and its version.
const INFO: &[u8] = b"cosigner seed escrow v1";
const SEED_LEN: usize = 32;
const TAG_LEN: usize = 16;
const CIPHERTEXT_LEN: usize = SEED_LEN + TAG_LEN;

/// The seed, encrypted to the validator key: public data (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedEscrow {
    /// The escrow format version, [`SEED_ESCROW_VERSION`]; another is refused.
    pub version: u32,
    /// `E = r·B`, compressed.
    #[serde(with = "hex_array")]
    pub ephemeral: [u8; 32],
    /// The encrypted seed and its Poly1305 tag.
    #[serde(with = "hex_array")]
    pub ciphertext: [u8; CIPHERTEXT_LEN],
}

/// Why an escrow was not made or not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowError {
    /// The validator public key is not a point an escrow can be made to.
    #[error("the validator public key is not a valid Ed25519 public key")]
    BadPublicKey,
    /// The escrow has a format version this build does not read.
    #[error("unsupported seed escrow version {0}; this build reads version {SEED_ESCROW_VERSION}")]
    Version(u32),
    /// The escrow's ephemeral key is not a prime-order point, so the escrow was altered.
    #[error(
        "the seed escrow's ephemeral key is not a valid curve point of prime order: the \
         escrow was altered"
    )]
    BadEphemeral,
    /// The key rebuilt from the shares does not give the validator public key.
    #[error("the rebuilt secret key does not belong to the validator public key")]
    WrongSecret,
    /// The ciphertext does not open with the rebuilt key: altered, or another validator's.
    #[error(
        "the seed escrow does not decrypt with the rebuilt key: it was altered, or it was \
         copied from another validator's share files"
    )]
    DoesNotOpen,
    /// The seed opened but does not give the validator public key.
    #[error(
        "the seed in the escrow does not give the validator public key: the escrow was made \
         wrongly"
    )]
    WrongSeed,
    /// HKDF or the cipher refused its input lengths; cannot happen with the fixed sizes used.
    #[error("key derivation failed")]
    Kdf,
}

impl SeedEscrow {
    /// Encrypts `seed` to `public_key`, which must be the key the seed gives (the dealer
    /// checks that by opening the result before writing it).
    pub fn seal<R: RngCore + CryptoRng>(
        seed: &[u8; 32],
        public_key: &[u8; 32],
        rng: &mut R,
    ) -> Result<SeedEscrow, EscrowError> {
        let a_point = public_point(public_key)?;
        let r = loop {
            // 64 bytes reduced mod l: uniform up to a bias of 2^-259.
            let mut wide = Zeroizing::new([0u8; 64]);
            rng.fill_bytes(wide.as_mut_slice());
            let r = Zeroizing::new(Scalar::from_bytes_mod_order_wide(&wide));
            if *r != Scalar::ZERO {
                break r;
            }
        };
        let ephemeral = EdwardsPoint::mul_base(&r).compress().to_bytes();
        let shared = Zeroizing::new(a_point * *r);
        let (cipher, nonce) = key_schedule(&shared, &ephemeral, public_key)?;
        let mut buffer = Zeroizing::new(*seed);
        let tag = cipher
            .encrypt_in_place_detached(&nonce, &aad(public_key, &ephemeral), buffer.as_mut_slice())
            .map_err(|_| EscrowError::Kdf)?;
        let mut ciphertext = [0u8; CIPHERTEXT_LEN];
        ciphertext[..SEED_LEN].copy_from_slice(buffer.as_slice());
        ciphertext[SEED_LEN..].copy_from_slice(&tag);
        Ok(SeedEscrow {
            version: SEED_ESCROW_VERSION,
            ephemeral,
            ciphertext,
        })
    }

    /// Decrypts the seed with the whole secret scalar `secret` of `public_key`, and checks
    /// that the seed gives that public key.
    pub fn open(
        &self,
        secret: &Scalar,
        public_key: &[u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, EscrowError> {
        if self.version != SEED_ESCROW_VERSION {
            return Err(EscrowError::Version(self.version));
        }
        let a_point = public_point(public_key)?;
        if EdwardsPoint::mul_base(secret) != a_point {
            return Err(EscrowError::WrongSecret);
        }
        let e_point = CompressedEdwardsY(self.ephemeral)
            .decompress()
            .filter(|p| !p.is_small_order() && p.is_torsion_free())
            .ok_or(EscrowError::BadEphemeral)?;
        let shared = Zeroizing::new(e_point * secret);
        let (cipher, nonce) = key_schedule(&shared, &self.ephemeral, public_key)?;
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        seed.copy_from_slice(&self.ciphertext[..SEED_LEN]);
        let tag = Tag::from_slice(&self.ciphertext[SEED_LEN..]);
        cipher
            .decrypt_in_place_detached(
                &nonce,
                &aad(public_key, &self.ephemeral),
                seed.as_mut_slice(),
                tag,
            )
            .map_err(|_| EscrowError::DoesNotOpen)?;
        let derived = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        if &derived != public_key {
            return Err(EscrowError::WrongSeed);
        }
        Ok(seed)
    }
}

/// The validator key as a point; it must have prime order, as every key made from a seed has.
fn public_point(public_key: &[u8; 32]) -> Result<EdwardsPoint, EscrowError> {
    CompressedEdwardsY(*public_key)
        .decompress()
        .filter(|p| !p.is_small_order() && p.is_torsion_free())
        .ok_or(EscrowError::BadPublicKey)
}

fn aad(public_key: &[u8; 32], ephemeral: &[u8; 32]) -> [u8; 64] {
    let mut aad = [0u8; 64];
    aad[..32].copy_from_slice(public_key);
    aad[32..].copy_from_slice(ephemeral);
    aad
}

/// The cipher (keyed, wiped on drop) and nonce for the shared point `S`.
fn key_schedule(
    shared: &EdwardsPoint,
    ephemeral: &[u8; 32],
    public_key: &[u8; 32],
) -> Result<(ChaCha20Poly1305, Nonce), EscrowError> {
    let mut ikm = Zeroizing::new([0u8; 96]);
    ikm[..32].copy_from_slice(shared.compress().as_bytes());
    ikm[32..64].copy_from_slice(ephemeral);
    ikm[64..].copy_from_slice(public_key);
    let mut okm = Zeroizing::new([0u8; 44]);
    Hkdf::<Sha256>::new(None, ikm.as_slice())
        .expand(INFO, okm.as_mut_slice())
        .map_err(|_| EscrowError::Kdf)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&okm[..32]));
    let nonce = *Nonce::from_slice(&okm[32..]);
    Ok((cipher, nonce))
}

/// Fixed-length byte arrays as lowercase hex strings, as the rest of the share file has them.
mod hex_array {
    use std::borrow::Cow;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let text: Cow<'de, str> = Deserialize::deserialize(deserializer)?;
        let mut bytes = [0u8; N];
        hex::decode_to_slice(text.as_bytes(), &mut bytes)
            .map_err(|e| D::Error::custom(format!("expected {N} bytes of hex: {e}")))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::deal::frost_signing_key;
    use rand_core::OsRng;

    fn key(seed: [u8; 32]) -> (Scalar, [u8; 32]) {
        let secret = frost_signing_key(&seed).unwrap().to_scalar();
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        (secret, public)
    }

    #[test]
    fn round_trip() {
        for seed in [[0u8; 32], [42; 32], [255; 32]] {
            let (secret, public) = key(seed);
            let escrow = SeedEscrow::seal(&seed, &public, &mut OsRng).unwrap();
            assert_eq!(*escrow.open(&secret, &public).unwrap(), seed);
            // A fresh ephemeral key every time, so no two escrows share a key.
            let again = SeedEscrow::seal(&seed, &public, &mut OsRng).unwrap();
            assert_ne!(again.ephemeral, escrow.ephemeral);
            assert_ne!(again.ciphertext, escrow.ciphertext);
        }
    }

    #[test]
    fn the_wrong_key_does_not_open_it() {
        let seed = [7u8; 32];
        let (_, public) = key(seed);
        let (other_secret, other_public) = key([8; 32]);
        let escrow = SeedEscrow::seal(&seed, &public, &mut OsRng).unwrap();
        // Another key's secret, claimed for this key.
        assert_eq!(
            escrow.open(&other_secret, &public),
            Err(EscrowError::WrongSecret)
        );
        // Another key's secret with its own public key: the escrow is not for that key.
        assert_eq!(
            escrow.open(&other_secret, &other_public),
            Err(EscrowError::DoesNotOpen)
        );
    }

    #[test]
    fn any_tampering_is_detected() {
        let seed = [9u8; 32];
        let (secret, public) = key(seed);
        let escrow = SeedEscrow::seal(&seed, &public, &mut OsRng).unwrap();
        for i in 0..CIPHERTEXT_LEN {
            let mut bad = escrow.clone();
            bad.ciphertext[i] ^= 1;
            assert_eq!(bad.open(&secret, &public), Err(EscrowError::DoesNotOpen));
        }
        for i in 0..32 {
            let mut bad = escrow.clone();
            bad.ephemeral[i] ^= 1;
            let err = bad.open(&secret, &public).unwrap_err();
            assert!(
                matches!(err, EscrowError::BadEphemeral | EscrowError::DoesNotOpen),
                "byte {i}: {err}"
            );
        }
        // Another valid point in place of E.
        let mut bad = escrow.clone();
        bad.ephemeral = EdwardsPoint::mul_base(&Scalar::from(5u8))
            .compress()
            .to_bytes();
        assert_eq!(bad.open(&secret, &public), Err(EscrowError::DoesNotOpen));
        // The identity and a point of small order are refused as points.
        let mut bad = escrow.clone();
        bad.ephemeral = EdwardsPoint::default().compress().to_bytes();
        assert_eq!(bad.open(&secret, &public), Err(EscrowError::BadEphemeral));
        let mut bad = escrow.clone();
        bad.version = 2;
        assert_eq!(bad.open(&secret, &public), Err(EscrowError::Version(2)));
    }

    #[test]
    fn an_escrow_of_a_seed_for_another_key_is_caught() {
        // A dealer bug: the seed of one key sealed to another. It opens, but the seed is
        // refused because it does not give the key.
        let (secret, public) = key([1; 32]);
        let escrow = SeedEscrow::seal(&[2; 32], &public, &mut OsRng).unwrap();
        assert_eq!(escrow.open(&secret, &public), Err(EscrowError::WrongSeed));
    }

    #[test]
    fn json_is_hex_and_round_trips() {
        let seed = [3u8; 32];
        let (_, public) = key(seed);
        let escrow = SeedEscrow::seal(&seed, &public, &mut OsRng).unwrap();
        let json = serde_json::to_value(&escrow).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["ephemeral"].as_str().unwrap().len(), 64);
        assert_eq!(json["ciphertext"].as_str().unwrap().len(), 96);
        let back: SeedEscrow = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, escrow);
        let mut short = json.clone();
        short["ciphertext"] = serde_json::Value::String("00".repeat(47));
        assert!(serde_json::from_value::<SeedEscrow>(short).is_err());
        let mut extra = json;
        extra["nonce"] = serde_json::Value::String(String::new());
        assert!(serde_json::from_value::<SeedEscrow>(extra).is_err());
    }

    #[test]
    fn refuses_a_public_key_that_is_not_one() {
        let identity = EdwardsPoint::default().compress().to_bytes();
        assert_eq!(
            SeedEscrow::seal(&[1; 32], &identity, &mut OsRng),
            Err(EscrowError::BadPublicKey)
        );
    }
}
