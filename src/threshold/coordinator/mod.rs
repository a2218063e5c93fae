//! The coordinator's pure logic: which commitments it holds, whom it asks, and how it turns
//! shares into a signature.
//!
//! - [`inventory`]: commitments participants handed us ahead of time ([`CommitmentInventory`]).
//! - [`session`]: one attempt ([`build_request`], [`SigningSession`]).
//! - [`aggregate`](mod@aggregate): shares into a signature ([`aggregate::aggregate`]).
//!
//! Whom to ask and when is [`super::signing`]'s; sending and waiting belong to the caller.

pub(crate) mod aggregate;
pub(crate) mod inventory;
pub(crate) mod session;

pub use aggregate::{aggregate, AggregateError, GroupCommitment};
pub use inventory::{CommitmentInventory, DEFAULT_MAX_PER_PARTICIPANT};
pub use session::{
    build_request, AnswerError, BuildError, Precomputed, Signatures, SigningSession,
    UPCOMING_PER_PARTICIPANT,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::Step;
    use crate::threshold::messages::{ClusterRequest, ClusterResponse, RefusalKind, Share};
    use crate::threshold::messages::{PeerId, SignRequest};
    use crate::threshold::participant::testkit::*;
    use crate::threshold::participant::Participant;
    use frost_ed25519::keys::PublicKeyPackage;
    use rand_core::OsRng;

    const CHAIN: &str = "test-chain";

    /// A coordinator (cosigner `self_id`) with its inventory filled by every member, each
    /// exchange passed through bincode.
    fn fill(group: &[Participant], self_id: PeerId, count: u16) -> CommitmentInventory {
        let mut inventory = CommitmentInventory::default();
        for p in group {
            let ClusterRequest::Commitments { count } =
                wire(&ClusterRequest::Commitments { count })
            else {
                panic!("request changed shape on the wire");
            };
            let answer = wire(&ClusterResponse::Commitments(
                p.handle_commitments(self_id, count, &mut OsRng).unwrap(),
            ));
            let ClusterResponse::Commitments(commitments) = answer else {
                panic!("response changed shape on the wire");
            };
            inventory.add(p.id(), &commitments).unwrap();
        }
        inventory
    }

    /// This coordinator and the first `t - 1` others: whom the engine would pick among
    /// equally fast peers.
    fn choose(group: &[Participant], self_id: PeerId, t: u16) -> Vec<PeerId> {
        std::iter::once(self_id)
            .chain(group.iter().map(|p| p.id()).filter(|p| *p != self_id))
            .take(usize::from(t))
            .collect()
    }

    /// Sends `request` to every participant of `session` through bincode and records answers.
    fn run(
        group: &[Participant],
        self_id: PeerId,
        request: &SignRequest,
        session: &mut SigningSession,
        inventory: &mut CommitmentInventory,
        watermarks: &[RecordingWatermark],
    ) {
        for p in session.participants().collect::<Vec<_>>() {
            let i = usize::from(p) - 1;
            let ClusterRequest::Sign(req) = wire(&ClusterRequest::Sign(request.clone())) else {
                panic!("request changed shape on the wire");
            };
            let answer = match group[i].handle_sign(self_id, &req, &watermarks[i], &mut OsRng) {
                Ok(r) => ClusterResponse::Signed(r),
                Err(r) => ClusterResponse::Refused(r),
            };
            match wire(&answer) {
                ClusterResponse::Signed(resp) => {
                    session.accept(p, &resp).unwrap();
                    inventory.add(p, &resp.commitments).unwrap();
                }
                other => panic!("participant {p} answered {other:?}"),
            }
        }
    }

    fn verify(pkp: &PublicKeyPackage, msg: &[u8], sig: &[u8; 64]) {
        let key: [u8; 32] = pkp.verifying_key().serialize().unwrap().try_into().unwrap();
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .unwrap()
            .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .unwrap();
    }

    fn full_flow(t: u16, n: u16, self_id: PeerId) {
        let (group, pkp) = group(t, n);
        let watermarks: Vec<_> = (0..n).map(|_| RecordingWatermark::default()).collect();
        let mut inventory = fill(&group, self_id, 4);
        for height in 1..=3 {
            let chosen = choose(&group, self_id, t);
            assert_eq!(chosen.len(), usize::from(t));
            assert_eq!(chosen[0], self_id);
            let msg = vote_bytes(CHAIN, height, 0, Step::Prevote, Some("B"));
            let (request, mut session) =
                build_request(&mut inventory, group[0].epoch(), &chosen, msg.clone(), None)
                    .unwrap();
            run(
                &group,
                self_id,
                &request,
                &mut session,
                &mut inventory,
                &watermarks,
            );
            assert!(session.is_complete());
            let sigs = session.finish(&pkp, None).unwrap();
            assert!(sigs.extension.is_none());
            verify(&pkp, &msg, &sigs.vote);
            // The fast path gives the very signature frost's aggregation gives.
            let pre = session.precompute(&pkp).unwrap();
            assert_eq!(session.finish(&pkp, Some(&pre)).unwrap(), sigs);
            // Every participant refilled what it used.
            for p in &chosen {
                assert_eq!(inventory.available(*p), 4);
            }
        }
    }

    #[test]
    fn a_request_announces_what_the_next_signing_uses() {
        let (group, _) = group(2, 3);
        let mut inventory = fill(&group, 1, 4);
        let chosen = vec![1, 2];
        let msg = vote_bytes(CHAIN, 4, 0, Step::Prevote, Some("B"));
        let (first, _) =
            build_request(&mut inventory, group[0].epoch(), &chosen, msg.clone(), None).unwrap();
        let (second, _) =
            build_request(&mut inventory, group[0].epoch(), &chosen, msg, None).unwrap();
        for p in &chosen {
            assert_eq!(first.upcoming[p].len(), UPCOMING_PER_PARTICIPANT);
            assert_eq!(first.upcoming[p][0], second.vote.commitments[p]);
        }
        assert!(
            !first.upcoming.contains_key(&3),
            "only the chosen are announced"
        );
    }

    #[test]
    fn two_of_three_full_flow() {
        full_flow(2, 3, 1);
        full_flow(2, 3, 3);
    }

    #[test]
    fn three_of_five_full_flow() {
        full_flow(3, 5, 2);
    }

    #[test]
    fn vote_and_extension_produce_two_valid_signatures() {
        let (group, pkp) = group(2, 3);
        let watermarks: Vec<_> = (0..3).map(|_| RecordingWatermark::default()).collect();
        let mut inventory = fill(&group, 1, 4);
        let chosen = choose(&group, 1, 2);
        let vote = vote_bytes(CHAIN, 5, 1, Step::Precommit, Some("B"));
        let ext = ext_bytes(CHAIN, 5, 1, "hello");
        let (request, mut session) = build_request(
            &mut inventory,
            group[0].epoch(),
            &chosen,
            vote.clone(),
            Some(ext.clone()),
        )
        .unwrap();
        let ext_part = request.extension.as_ref().unwrap();
        for p in &chosen {
            assert_ne!(request.vote.commitments[p], ext_part.commitments[p]);
        }
        run(
            &group,
            1,
            &request,
            &mut session,
            &mut inventory,
            &watermarks,
        );
        let sigs = session.finish(&pkp, None).unwrap();
        verify(&pkp, &vote, &sigs.vote);
        verify(&pkp, &ext, &sigs.extension.unwrap());
        assert_ne!(Some(sigs.vote), sigs.extension);
        let pre = session.precompute(&pkp).unwrap();
        assert_eq!(session.finish(&pkp, Some(&pre)).unwrap(), sigs);
    }

    #[test]
    fn garbage_share_names_the_culprit() {
        let (group, pkp) = group(3, 5);
        let watermarks: Vec<_> = (0..5).map(|_| RecordingWatermark::default()).collect();
        let mut inventory = fill(&group, 1, 2);
        let chosen = vec![1, 3, 4];
        let msg = vote_bytes(CHAIN, 7, 0, Step::Prevote, Some("B"));
        let (request, mut session) =
            build_request(&mut inventory, group[0].epoch(), &chosen, msg, None).unwrap();
        for p in &chosen {
            let i = usize::from(*p) - 1;
            let mut resp = group[i]
                .handle_sign(1, &request, &watermarks[i], &mut OsRng)
                .unwrap();
            if *p == 4 {
                resp.share = Share([7; 32]);
            }
            session.accept(*p, &wire(&resp)).unwrap();
        }
        assert_eq!(
            session.finish(&pkp, None).unwrap_err(),
            AggregateError::InvalidShares { culprits: vec![4] }
        );
        // With the group commitment precomputed, the bad sum fails strict verification and
        // frost's aggregation still names the culprit.
        let pre = session.precompute(&pkp).unwrap();
        assert_eq!(
            session.finish(&pkp, Some(&pre)).unwrap_err(),
            AggregateError::InvalidShares { culprits: vec![4] }
        );
    }

    #[test]
    fn a_wrong_precomputed_commitment_falls_back_to_frost() {
        let (group, pkp) = group(2, 3);
        let watermarks: Vec<_> = (0..3).map(|_| RecordingWatermark::default()).collect();
        let mut inventory = fill(&group, 1, 4);
        let chosen = vec![1, 2];
        let first = vote_bytes(CHAIN, 8, 0, Step::Prevote, Some("B"));
        let (_, other) =
            build_request(&mut inventory, group[0].epoch(), &chosen, first, None).unwrap();
        let msg = vote_bytes(CHAIN, 9, 0, Step::Prevote, Some("B"));
        let (request, mut session) =
            build_request(&mut inventory, group[0].epoch(), &chosen, msg.clone(), None).unwrap();
        run(
            &group,
            1,
            &request,
            &mut session,
            &mut inventory,
            &watermarks,
        );
        // The R of another signing makes a signature that does not verify.
        let wrong = other.precompute(&pkp).unwrap();
        let sigs = session.finish(&pkp, Some(&wrong)).unwrap();
        verify(&pkp, &msg, &sigs.vote);
        assert_eq!(sigs, session.finish(&pkp, None).unwrap());
    }

    #[test]
    fn reusing_a_request_is_refused_by_participants() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let mut inventory = fill(&group, 1, 1);
        let (request, _) = build_request(
            &mut inventory,
            group[0].epoch(),
            &[1, 2],
            vote_bytes(CHAIN, 1, 0, Step::Prevote, Some("B")),
            None,
        )
        .unwrap();
        group[1].handle_sign(1, &request, &wm, &mut OsRng).unwrap();
        let refused = group[1]
            .handle_sign(1, &request, &wm, &mut OsRng)
            .unwrap_err();
        assert_eq!(refused.kind, RefusalKind::UnknownCommitment);
        // The coordinator's inventory no longer holds them either.
        assert_eq!(inventory.available(1), 0);
        assert_eq!(inventory.available(2), 0);
    }

    #[test]
    fn inventory_is_fifo_and_bounded() {
        let (group, _) = group(2, 3);
        let issued = group[1].handle_commitments(1, 5, &mut OsRng).unwrap();
        let mut inventory = CommitmentInventory::new(3);
        inventory.add(2, &issued).unwrap();
        assert_eq!(inventory.available(2), 3);
        for expected in &issued[2..] {
            assert_eq!(inventory.take_one(2).unwrap().0, *expected);
        }
        assert!(inventory.take_one(2).is_none());

        let mut bad = issued[0];
        bad.hiding = [0xff; 32];
        assert!(inventory.add(2, &[issued[1], bad]).is_err());
        assert_eq!(inventory.available(2), 0);
    }

    #[test]
    fn build_takes_nothing_unless_everyone_has_enough() {
        let (group, _) = group(2, 3);
        let mut inventory = fill(&group, 1, 1);
        let err = build_request(
            &mut inventory,
            group[0].epoch(),
            &[1, 2],
            vote_bytes(CHAIN, 1, 0, Step::Precommit, Some("B")),
            Some(ext_bytes(CHAIN, 1, 0, "x")),
        )
        .unwrap_err();
        assert_eq!(err, BuildError::NotEnoughCommitments(1));
        assert_eq!(inventory.available(1), 1);
        assert_eq!(
            build_request(&mut inventory, group[0].epoch(), &[1, 1], vec![], None).unwrap_err(),
            BuildError::Duplicate(1)
        );
    }

    #[test]
    fn session_rejects_strangers_duplicates_and_missing_parts() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let mut inventory = fill(&group, 1, 2);
        let (request, mut session) = build_request(
            &mut inventory,
            group[0].epoch(),
            &[1, 2],
            vote_bytes(CHAIN, 1, 0, Step::Precommit, Some("B")),
            Some(ext_bytes(CHAIN, 1, 0, "x")),
        )
        .unwrap();
        let resp = group[1].handle_sign(1, &request, &wm, &mut OsRng).unwrap();
        assert_eq!(session.accept(3, &resp), Err(AnswerError::NotAsked(3)));
        let mut without_ext = resp.clone();
        without_ext.extension_share = None;
        assert_eq!(
            session.accept(2, &without_ext),
            Err(AnswerError::MissingExtensionShare(2))
        );
        session.accept(2, &resp).unwrap();
        assert_eq!(
            session.accept(2, &resp),
            Err(AnswerError::AlreadyAnswered(2))
        );
        assert_eq!(session.pending(), vec![1]);
        assert!(!session.is_complete());
    }

    #[test]
    fn own_share_from_the_coordinators_group_commitment_is_frosts_round_two() {
        use frost_ed25519::keys::{generate_with_dealer, IdentifierList, KeyPackage};
        use frost_ed25519::{round1, round2, SigningPackage};
        use std::collections::BTreeMap;

        let (shares, pkp) = generate_with_dealer(3, 2, IdentifierList::Default, OsRng).unwrap();
        let keys: Vec<KeyPackage> = shares
            .into_values()
            .map(|s| KeyPackage::try_from(s).unwrap())
            .collect();
        let (nonces, commitments): (Vec<_>, Vec<_>) = keys[..2]
            .iter()
            .map(|k| round1::commit(k.signing_share(), &mut OsRng))
            .unzip();
        let by_peer: BTreeMap<PeerId, _> = (1..=2).zip(commitments).collect();
        let msg = b"sign bytes";
        let pre = aggregate::group_commitment(msg, &by_peer, &pkp).unwrap();
        let by_id = by_peer
            .iter()
            .map(|(p, c)| (crate::threshold::messages::identifier_of(*p).unwrap(), *c))
            .collect::<BTreeMap<_, _>>();
        let package = SigningPackage::new(by_id.clone(), msg);
        for (key, nonce) in keys.iter().zip(&nonces) {
            let ours = pre.own_share(&package, nonce, key).unwrap().unwrap();
            let frosts = round2::sign(&package, nonce, key).unwrap();
            assert_eq!(ours.serialize(), frosts.serialize());
        }
        // Another message's package: not for these group commitments.
        let other = SigningPackage::new(by_id, b"other sign bytes");
        assert!(pre.own_share(&other, &nonces[0], &keys[0]).is_none());
        // The nonces of another member: refused as frost refuses them.
        assert!(pre
            .own_share(&package, &nonces[1], &keys[0])
            .unwrap()
            .is_err());
    }
}
