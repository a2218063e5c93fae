//! Where a ceremony's share comes from, and how the contributions become keys: the
//! rounds of a DKG (or of a refresh, which deals shares of zero), or a Horcrux import's
//! verifying shares. The machine ([`super::Machine`]) carries the contributions and the
//! round-2 packages between hosts; this part turns them into a checked share.

use std::collections::BTreeMap;

use frost_ed25519::keys::dkg::{round1, round2};
use frost_ed25519::keys::{KeyPackage, VerifyingShare};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::super::abort::Abort;
use super::super::horcrux::import;
use super::super::{dkg, refresh};
use super::{KeySource, Keys, OldShare};
use crate::cluster::PeerId;
use crate::threshold::key_share::{KeyShareFile, KEY_SHARE_VERSION};

pub(super) enum KeyPhase {
    Dkg {
        /// A refresh: the share the new one replaces (the DKG then deals shares of zero).
        refresh: Option<Box<OldShare>>,
        secret1: Option<round1::SecretPackage>,
        received: BTreeMap<PeerId, round1::Package>,
        secret2: Option<round2::SecretPackage>,
        /// Our round-2 package for each peer, made once the echoes agreed.
        outgoing: BTreeMap<PeerId, Zeroizing<Vec<u8>>>,
        incoming: BTreeMap<PeerId, round2::Package>,
    },
    Import {
        key_package: Box<KeyPackage>,
        expected_key: [u8; 32],
        received: BTreeMap<PeerId, VerifyingShare>,
    },
}

impl KeyPhase {
    /// The phase a ceremony starts in, and our own round-1 contribution (its wire bytes).
    pub(super) fn start<R: RngCore + CryptoRng>(
        me: PeerId,
        shares: u16,
        threshold: u16,
        source: KeySource,
        rng: &mut R,
    ) -> Result<(KeyPhase, Vec<u8>), Abort> {
        Ok(match source {
            KeySource::Dkg | KeySource::Refresh(_) => {
                let refresh = match source {
                    KeySource::Refresh(old) => Some(old),
                    _ => None,
                };
                let (secret1, package) = match refresh {
                    Some(_) => refresh::part1(me, shares, threshold, rng)?,
                    None => dkg::part1(me, shares, threshold, rng)?,
                };
                let bytes = dkg::encode_round1(&package)?;
                let phase = KeyPhase::Dkg {
                    refresh,
                    secret1: Some(secret1),
                    received: BTreeMap::new(),
                    secret2: None,
                    outgoing: BTreeMap::new(),
                    incoming: BTreeMap::new(),
                };
                (phase, bytes)
            }
            KeySource::Horcrux {
                key_package,
                expected_key,
            } => {
                let bytes = import::encode_contribution(&key_package)?;
                let share = import::decode_contribution(me, &bytes)?;
                let phase = KeyPhase::Import {
                    key_package,
                    expected_key,
                    received: [(me, share)].into(),
                };
                (phase, bytes)
            }
        })
    }

    /// Takes `from`'s round-1 contribution; returns its canonical bytes (what the echo
    /// digests), so that two encodings of one contribution count as one.
    pub(super) fn take_contribution(
        &mut self,
        from: PeerId,
        bytes: &[u8],
        threshold: u16,
    ) -> Result<Vec<u8>, Abort> {
        Ok(match self {
            KeyPhase::Dkg {
                received, refresh, ..
            } => {
                // A refresh deals shares of zero: the constant term's commitment (the
                // identity) is left out of the package.
                let points = threshold - u16::from(refresh.is_some());
                let package = dkg::decode_round1(from, bytes, threshold, points)?;
                let canonical = dkg::encode_round1(&package)?;
                received.entry(from).or_insert(package);
                canonical
            }
            KeyPhase::Import { received, .. } => {
                let share = import::decode_contribution(from, bytes)?;
                let canonical = import_bytes(&share)?;
                received.entry(from).or_insert(share);
                canonical
            }
        })
    }

    /// DKG parts 2 and 3, or the import's public key package, checked as a share file is
    /// checked on load; `None` while round-2 packages are still missing.
    pub(super) fn make_keys(
        &mut self,
        me: PeerId,
        threshold: u16,
        shares: u16,
    ) -> Result<Option<Keys>, Abort> {
        let (key_package, public_key_package) = match self {
            KeyPhase::Dkg {
                refresh: old,
                secret1,
                received,
                secret2,
                outgoing,
                incoming,
            } => {
                if let Some(s1) = secret1.take() {
                    let (s2, packages) = match old {
                        Some(_) => refresh::part2(s1, received)?,
                        None => dkg::part2(s1, received)?,
                    };
                    *secret2 = Some(s2);
                    *outgoing = packages;
                }
                let Some(s2) = secret2.as_ref() else {
                    return Ok(None);
                };
                if incoming.len() + 1 < usize::from(shares) {
                    return Ok(None);
                }
                match old {
                    Some(old) => refresh::shares(s2, received, incoming, old)?,
                    None => dkg::part3(s2, received, incoming)?,
                }
            }
            KeyPhase::Import {
                key_package,
                expected_key,
                received,
            } => {
                let pkp = import::public_key_package(received, expected_key, threshold)?;
                ((**key_package).clone(), pkp)
            }
        };
        let old = match &*self {
            KeyPhase::Dkg {
                refresh: Some(old), ..
            } => Some(old),
            _ => None,
        };
        let file = KeyShareFile {
            version: KEY_SHARE_VERSION,
            id: me,
            threshold,
            shares,
            epoch: old.map_or(0, |o| o.epoch.saturating_add(1)),
            key_package,
            public_key_package,
            // A DKG key never existed as a seed, and a Horcrux host holds only its shard:
            // such a key can leave the cluster as a key share set, not as a key file. A
            // refresh keeps the key, so the escrow stays valid.
            seed_escrow: old.and_then(|o| o.seed_escrow.clone()),
        };
        file.validate()
            .map_err(|e| Abort::local(format!("the new key share does not check out: {e}")))?;
        let group_key = <[u8; 32]>::try_from(
            file.public_key_package
                .verifying_key()
                .serialize()
                .map_err(|e| Abort::local(format!("cannot encode the group key: {e}")))?
                .as_slice(),
        )
        .map_err(|_| Abort::local("the group key is not 32 bytes"))?;
        let expected = match &*self {
            KeyPhase::Import { expected_key, .. } => Some(*expected_key),
            KeyPhase::Dkg {
                refresh: Some(old), ..
            } => Some(refresh::group_key(&old.public_key_package)?),
            KeyPhase::Dkg { refresh: None, .. } => None,
        };
        if expected.is_some_and(|k| k != group_key) {
            return Err(Abort::local(
                "the new shares' group key differs from the validator key",
            ));
        }
        Ok(Some(Keys {
            epoch: file.epoch,
            key_package: file.key_package.clone(),
            public_key_package: file.public_key_package.clone(),
            group_key,
            seed_escrow: file.seed_escrow.clone(),
        }))
    }
}

fn import_bytes(share: &VerifyingShare) -> Result<Vec<u8>, Abort> {
    share
        .serialize()
        .map_err(|e| Abort::local(format!("cannot encode a verifying share: {e}")))
}
