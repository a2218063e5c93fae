//! The watermark a whole key leaves the cluster with: for one chain, the highest of the
//! cosigners' watermarks. Pure; the files are read and written by the caller.
//!
//! Why the highest of `t` is enough: every signature the cluster made needed `t` cosigners,
//! each of which recorded its watermark before releasing its share, and with `t > n/2` any
//! `t` directories include at least one of them. So no signature the validator made is above
//! the highest of any `t` cosigners' watermarks.

use cosigner::sign_state::{LastSigned, Position, SignState, ValidatorSigned};
use ed25519_dalek::VerifyingKey;

/// The combined watermark of one chain, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Highest {
    /// The state to write: the highest position, with what was signed there only when a
    /// signature over it is known (see [`highest`]).
    pub state: SignState,
    /// Which of the inputs (by index) are at that position.
    pub at_top: Vec<usize>,
    /// The input whose sign bytes and signature are kept, if any.
    pub signed_by: Option<usize>,
}

/// The highest of `states` (at least one), for a validator with public key `key`.
///
/// The sign bytes at the top position are kept only together with a signature that verifies
/// strictly under `key` over exactly those bytes (a cosigner keeps one when it learns the
/// cluster's aggregate). That signature proves these bytes are what the validator signed
/// there, so FilePV may answer a repeat of them. A participant's own record without a
/// signature proves only that it released a share: another quorum may have signed other
/// bytes at that position, so without a signature only the position is kept, and FilePV
/// then refuses anything at exactly that position.
pub fn highest(states: &[SignState], key: &VerifyingKey) -> Option<Highest> {
    let top = states.iter().map(SignState::position).max()?;
    let at_top: Vec<usize> = (0..states.len())
        .filter(|&i| states[i].position() == top)
        .collect();
    let signed = at_top.iter().find_map(|&i| {
        let last = states[i].last.as_ref()?;
        let signature = last.signature?;
        let proven = ValidatorSigned::verify(&last.doc.sign_bytes, signature, key).ok()?;
        (Position::of(&proven.doc().hrs) == top).then_some((i, proven))
    });
    let (signed_by, last) = match signed {
        Some((i, proven)) => (
            Some(i),
            Some(LastSigned {
                doc: proven.doc().clone(),
                signature: Some(proven.signature()),
            }),
        ),
        None => (None, None),
    };
    Some(Highest {
        state: SignState {
            height: top.height,
            round: top.round,
            step: top.step,
            last,
        },
        at_top,
        signed_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cosigner::consensus::SignDoc;
    use cosigner::privval::messages::{Timestamp, Vote, WireBlockId, WirePartSetHeader};
    use cosigner::privval::sign_doc::vote_sign_doc;
    use ed25519_dalek::{Signer, SigningKey};

    const CHAIN: &str = "test-chain";

    fn vote(height: i64, round: i32, precommit: bool, block: u8) -> SignDoc {
        let v = Vote {
            r#type: if precommit { 2 } else { 1 },
            height,
            round,
            block_id: Some(WireBlockId {
                hash: vec![block; 32],
                part_set_header: Some(WirePartSetHeader {
                    total: 1,
                    hash: vec![block; 32],
                }),
            }),
            timestamp: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Vote::default()
        };
        vote_sign_doc(CHAIN, &v).unwrap()
    }

    fn signed(key: &SigningKey, doc: &SignDoc) -> SignState {
        SignState::after(doc, Some(key.sign(&doc.sign_bytes).to_bytes()))
    }

    fn share_only(doc: &SignDoc) -> SignState {
        SignState::after(doc, None)
    }

    #[test]
    fn takes_the_highest_position() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let vk = key.verifying_key();
        let states = [
            share_only(&vote(10, 0, true, 1)),
            share_only(&vote(11, 2, false, 1)),
            share_only(&vote(11, 1, true, 1)),
            SignState::fresh(),
        ];
        let h = highest(&states, &vk).unwrap();
        assert_eq!(h.state.position().to_string(), "11/2/prevote");
        assert_eq!(h.at_top, vec![1]);
        // A share alone proves nothing about what the cluster signed there.
        assert_eq!(h.signed_by, None);
        assert!(h.state.last.is_none());
        assert_eq!(highest(&[], &vk), None);
        let fresh = highest(&[SignState::fresh(), SignState::fresh()], &vk).unwrap();
        assert_eq!(fresh.state, SignState::fresh());
    }

    #[test]
    fn keeps_sign_bytes_only_with_a_signature_that_verifies() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let vk = key.verifying_key();
        let top = vote(12, 0, true, 1);
        // Cosigner 0 only released a share; cosigner 1 learned the aggregate.
        let states = [
            share_only(&top),
            signed(&key, &top),
            signed(&key, &vote(9, 0, true, 1)),
        ];
        let h = highest(&states, &vk).unwrap();
        assert_eq!(h.at_top, vec![0, 1]);
        assert_eq!(h.signed_by, Some(1));
        assert_eq!(h.state, states[1]);

        // A signature by another key, or over other bytes, is not kept.
        let other = SigningKey::from_bytes(&[2; 32]);
        let mut forged = signed(&key, &top);
        forged.last.as_mut().unwrap().signature = Some(other.sign(&top.sign_bytes).to_bytes());
        let mut wrong_bytes = signed(&key, &top);
        wrong_bytes.last.as_mut().unwrap().signature =
            Some(key.sign(&vote(12, 0, true, 2).sign_bytes).to_bytes());
        let h = highest(&[forged, wrong_bytes, share_only(&top)], &vk).unwrap();
        assert_eq!(h.signed_by, None);
        assert_eq!(h.state.position(), top_position(&top));
        assert!(h.state.last.is_none());
    }

    fn top_position(doc: &SignDoc) -> Position {
        Position::of(&doc.hrs)
    }

    #[test]
    fn a_lower_signed_state_does_not_lend_its_bytes() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let states = [
            signed(&key, &vote(12, 0, false, 1)),
            share_only(&vote(12, 0, true, 1)),
        ];
        let h = highest(&states, &key.verifying_key()).unwrap();
        assert_eq!(h.state.position().to_string(), "12/0/precommit");
        assert_eq!(h.signed_by, None);
        assert!(h.state.last.is_none());
    }
}
