//! Why a ceremony stopped, with the cosigners to blame named.

use crate::cluster::PeerId;

/// A ceremony that cannot go on. Every variant says who is wrong where it can be known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Abort {
    /// `culprit` provably misbehaved (an invalid package, a failed share check, an echo that
    /// contradicts what it sent us).
    #[error("cosigner {culprit} misbehaved: {what}")]
    Culprit {
        /// The cosigner to blame.
        culprit: PeerId,
        /// What it did.
        what: String,
    },
    /// `sender`'s broadcast differs between our copy and `reporter`'s report of its copy:
    /// one of the two is lying, and without signatures over broadcasts we cannot say which.
    #[error(
        "cosigner {sender}'s {what} differs between what this cosigner and cosigner {reporter} \
         received: cosigner {sender} sent different ones to different cosigners, or cosigner \
         {reporter} misreports what it received"
    )]
    Disagreement {
        /// The cosigner whose message is in dispute.
        sender: PeerId,
        /// The cosigner that reported receiving something else.
        reporter: PeerId,
        /// What differs.
        what: String,
    },
    /// `peer` stopped the ceremony, or refused to take part, and said why.
    #[error("cosigner {peer} ended the ceremony: {reason}")]
    Peer {
        /// The cosigner that ended it.
        peer: PeerId,
        /// The reason it gave.
        reason: String,
    },
    /// Something on this host (bad local files, a failure of our own).
    #[error("{0}")]
    Local(String),
}

impl Abort {
    /// A [`Abort::Culprit`] naming `culprit` for `what`.
    pub fn culprit(culprit: PeerId, what: impl Into<String>) -> Abort {
        Abort::Culprit {
            culprit,
            what: what.into(),
        }
    }

    /// A [`Abort::Local`]: this host's own failure, no cosigner to blame.
    pub fn local(what: impl Into<String>) -> Abort {
        Abort::Local(what.into())
    }

    /// The cosigners this abort names (the first being the most suspect).
    pub fn named(&self) -> Vec<PeerId> {
        match self {
            Abort::Culprit { culprit, .. } => vec![*culprit],
            Abort::Disagreement {
                sender, reporter, ..
            } => vec![*sender, *reporter],
            Abort::Peer { peer, .. } => vec![*peer],
            Abort::Local(_) => Vec::new(),
        }
    }
}
