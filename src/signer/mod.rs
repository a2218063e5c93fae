//! The signers a privval session can be served by: one whole key ([`single`]), or the
//! threshold cluster ([`threshold`]).
//!
//! A session turns each SignVote/SignProposal request into a [`SignDoc`] (plus an
//! [`ExtensionDoc`] for a non-nil precommit that needs an extension signature) and asks the
//! signer for a [`SignOutcome`]. The signer owns double-sign protection: whatever it returns
//! has passed its sign-state rules.

mod background;
pub(crate) mod fault;
pub mod observe;
pub mod single;
pub mod threshold;

use crate::consensus::{ExtensionDoc, SignDoc, Timestamp};

/// What a signer returns for one vote or proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignOutcome {
    /// The signature of the vote or proposal.
    pub signature: [u8; 64],
    /// The timestamp to return to the node. It differs from the request's when the signer
    /// returns an earlier signature for a request that differs only in timestamp; the node
    /// adopts it.
    pub timestamp: Timestamp,
    /// The signature of the vote extension, when one was asked for.
    pub extension_signature: Option<[u8; 64]>,
}

/// Why a signer returned no signature; the session's answer follows from it alone.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Refused by the double-sign rules or by policy: answered with a RemoteSignerError, which
    /// the node does not retry.
    #[error("{0}")]
    Refused(String),
    /// Cannot be signed now, and no other signer would do better (a single key whose disk
    /// failed): answered with an error, so the node moves on instead of waiting on us.
    #[error("{0}")]
    Unavailable(String),
    /// This cosigner cannot sign now but another may (no quorum, its disk failed, no quorum
    /// answered in time): the session gives way, dropping the connection unanswered, so that
    /// the node's retry reaches the next cosigner in its accept queue.
    #[error("{0}")]
    GiveWay(String),
}

/// A signer for one validator key.
pub enum Signer {
    /// The whole key, in this process.
    Single(Box<single::SingleSigner>),
    /// A share of the key, signing with the cluster.
    Threshold(threshold::ThresholdSigner),
}

impl Signer {
    /// The validator's public key, answered locally for PubKey requests.
    pub fn public_key(&self) -> [u8; 32] {
        match self {
            Signer::Single(s) => s.public_key(),
            Signer::Threshold(s) => s.public_key(),
        }
    }

    /// Whether this signer signs for `chain_id`.
    pub fn has_chain(&self, chain_id: &str) -> bool {
        match self {
            Signer::Single(s) => s.has_chain(chain_id),
            Signer::Threshold(s) => s.has_chain(chain_id),
        }
    }

    /// Signs `doc` (and its extension). `takeover` says the node has only just connected,
    /// so its previous signer may have died a moment ago.
    pub async fn sign(
        &self,
        doc: SignDoc,
        extension: Option<ExtensionDoc>,
        takeover: bool,
    ) -> Result<SignOutcome, SignError> {
        match self {
            Signer::Single(s) => s.sign(&doc, extension.as_ref()),
            Signer::Threshold(s) => s.sign(doc, extension, takeover).await,
        }
    }

    /// Whether this signer can sign now, as it changes: `None` for a single key, which always
    /// can. Node dialers and sessions follow it to give way to a cosigner that can.
    pub fn availability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        match self {
            Signer::Single(_) => None,
            Signer::Threshold(t) => Some(t.quorum_watch()),
        }
    }

    /// Signs arbitrary bytes (CometBFT v1 SignBytes). The caller has already refused bytes
    /// that could be a consensus message.
    pub async fn sign_raw(&self, bytes: &[u8]) -> Result<[u8; 64], SignError> {
        match self {
            Signer::Single(s) => Ok(s.sign_raw(bytes)),
            Signer::Threshold(_) => Err(SignError::Refused(
                "SignBytes is not supported by the threshold signer".into(),
            )),
        }
    }
}
