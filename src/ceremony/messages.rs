//! What cosigners ask each other during a key ceremony, carried by the cluster protocol as
//! `ClusterRequest::Ceremony` and `ClusterResponse::Ceremony` (so one transport, one port and
//! one set of identities serve signing and ceremonies; each side refuses the other's
//! requests).
//!
//! Every request asks the answering cosigner for something it has (see the module
//! documentation of [`crate::ceremony`]); none names its sender, which is the authenticated
//! peer of the connection. FROST values travel in frost's own serialization and are decoded
//! with frost's `deserialize`, which validates them; signing values use the compact wire
//! forms of the signing protocol ([`Commitment`], [`Share`]).

use serde::{Deserialize, Serialize};

use super::file::SessionId;
use crate::threshold::epoch::EpochId;
use crate::threshold::messages::{Commitment, Share};

/// Largest contribution or round-2 package accepted: a round-1 package of a 17-of-32 DKG is
/// about 620 bytes.
pub(crate) const MAX_PACKAGE_BYTES: usize = 4 * 1024;
/// Longest reason a "not yet" or a refusal may carry.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// A SHA-256 digest.
pub(crate) type Digest = [u8; 32];

/// One request of a ceremony.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeremonyRequest {
    /// Which ceremony the requester runs; any other is refused.
    pub session: SessionId,
    /// Which step's message the requester wants.
    pub ask: Ask,
}

/// What is asked for, in protocol order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ask {
    /// The answerer's broadcast: a DKG round-1 package, or an imported verifying share.
    Contribution,
    /// A digest of every contribution the answerer holds, by cosigner `1..=n`.
    Echo,
    /// DKG only: the answerer's round-2 package for the requester (secret, for it alone).
    Round2,
    /// The answerer's nonce commitment for the test signature.
    Commitment,
    /// The answerer's share of the test signature, and the commitments it signed over.
    TestShare,
    /// Whether the answerer verified the test signature, and under which key package.
    Verified,
    /// A refresh: which generation of shares the answerer holds, has staged or is making
    /// ([`RefreshStatus`]). Answered whatever the session, also by a signing cosigner.
    Status,
    /// A join: what the new cosigner needs from every member ([`JoinInfo`]); asked under
    /// the join's prelude session, as the new cosigner learns the generation from it.
    JoinInfo,
    /// A join: the answering helper's repair delta for the requesting helper (secret).
    Delta,
    /// A join: the answering helper's repair sigma, for the new cosigner alone (secret).
    Sigma,
}

impl Ask {
    /// What it is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Ask::Contribution => "its round-1 contribution",
            Ask::Echo => "its echo of every round-1 contribution",
            Ask::Round2 => "its round-2 package",
            Ask::Commitment => "its test-signature commitment",
            Ask::TestShare => "its test-signature share",
            Ask::Verified => "its confirmation that it verified the test signature",
            Ask::Status => "which generation of shares it holds or has staged",
            Ask::JoinInfo => "the key's public package, generation and watermarks",
            Ask::Delta => "its repair delta for us",
            Ask::Sigma => "its repair sigma for the new cosigner",
        }
    }
}

/// The answer to a [`CeremonyRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CeremonyResponse {
    /// The answer to [`Ask::Contribution`]: a DKG round-1 package or an imported verifying share.
    Contribution(Vec<u8>),
    /// One digest per cosigner, in id order.
    Echo(Vec<Digest>),
    /// The answer to [`Ask::Round2`]: the round-2 package for the requester alone.
    Round2(Vec<u8>),
    /// The answer to [`Ask::Commitment`].
    Commitment(Commitment),
    /// The answer to [`Ask::TestShare`].
    TestShare {
        /// The answerer's share of the test signature.
        share: Share,
        /// Every cosigner's commitment as the answerer used it, in id order.
        commitments: Vec<Commitment>,
    },
    /// A digest of the answerer's public key package.
    Verified(Digest),
    /// Which share generation the answerer holds, has staged, or is still making.
    Status(RefreshStatus),
    /// The answer to [`Ask::JoinInfo`].
    JoinInfo(JoinInfo),
    /// The answer to [`Ask::Delta`] (frost's encoding of a scalar).
    Delta(Vec<u8>),
    /// The answer to [`Ask::Sigma`] (frost's encoding of a scalar).
    Sigma(Vec<u8>),
    /// Not available yet: ask again. The reason says what the answerer waits for.
    NotYet(String),
    /// The answerer will not answer this ceremony (another session, a question that does not
    /// belong to it): the requester stops.
    Refused(String),
    /// The answerer stopped its ceremony, for this reason: the requester stops too.
    Aborted(String),
}

/// Where a cosigner is in a refresh, as it answers [`Ask::Status`]; the commit rule
/// ([`crate::ceremony::refresh::settle`]) decides from these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshStatus {
    /// The generation of the share it signs with (`key_share.json`).
    pub current: EpochId,
    /// A new generation's share it has staged durably (`key_share.json.next`).
    pub staged: Option<EpochId>,
    /// The generation its running refresh made and has not staged yet (it may still).
    pub pending: Option<EpochId>,
}

/// What a member tells a cosigner joining: public data only, the same from every member
/// except the watermarks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinInfo {
    /// The members' public key package (frost's encoding).
    pub public_key_package: Vec<u8>,
    /// The generation number of the members' shares.
    pub epoch: u32,
    /// The key's seed escrow, carried to the new cosigner's share unchanged.
    pub seed_escrow: Option<crate::threshold::seed_escrow::SeedEscrow>,
    /// This member's watermark of every chain.
    pub watermarks: Vec<Watermark>,
}

/// The highest position a member has signed on one chain (its sign state, without the
/// sign bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// The chain ID.
    pub chain: String,
    /// The highest height signed.
    pub height: i64,
    /// The round of the last signature at `height`.
    pub round: i64,
    /// The step of it (0: nothing signed).
    pub step: u8,
}

/// Cuts a reason to [`MAX_REASON_BYTES`] (on a character boundary).
pub(crate) fn bounded_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_string();
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &reason[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_on_character_boundaries() {
        assert_eq!(bounded_reason("short"), "short");
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = bounded_reason(&long);
        assert!(cut.len() <= MAX_REASON_BYTES + 3 && cut.ends_with("..."));
    }

    #[test]
    fn a_test_share_of_a_large_cluster_fits_a_frame() {
        let c = Commitment {
            hiding: [1; 32],
            binding: [2; 32],
        };
        let resp = CeremonyResponse::TestShare {
            share: Share([3; 32]),
            commitments: vec![c; 32],
        };
        let len = bincode::serialize(&resp).unwrap().len();
        assert!(len < 3 * 1024, "{len}");
    }
}
