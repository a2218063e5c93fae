//! Key epochs: which generation of shares of the validator key a cosigner holds.
//!
//! A refresh (`cosigner refresh`) gives every cosigner new shares of the same key; shares of
//! two generations do not combine into a valid signature. Each generation is named by its
//! public key package (every verifying share changes at a refresh, the group key does not),
//! so cosigners agree on it without being told: the epoch id is a digest of that package,
//! and the number (`epoch` in `key_share.json`, 0 for a split or a DKG) is for people.
//!
//! Every signing request carries the coordinator's epoch id and a participant refuses one of
//! another epoch before it touches a nonce, so a signing never mixes generations.

use std::fmt;

use frost_ed25519::keys::PublicKeyPackage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The digest naming one generation of shares.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EpochId(pub [u8; 32]);

impl EpochId {
    /// What a cosigner being added reports as the generation it holds: none yet (no
    /// package hashes to all zeros).
    pub const NONE: EpochId = EpochId([0; 32]);

    /// The id of the generation whose public key package is `pkp`.
    pub fn of(pkp: &PublicKeyPackage) -> EpochId {
        let mut h = Sha256::new();
        h.update(b"cosigner key epoch v1\x00");
        h.update(pkp.verifying_key().to_element().compress().as_bytes());
        for (id, share) in pkp.verifying_shares() {
            h.update(id.serialize());
            h.update(share.to_element().compress().as_bytes());
        }
        h.update(pkp.min_signers().unwrap_or(0).to_be_bytes());
        EpochId(h.finalize().into())
    }
}

impl fmt::Display for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..6]))
    }
}

impl fmt::Debug for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EpochId({self})")
    }
}

/// A generation of shares: its number and its id.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct KeyEpoch {
    /// The generation: 0 from a split or a DKG, one more at every refresh.
    pub number: u32,
    /// The digest of the public key package, which tells two generations of one number apart.
    pub id: EpochId,
}

impl KeyEpoch {
    /// The epoch `number` of the shares whose public key package is `pkp`.
    pub fn of(number: u32, pkp: &PublicKeyPackage) -> KeyEpoch {
        KeyEpoch {
            number,
            id: EpochId::of(pkp),
        }
    }
}

impl fmt::Display for KeyEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key epoch {} ({})", self.number, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_ed25519::keys::{generate_with_dealer, IdentifierList};
    use rand_core::OsRng;

    #[test]
    fn the_id_names_the_package() {
        let (_, a) = generate_with_dealer(3, 2, IdentifierList::Default, OsRng).unwrap();
        let (_, b) = generate_with_dealer(3, 2, IdentifierList::Default, OsRng).unwrap();
        assert_eq!(EpochId::of(&a), EpochId::of(&a.clone()));
        assert_ne!(EpochId::of(&a), EpochId::of(&b));
        let epoch = KeyEpoch::of(2, &a);
        assert_eq!(epoch.to_string(), format!("key epoch 2 ({})", epoch.id));
        assert_eq!(epoch.id.to_string().len(), 12);
    }
}
