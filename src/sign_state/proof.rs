//! What the sign state vouches for: that a document's watermark is on disk ([`Recorded`]),
//! and that the validator key really signed a document ([`ValidatorSigned`]).

use ed25519_dalek::{Signature, VerifyingKey};

use crate::consensus::{canonical, SignDoc};

/// Proof that the sign state authorized a document and that its watermark is on disk: the
/// only thing that releases signature shares computed for it. Only [`super::ChainSignState`]
/// makes one, so no other code can claim a watermark it did not write.
#[derive(Debug)]
pub struct Recorded {
    doc: SignDoc,
}

impl Recorded {
    pub(super) fn new(doc: &SignDoc) -> Recorded {
        Recorded { doc: doc.clone() }
    }

    /// The document whose watermark is on disk.
    pub fn doc(&self) -> &SignDoc {
        &self.doc
    }

    /// TEST ONLY: a proof without a state file behind it, for the in-memory watermarks of
    /// unit tests and benchmarks.
    #[cfg(any(test, feature = "testkit"))]
    pub fn assume_recorded(doc: &SignDoc) -> Recorded {
        Recorded::new(doc)
    }
}

/// Why a reported signature is not one the validator made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSigned {
    /// The sign bytes are neither a vote nor a proposal; carries why.
    #[error("the sign bytes do not parse: {0}")]
    SignBytes(String),
    /// The sign bytes parse but are not the canonical encoding of what they hold.
    #[error("the sign bytes are not canonical")]
    NotCanonical,
    /// The signature is not a strictly valid Ed25519 signature over the sign bytes.
    #[error("the signature does not verify under the validator key")]
    BadSignature,
}

/// A vote or proposal with a signature that verifies strictly under the validator key:
/// something the validator signed, whoever reports it. No single cosigner can make one, so a
/// peer's report of one can be believed without trusting the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSigned {
    doc: SignDoc,
    signature: [u8; 64],
}

impl ValidatorSigned {
    /// Parses `sign_bytes` strictly and checks `signature` over them under `key`.
    pub fn verify(
        sign_bytes: &[u8],
        signature: [u8; 64],
        key: &VerifyingKey,
    ) -> Result<ValidatorSigned, NotSigned> {
        let doc = canonical::parse(sign_bytes).map_err(|e| NotSigned::SignBytes(e.to_string()))?;
        if doc.sign_bytes != sign_bytes {
            return Err(NotSigned::NotCanonical);
        }
        key.verify_strict(sign_bytes, &Signature::from_bytes(&signature))
            .map_err(|_| NotSigned::BadSignature)?;
        Ok(ValidatorSigned { doc, signature })
    }

    /// A signature this process made itself or aggregated and verified: no check needed.
    pub(crate) fn made_here(doc: SignDoc, signature: [u8; 64]) -> ValidatorSigned {
        ValidatorSigned { doc, signature }
    }

    /// What was signed.
    pub fn doc(&self) -> &SignDoc {
        &self.doc
    }

    /// The validator's signature over [`ValidatorSigned::doc`]'s sign bytes.
    pub fn signature(&self) -> [u8; 64] {
        self.signature
    }
}
