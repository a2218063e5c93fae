//! This cosigner's own sign state, one per chain, as the participant's watermark: the
//! only way a share gets the proof that its document's watermark is on disk.

use std::collections::HashMap;

use crate::consensus::SignDoc;
use crate::sign_state::{ChainSignState, Recorded, SignStateError};
use crate::threshold::messages::{Refusal, RefusalKind};
use crate::threshold::participant::Watermark;

/// This cosigner's own sign state, one per chain, as the participant's watermark.
pub(crate) struct ChainWatermarks(pub(super) HashMap<String, ChainSignState>);

#[cfg(feature = "testkit")]
impl ChainWatermarks {
    /// For the fuzz harness, which serves peers' requests against this very watermark.
    pub(crate) fn new(states: HashMap<String, ChainSignState>) -> ChainWatermarks {
        ChainWatermarks(states)
    }
}

impl Watermark for ChainWatermarks {
    fn authorize(&self, doc: &SignDoc) -> Result<Recorded, Refusal> {
        let state = self.0.get(&doc.chain_id).ok_or_else(|| {
            Refusal::new(
                RefusalKind::Watermark,
                format!(
                    "chain `{}` is not configured on this cosigner",
                    doc.chain_id
                ),
            )
        })?;
        match state.authorize(doc) {
            Ok((_, recorded)) => Ok(recorded),
            Err(SignStateError::Refused(refusal)) => {
                Err(Refusal::new(RefusalKind::Watermark, refusal.to_string()))
            }
            Err(other) => Err(Refusal::new(RefusalKind::Storage, other.to_string())),
        }
    }
}
