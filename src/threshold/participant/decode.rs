//! What a participant checks of a sign request before anything is computed: the
//! coordinator and every signer are members, sizes are bounded, the epoch is ours, and each
//! commitment decodes (ours found among the nonces issued to that coordinator, the others'
//! taken already validated when announced, or validated now).

use std::collections::BTreeMap;

use frost_ed25519::SigningPackage;

use super::Participant;
use crate::consensus::{ExtensionDoc, SignDoc};
use crate::threshold::messages::{
    DecodedPart, DecodedRequest, PeerId, Refusal, RefusalKind, SignPart, SignRequest,
    MAX_SIGN_BYTES,
};

impl Participant {
    /// Decodes and validates a request's commitments. Our own commitment is looked up among
    /// the nonces issued to `coordinator` instead of decoded; an unknown one is refused here.
    pub fn decode_request(
        &self,
        coordinator: PeerId,
        req: &SignRequest,
    ) -> Result<DecodedRequest, Refusal> {
        self.check_coordinator(coordinator)?;
        if req.epoch != self.epoch {
            return Err(Refusal::new(
                RefusalKind::Epoch,
                format!(
                    "coordinator {coordinator} signs with key epoch {}, cosigner {} holds key \
                     epoch {}: shares of two generations do not combine (one of the two missed \
                     a refresh or runs on a restored backup; `cosigner start` on it reports \
                     its epoch)",
                    req.epoch, self.own_id, self.epoch
                ),
            ));
        }
        Ok(DecodedRequest {
            vote: self.decode_part(coordinator, "vote", &req.vote)?,
            extension: req
                .extension
                .as_ref()
                .map(|part| self.decode_part(coordinator, "extension", part))
                .transpose()?,
        })
    }

    pub(super) fn check_coordinator(&self, coordinator: PeerId) -> Result<(), Refusal> {
        if self.is_member(coordinator) {
            Ok(())
        } else {
            Err(bad(format!(
                "coordinator {coordinator} is not a member of this group"
            )))
        }
    }

    /// Bounds the work before any costly step.
    pub(super) fn check_part(&self, what: &str, part: &DecodedPart) -> Result<(), Refusal> {
        check_sizes(
            what,
            part.sign_bytes.len(),
            part.commitments.len(),
            self.members.len(),
        )?;
        match part.commitments.keys().find(|p| !self.is_member(**p)) {
            Some(peer) => Err(bad(format!("{what}: signer {peer} is not a member"))),
            None => Ok(()),
        }
    }

    fn decode_part(
        &self,
        coordinator: PeerId,
        what: &str,
        part: &SignPart,
    ) -> Result<DecodedPart, Refusal> {
        check_sizes(
            what,
            part.sign_bytes.len(),
            part.commitments.len(),
            self.members.len(),
        )?;
        let commitments = part
            .commitments
            .iter()
            .map(|(peer, c)| {
                if !self.is_member(*peer) {
                    return Err(bad(format!("{what}: signer {peer} is not a member")));
                }
                let decoded = if *peer == self.own_id {
                    self.pool()
                        .find(coordinator, c)
                        .ok_or_else(unknown_commitment)?
                } else if let Some(validated) = self.upcoming.take(coordinator, c) {
                    validated
                } else {
                    c.to_frost()
                        .map_err(|e| bad(format!("{what}: signer {peer}: {e}")))?
                };
                Ok((*peer, decoded))
            })
            .collect::<Result<_, _>>()?;
        Ok(DecodedPart {
            sign_bytes: part.sign_bytes.clone(),
            commitments,
        })
    }

    pub(super) fn package(&self, part: &DecodedPart) -> Result<SigningPackage, Refusal> {
        let by_identifier = part
            .commitments
            .iter()
            .map(|(peer, c)| {
                self.members
                    .get(peer)
                    .map(|id| (*id, *c))
                    .ok_or_else(|| bad(format!("signer {peer} is not a member")))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        Ok(SigningPackage::new(by_identifier, &part.sign_bytes))
    }
}

fn check_sizes(
    what: &str,
    sign_bytes: usize,
    commitments: usize,
    members: usize,
) -> Result<(), Refusal> {
    if sign_bytes > MAX_SIGN_BYTES {
        return Err(bad(format!(
            "{what} sign bytes are {sign_bytes} bytes, more than {MAX_SIGN_BYTES}"
        )));
    }
    if commitments > members {
        return Err(bad(format!(
            "{what}: {commitments} commitments for a group of {members}"
        )));
    }
    Ok(())
}

pub(super) fn unknown_commitment() -> Refusal {
    Refusal::new(
        RefusalKind::UnknownCommitment,
        "unknown commitment: already used, expired, or issued to another coordinator",
    )
}

pub(super) fn check_extension_belongs(
    vote: &SignDoc,
    ext: &ExtensionDoc,
    ext_bytes: &[u8],
) -> Result<(), Refusal> {
    if ext.sign_bytes != ext_bytes {
        return Err(sign_bytes_refusal(
            "extension sign bytes do not parse back to themselves",
        ));
    }
    ext.belongs_to(vote)
        .map_err(|e| sign_bytes_refusal(e.to_string()))
}

pub(super) fn bad(reason: impl Into<String>) -> Refusal {
    Refusal::new(RefusalKind::BadRequest, reason)
}

pub(super) fn sign_bytes_refusal(reason: impl Into<String>) -> Refusal {
    Refusal::new(RefusalKind::SignBytes, reason)
}
