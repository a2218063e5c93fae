//! The test signature that proves a ceremony's result before anything is written (pure):
//! one real FROST signing by all `n` cosigners of a fixed message, which every cosigner
//! aggregates itself and checks with frost (naming a cosigner whose share is wrong) and with
//! `ed25519-dalek`'s `verify_strict` under the group key.
//!
//! Each cosigner signs exactly once, over its own view of everyone's commitments, with a
//! nonce that is dropped right after: a cosigner that sent different commitments to
//! different hosts cannot make an honest one sign two packages with one nonce. The views
//! travel with the shares and are compared ([`super::echo::compare`]) before aggregating, so
//! such a cosigner is named rather than the honest one whose share then fails.

use std::collections::BTreeMap;

use frost_ed25519 as frost;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::round1::{SigningCommitments, SigningNonces};
use frost_ed25519::round2::SignatureShare;
use rand_core::{CryptoRng, RngCore};

use super::abort::Abort;
use super::echo;
use super::file::SessionId;
use crate::cluster::PeerId;
use crate::threshold::messages::{identifier_of, peer_of, Commitment, Share};

/// The message every cosigner signs: `0xff` first, so it can never be length-prefixed
/// CometBFT sign bytes, then the session and the group key, so it is signed once per
/// ceremony and means nothing elsewhere.
pub(crate) fn message(session: &SessionId, group_key: &[u8; 32]) -> Vec<u8> {
    let mut m = b"\xffcosigner key ceremony test signature\x00".to_vec();
    m.extend_from_slice(session);
    m.extend_from_slice(group_key);
    m
}

/// One cosigner's part in the test signing.
pub(crate) struct TestSigning {
    me: PeerId,
    shares_total: u16,
    message: Vec<u8>,
    /// Taken (and dropped) by the one signing.
    nonces: Option<SigningNonces>,
    own_commitment: Commitment,
    commitments: BTreeMap<PeerId, (Commitment, SigningCommitments)>,
    /// Our share and the view of the commitments it was made over.
    signed: Option<(Share, Vec<Commitment>, frost::SigningPackage)>,
    shares: BTreeMap<PeerId, SignatureShare>,
}

impl TestSigning {
    /// Commits (round 1 of signing) with our new share.
    pub(crate) fn new<R: RngCore + CryptoRng>(
        me: PeerId,
        shares_total: u16,
        message: Vec<u8>,
        key_package: &KeyPackage,
        rng: &mut R,
    ) -> Result<TestSigning, Abort> {
        let (nonces, commitments) = frost::round1::commit(key_package.signing_share(), rng);
        let own_commitment = Commitment::from_frost(&commitments)
            .map_err(|e| Abort::local(format!("cannot encode our commitment: {e}")))?;
        Ok(TestSigning {
            me,
            shares_total,
            message,
            nonces: Some(nonces),
            own_commitment,
            commitments: [(me, (own_commitment, commitments))].into(),
            signed: None,
            shares: BTreeMap::new(),
        })
    }

    pub(crate) fn own_commitment(&self) -> Commitment {
        self.own_commitment
    }

    pub(crate) fn has_commitment(&self, from: PeerId) -> bool {
        self.commitments.contains_key(&from)
    }

    /// Takes `from`'s commitment; its points are validated by frost.
    pub(crate) fn absorb_commitment(
        &mut self,
        from: PeerId,
        wire: Commitment,
    ) -> Result<(), Abort> {
        let decoded = wire
            .to_frost()
            .map_err(|e| Abort::culprit(from, format!("its test commitment is invalid: {e}")))?;
        self.commitments.insert(from, (wire, decoded));
        Ok(())
    }

    /// Signs once every commitment is in; later calls do nothing.
    pub(crate) fn sign_when_ready(&mut self, key_package: &KeyPackage) -> Result<(), Abort> {
        if self.signed.is_some() || self.commitments.len() != usize::from(self.shares_total) {
            return Ok(());
        }
        let mut by_id = BTreeMap::new();
        for (peer, (_, c)) in &self.commitments {
            let id = identifier_of(*peer)
                .ok_or_else(|| Abort::local(format!("cosigner {peer} has no identifier")))?;
            by_id.insert(id, *c);
        }
        let package = frost::SigningPackage::new(by_id, &self.message);
        // The nonce leaves here and is dropped when this function returns, used or not.
        let nonces = self
            .nonces
            .take()
            .ok_or_else(|| Abort::local("the test nonce was already used"))?;
        let share = frost::round2::sign(&package, &nonces, key_package)
            .map_err(|e| Abort::local(format!("cannot sign the test message: {e}")))?;
        let wire = Share::from_frost(&share)
            .map_err(|e| Abort::local(format!("cannot encode our test share: {e}")))?;
        self.shares.insert(self.me, share);
        let view = self.commitments.values().map(|(w, _)| *w).collect();
        self.signed = Some((wire, view, package));
        Ok(())
    }

    /// Our share and the commitments it was made over, once signed.
    pub(crate) fn own_share(&self) -> Option<(Share, Vec<Commitment>)> {
        self.signed.as_ref().map(|(s, v, _)| (*s, v.clone()))
    }

    pub(crate) fn has_share(&self, from: PeerId) -> bool {
        self.shares.contains_key(&from)
    }

    /// Takes `from`'s share after checking that it signed over the commitments we hold.
    pub(crate) fn absorb_share(
        &mut self,
        from: PeerId,
        share: Share,
        view: &[Commitment],
    ) -> Result<(), Abort> {
        if self.signed.is_none() {
            // Our own view is not complete before we signed; comparing would blame `from`.
            return Err(Abort::local(
                "a test share was taken before our own signing",
            ));
        }
        let ours: BTreeMap<PeerId, Commitment> = self
            .commitments
            .iter()
            .map(|(p, (w, _))| (*p, *w))
            .collect();
        echo::compare(self.me, &ours, from, view, "test-signature commitment")?;
        let decoded = share
            .to_frost()
            .map_err(|e| Abort::culprit(from, format!("its test share is invalid: {e}")))?;
        self.shares.insert(from, decoded);
        Ok(())
    }

    /// Once every share is in: aggregates (frost verifies the result and names a wrong
    /// share) and verifies the signature strictly under `group_key`.
    pub(crate) fn finish(
        &self,
        public_key_package: &PublicKeyPackage,
        group_key: &[u8; 32],
    ) -> Result<Option<[u8; 64]>, Abort> {
        let Some((_, _, package)) = &self.signed else {
            return Ok(None);
        };
        if self.shares.len() != usize::from(self.shares_total) {
            return Ok(None);
        }
        let mut by_id = BTreeMap::new();
        for (peer, s) in &self.shares {
            let id = identifier_of(*peer)
                .ok_or_else(|| Abort::local(format!("cosigner {peer} has no identifier")))?;
            by_id.insert(id, *s);
        }
        let signature =
            frost::aggregate(package, &by_id, public_key_package).map_err(|e| {
                match e.culprits().first().and_then(peer_of) {
                    Some(culprit) => Abort::culprit(
                        culprit,
                        format!(
                            "its test-signature share does not verify under its key share: {e}"
                        ),
                    ),
                    None => Abort::local(format!("the test signature does not aggregate: {e}")),
                }
            })?;
        let bytes = signature
            .serialize()
            .map_err(|e| Abort::local(format!("cannot encode the test signature: {e}")))?;
        let bytes = <[u8; 64]>::try_from(bytes.as_slice())
            .map_err(|_| Abort::local("the test signature is not 64 bytes"))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(group_key)
            .map_err(|e| Abort::local(format!("the group key is not an Ed25519 key: {e}")))?;
        key.verify_strict(&self.message, &ed25519_dalek::Signature::from_bytes(&bytes))
            .map_err(|e| {
                Abort::local(format!(
                    "the test signature fails ed25519 verify_strict under the group key: {e}"
                ))
            })?;
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_ed25519::keys::IdentifierList;
    use rand_core::OsRng;

    fn keys(t: u16, n: u16) -> (BTreeMap<PeerId, KeyPackage>, PublicKeyPackage, [u8; 32]) {
        let (shares, pkp) =
            frost::keys::generate_with_dealer(n, t, IdentifierList::Default, OsRng).unwrap();
        let kps = shares
            .into_iter()
            .map(|(id, s)| (peer_of(&id).unwrap(), KeyPackage::try_from(s).unwrap()))
            .collect();
        let group: [u8; 32] = pkp.verifying_key().serialize().unwrap().try_into().unwrap();
        (kps, pkp, group)
    }

    fn run(n: u16, kps: &BTreeMap<PeerId, KeyPackage>) -> BTreeMap<PeerId, TestSigning> {
        let msg = message(&[9; 32], &[1; 32]);
        let mut all: BTreeMap<PeerId, TestSigning> = kps
            .iter()
            .map(|(p, kp)| {
                (
                    *p,
                    TestSigning::new(*p, n, msg.clone(), kp, &mut OsRng).unwrap(),
                )
            })
            .collect();
        let commitments: Vec<(PeerId, Commitment)> =
            all.iter().map(|(p, s)| (*p, s.own_commitment())).collect();
        for (me, s) in all.iter_mut() {
            for (from, c) in &commitments {
                if from != me {
                    s.absorb_commitment(*from, *c).unwrap();
                }
            }
            s.sign_when_ready(&kps[me]).unwrap();
        }
        all
    }

    #[test]
    fn every_cosigner_verifies_the_same_test_signature() {
        let (kps, pkp, group) = keys(3, 5);
        let mut all = run(5, &kps);
        let shares: Vec<(PeerId, (Share, Vec<Commitment>))> = all
            .iter()
            .map(|(p, s)| (*p, s.own_share().unwrap()))
            .collect();
        for (me, s) in all.iter_mut() {
            assert_eq!(s.finish(&pkp, &group).unwrap(), None, "not all shares yet");
            for (from, (share, view)) in &shares {
                if from != me {
                    s.absorb_share(*from, *share, view).unwrap();
                }
            }
            let signature = s.finish(&pkp, &group).unwrap().unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(&group).unwrap();
            key.verify_strict(
                &s.message,
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .unwrap();
        }
    }

    #[test]
    fn signing_twice_is_impossible_and_a_bad_share_is_named() {
        let (kps, pkp, group) = keys(2, 3);
        let mut all = run(3, &kps);
        // A second call does not sign again (the nonce is gone).
        let first = all.get(&1).unwrap().own_share().unwrap();
        all.get_mut(&1).unwrap().sign_when_ready(&kps[&1]).unwrap();
        assert_eq!(all[&1].own_share().unwrap(), first);
        let (s2, v2) = all[&2].own_share().unwrap();
        let (_, v3) = all[&3].own_share().unwrap();
        let me = all.get_mut(&1).unwrap();
        me.absorb_share(2, s2, &v2).unwrap();
        // Cosigner 3 answers with cosigner 2's share.
        me.absorb_share(3, s2, &v3).unwrap();
        let err = me.finish(&pkp, &group).unwrap_err();
        assert_eq!(err.named(), vec![3], "{err}");
    }

    #[test]
    fn differing_commitments_are_named_before_aggregation() {
        let (kps, _, _) = keys(2, 3);
        let mut all = run(3, &kps);
        let (s2, mut v2) = all[&2].own_share().unwrap();
        // Cosigner 2 says cosigner 3 gave it another commitment.
        v2[2] = all[&1].own_commitment();
        let err = all
            .get_mut(&1)
            .unwrap()
            .absorb_share(2, s2, &v2)
            .unwrap_err();
        assert_eq!(err.named(), vec![3, 2], "{err}");
        let bad = Commitment {
            hiding: [0xff; 32],
            binding: [0xff; 32],
        };
        let mut fresh = TestSigning::new(1, 3, vec![], &kps[&1], &mut OsRng).unwrap();
        assert_eq!(
            fresh.absorb_commitment(2, bad).unwrap_err().named(),
            vec![2]
        );
    }

    #[test]
    fn the_message_cannot_be_sign_bytes() {
        let m = message(&[0; 32], &[0; 32]);
        assert_eq!(m[0], 0xff);
        assert!(crate::consensus::canonical::parse(&m).is_err());
    }
}
