//! One signing attempt: the request every chosen participant receives, and the answers
//! collected against it until every share is in.

use std::collections::{BTreeMap, BTreeSet};

use frost_ed25519::keys::PublicKeyPackage;
use frost_ed25519::round1::SigningCommitments;
use frost_ed25519::round2::SignatureShare;

use super::aggregate::{
    aggregate, assemble, group_commitment, group_key, AggregateError, GroupCommitment,
};
use super::inventory::CommitmentInventory;
use crate::threshold::epoch::EpochId;
use crate::threshold::messages::{
    identifier_of, Commitment, DecodeError, DecodedPart, DecodedRequest, PeerId, SignPart,
    SignRequest, SignResponse,
};

/// Commitments of each participant announced in a request as coming next: what the next
/// signing uses, a vote and its extension.
pub const UPCOMING_PER_PARTICIPANT: usize = 2;

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The session has no participants.
    #[error("no participants")]
    NoParticipants,
    /// A participant appears twice.
    #[error("participant {0} is listed twice")]
    Duplicate(PeerId),
    /// A participant's number is not a valid FROST identifier.
    #[error("participant {0} has no FROST identifier")]
    InvalidId(PeerId),
    /// The inventory holds fewer commitments for a participant than the parts need.
    #[error("not enough commitments from participant {0}")]
    NotEnoughCommitments(PeerId),
}

/// Takes one commitment per participant (two with an extension) out of `inventory` and
/// builds the request every participant receives, plus the session that collects answers.
/// Takes nothing unless every participant has enough commitments.
pub fn build_request(
    inventory: &mut CommitmentInventory,
    epoch: EpochId,
    participants: &[PeerId],
    vote_sign_bytes: Vec<u8>,
    extension_sign_bytes: Option<Vec<u8>>,
) -> Result<(SignRequest, SigningSession), BuildError> {
    if participants.is_empty() {
        return Err(BuildError::NoParticipants);
    }
    let needed = if extension_sign_bytes.is_some() { 2 } else { 1 };
    let mut seen = BTreeSet::new();
    for p in participants {
        if !seen.insert(*p) {
            return Err(BuildError::Duplicate(*p));
        }
        identifier_of(*p).ok_or(BuildError::InvalidId(*p))?;
        if inventory.available(*p) < needed {
            return Err(BuildError::NotEnoughCommitments(*p));
        }
    }
    let mut take = |p: PeerId| {
        inventory
            .take_one(p)
            .ok_or(BuildError::NotEnoughCommitments(p))
    };
    let mut vote = Half::new(vote_sign_bytes);
    let mut extension = extension_sign_bytes.map(Half::new);
    for p in participants {
        let (wire, decoded) = take(*p)?;
        vote.wire.insert(*p, wire);
        vote.commitments.insert(*p, decoded);
        if let Some(ext) = &mut extension {
            let (wire, decoded) = take(*p)?;
            ext.wire.insert(*p, wire);
            ext.commitments.insert(*p, decoded);
        }
    }
    let upcoming = participants
        .iter()
        .map(|p| (*p, inventory.upcoming(*p, UPCOMING_PER_PARTICIPANT)))
        .collect();
    let request = SignRequest {
        epoch,
        vote: vote.part(),
        extension: extension.as_ref().map(Half::part),
        upcoming,
    };
    let session = SigningSession {
        vote: vote.into_session_part(),
        extension: extension.map(Half::into_session_part),
        answered: BTreeSet::new(),
    };
    Ok((request, session))
}

/// One message being built: sign bytes and commitments in both forms.
struct Half {
    sign_bytes: Vec<u8>,
    wire: BTreeMap<PeerId, Commitment>,
    commitments: BTreeMap<PeerId, SigningCommitments>,
}

impl Half {
    fn new(sign_bytes: Vec<u8>) -> Half {
        Half {
            sign_bytes,
            wire: BTreeMap::new(),
            commitments: BTreeMap::new(),
        }
    }

    fn part(&self) -> SignPart {
        SignPart {
            sign_bytes: self.sign_bytes.clone(),
            commitments: self.wire.clone(),
        }
    }

    fn into_session_part(self) -> SessionPart {
        SessionPart {
            sign_bytes: self.sign_bytes,
            commitments: self.commitments,
            shares: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug)]
struct SessionPart {
    sign_bytes: Vec<u8>,
    commitments: BTreeMap<PeerId, SigningCommitments>,
    shares: BTreeMap<PeerId, SignatureShare>,
}

/// Why an answer does not fit the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The answer came from a peer that is not in this session.
    #[error("peer {0} was not asked")]
    NotAsked(PeerId),
    /// The peer answered twice.
    #[error("peer {0} already answered")]
    AlreadyAnswered(PeerId),
    /// The request had an extension part, the answer no extension share.
    #[error("peer {0} sent no extension share although one was asked")]
    MissingExtensionShare(PeerId),
    /// The answer carries an extension share, though the request had no extension part.
    #[error("peer {0} sent an extension share nobody asked for")]
    UnexpectedExtensionShare(PeerId),
    /// A share does not decode.
    #[error("peer {peer}: {error}")]
    BadShare {
        /// The peer that sent it.
        peer: PeerId,
        /// What is wrong with it.
        error: DecodeError,
    },
}

/// The signature(s) one signing produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signatures {
    /// The signature of the vote or proposal.
    pub vote: [u8; 64],
    /// The signature of the vote extension, when the request had one.
    pub extension: Option<[u8; 64]>,
}

/// One attempt at a signing: who was asked with which commitments, and who answered.
#[derive(Clone, Debug)]
pub struct SigningSession {
    vote: SessionPart,
    extension: Option<SessionPart>,
    answered: BTreeSet<PeerId>,
}

impl SigningSession {
    /// The participants asked, in id order.
    pub fn participants(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.vote.commitments.keys().copied()
    }

    /// Participants that have not answered yet.
    pub fn pending(&self) -> Vec<PeerId> {
        self.participants()
            .filter(|p| !self.answered.contains(p))
            .collect()
    }

    /// The request as the participants receive it, with the commitments already decoded:
    /// for this cosigner's own participant.
    pub fn decoded_request(&self) -> DecodedRequest {
        let part = |p: &SessionPart| DecodedPart {
            sign_bytes: p.sign_bytes.clone(),
            commitments: p.commitments.clone(),
        };
        DecodedRequest {
            vote: part(&self.vote),
            extension: self.extension.as_ref().map(part),
        }
    }

    /// Whether every participant asked has answered.
    pub fn is_complete(&self) -> bool {
        self.answered.len() == self.vote.commitments.len()
    }

    /// Records the answer of `from` (the authenticated peer it came from). Its fresh
    /// commitments are the caller's to add to the inventory.
    pub fn accept(&mut self, from: PeerId, response: &SignResponse) -> Result<(), AnswerError> {
        if !self.vote.commitments.contains_key(&from) {
            return Err(AnswerError::NotAsked(from));
        }
        if self.answered.contains(&from) {
            return Err(AnswerError::AlreadyAnswered(from));
        }
        let decode = |s: &crate::threshold::messages::Share| {
            s.to_frost()
                .map_err(|error| AnswerError::BadShare { peer: from, error })
        };
        let share = decode(&response.share)?;
        let ext_share = match (&self.extension, &response.extension_share) {
            (Some(_), Some(s)) => Some(decode(s)?),
            (None, None) => None,
            (Some(_), None) => return Err(AnswerError::MissingExtensionShare(from)),
            (None, Some(_)) => return Err(AnswerError::UnexpectedExtensionShare(from)),
        };
        self.vote.shares.insert(from, share);
        if let (Some(ext), Some(s)) = (&mut self.extension, ext_share) {
            ext.shares.insert(from, s);
        }
        self.answered.insert(from);
        Ok(())
    }

    /// The group commitment of every message of this signing. It depends only on the
    /// commitments and the message, so the caller computes it while the shares are on their
    /// way, and [`SigningSession::finish`] then only adds up the shares.
    pub fn precompute(
        &self,
        public_key_package: &PublicKeyPackage,
    ) -> Result<Precomputed, AggregateError> {
        let part =
            |p: &SessionPart| group_commitment(&p.sign_bytes, &p.commitments, public_key_package);
        Ok(Precomputed {
            vote: part(&self.vote)?,
            extension: self.extension.as_ref().map(part).transpose()?,
        })
    }

    /// Aggregates the shares into the final signature(s), each verified strictly under the
    /// group key. With the group commitments precomputed that is a sum and a verification; if
    /// that signature does not verify (or nothing was precomputed), frost's own aggregation
    /// runs and names the participants whose shares are invalid.
    pub fn finish(
        &self,
        public_key_package: &PublicKeyPackage,
        precomputed: Option<&Precomputed>,
    ) -> Result<Signatures, AggregateError> {
        let group_key = group_key(public_key_package)?;
        let part = |p: &SessionPart, r: Option<&[u8; 32]>| {
            r.and_then(|r| assemble(r, &p.shares, &p.sign_bytes, &group_key))
                .map_or_else(
                    || aggregate(&p.sign_bytes, &p.commitments, &p.shares, public_key_package),
                    Ok,
                )
        };
        let vote = part(&self.vote, precomputed.map(|pre| pre.vote.r()))?;
        let extension = match &self.extension {
            None => None,
            Some(e) => Some(part(
                e,
                precomputed.and_then(|pre| pre.extension.as_ref().map(GroupCommitment::r)),
            )?),
        };
        Ok(Signatures { vote, extension })
    }
}

/// The group commitments (the signature's R) of one signing, computed ahead of the shares.
#[derive(Clone, Debug)]
pub struct Precomputed {
    vote: GroupCommitment,
    extension: Option<GroupCommitment>,
}

impl Precomputed {
    /// The vote's (or proposal's) group commitment.
    pub fn vote(&self) -> &GroupCommitment {
        &self.vote
    }

    /// The vote extension's, when the vote carries one.
    pub fn extension(&self) -> Option<&GroupCommitment> {
        self.extension.as_ref()
    }
}
