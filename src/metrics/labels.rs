//! The label sets of the series, and the names of what they count.

use prometheus_client::encoding::EncodeLabelSet;

use crate::consensus::Step;
use crate::threshold::messages::RefusalKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ChainLabel {
    pub(super) chain_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StepLabels {
    pub(super) chain_id: String,
    pub(super) step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabels {
    pub(super) chain_id: String,
    pub(super) outcome: &'static str,
}

/// `key` is the `[[key]]` name, empty for a directory of one key (Prometheus reads an empty
/// label as no label).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KeyLabel {
    pub(super) key: String,
}

/// `peerid` as Horcrux names it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PeerLabels {
    pub(super) key: String,
    pub(super) peerid: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) key: String,
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NodeLabel {
    pub(super) node: String,
}

/// Why a signing asked of this cosigner by a node ended without a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignFailure {
    /// Refused (double-sign rules, policy): the node got an error.
    Refused,
    /// Cannot be signed here now and nowhere better (a single key whose disk failed).
    Unavailable,
    /// Left unanswered so that the node retries with another cosigner.
    GaveWay,
}

impl SignFailure {
    pub(super) const ALL: [SignFailure; 3] = [
        SignFailure::Refused,
        SignFailure::Unavailable,
        SignFailure::GaveWay,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            SignFailure::Refused => "refused",
            SignFailure::Unavailable => "unavailable",
            SignFailure::GaveWay => "gave_way",
        }
    }
}

/// Every kind of participant refusal, in the order of [`refusal_index`].
pub(super) const REFUSAL_KINDS: [RefusalKind; 9] = [
    RefusalKind::BadRequest,
    RefusalKind::UnknownCommitment,
    RefusalKind::SignBytes,
    RefusalKind::Watermark,
    RefusalKind::Storage,
    RefusalKind::Internal,
    RefusalKind::CatchingUp,
    RefusalKind::Duplicate,
    RefusalKind::Epoch,
];

pub(super) fn refusal_index(kind: RefusalKind) -> (usize, &'static str) {
    match kind {
        RefusalKind::BadRequest => (0, "bad_request"),
        RefusalKind::UnknownCommitment => (1, "unknown_commitment"),
        RefusalKind::SignBytes => (2, "sign_bytes"),
        RefusalKind::Watermark => (3, "watermark"),
        RefusalKind::Storage => (4, "storage"),
        RefusalKind::Internal => (5, "internal"),
        RefusalKind::CatchingUp => (6, "catching_up"),
        RefusalKind::Duplicate => (7, "duplicate"),
        RefusalKind::Epoch => (8, "epoch"),
    }
}

pub(super) const STEPS: [Step; 3] = [Step::Propose, Step::Prevote, Step::Precommit];
