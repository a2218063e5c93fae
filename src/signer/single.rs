//! The single-key signer: the whole validator key in this process, behind the same
//! double-sign protection as the cluster. It is the tmkms equivalent, and the baseline every
//! threshold benchmark is compared against. It is a single point of failure.

use std::collections::HashMap;

use ed25519_dalek::{Signer as _, SigningKey};

use super::{SignError, SignOutcome};
use crate::consensus::{ExtensionDoc, SignDoc};
use crate::sign_state::{ChainSignState, SignState, SignStateError};

/// The single-key signer: the whole validator key and a watermark per chain.
pub struct SingleSigner {
    key: SigningKey,
    chains: HashMap<String, ChainSignState>,
}

impl SingleSigner {
    /// A signer with `key` for the chains in `chains`, keyed by chain ID.
    pub fn new(key: SigningKey, chains: HashMap<String, ChainSignState>) -> SingleSigner {
        SingleSigner { key, chains }
    }

    /// The validator public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Whether this signer signs for `chain_id`.
    pub fn has_chain(&self, chain_id: &str) -> bool {
        self.chains.contains_key(chain_id)
    }

    /// Signs a vote or proposal under the FilePV rules; the new state is on disk before the
    /// signature is returned.
    pub fn sign(
        &self,
        doc: &SignDoc,
        extension: Option<&ExtensionDoc>,
    ) -> Result<SignOutcome, SignError> {
        let state = self
            .chains
            .get(&doc.chain_id)
            .ok_or_else(|| SignError::Refused(format!("unknown chain ID `{}`", doc.chain_id)))?;
        let signed = state
            .sign_with(doc, |bytes| {
                Ok::<_, std::convert::Infallible>(self.key.sign(bytes).to_bytes())
            })
            .map_err(|e| match e {
                SignStateError::Refused(refusal) => SignError::Refused(refusal.to_string()),
                other => SignError::Unavailable(other.to_string()),
            })?;
        // Extensions are not slashable and FilePV re-signs them on every request.
        let extension_signature = extension.map(|ext| self.key.sign(&ext.sign_bytes).to_bytes());
        Ok(SignOutcome {
            signature: signed.signature,
            timestamp: signed.timestamp,
            extension_signature,
        })
    }

    /// Each chain's watermark, by chain ID.
    pub fn watermarks(&self) -> Vec<(String, SignState)> {
        let mut all: Vec<_> = self
            .chains
            .iter()
            .map(|(chain, state)| (chain.clone(), state.snapshot()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Signs `bytes` as they are: for v1 SignBytes, which carry no position to guard.
    pub fn sign_raw(&self, bytes: &[u8]) -> [u8; 64] {
        self.key.sign(bytes).to_bytes()
    }
}
