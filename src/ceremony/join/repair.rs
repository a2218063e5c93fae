//! The repair phase of a join as two pure state machines, beside the refresh
//! [`Machine`](crate::ceremony::machine::Machine) that follows it: a member's part
//! ([`MemberJoin`]: tell the new cosigner the key's public data, and as a helper exchange
//! deltas with the other helpers and hand the sigma to the new cosigner alone) and the new
//! cosigner's ([`Joiner`]: gather every member's public data, which must agree, and every
//! helper's sigma, then check the repaired share). No I/O.

use std::collections::BTreeMap;

use frost_ed25519::keys::repairable::{Delta, Sigma};
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::steps;
use crate::ceremony::abort::Abort;
use crate::ceremony::file::SessionId;
use crate::ceremony::machine::{OldShare, Progress};
use crate::ceremony::messages::{Ask, CeremonyRequest, CeremonyResponse, JoinInfo, Watermark};
use crate::cluster::PeerId;
use crate::threshold::epoch::{EpochId, KeyEpoch};
use crate::threshold::key_share::members_list;

/// The session of a join (`cosigner refresh --add` on the members, `cosigner join` on the
/// new cosigner): the generation it starts from, the threshold, the new cosigner, and every
/// cosigner's certificate pin, the new one's included.
pub fn session_id(
    epoch: EpochId,
    t: u16,
    joiner: PeerId,
    pins: &BTreeMap<PeerId, String>,
) -> SessionId {
    join_hash(b"cosigner join v1\x00", Some(epoch), t, joiner, pins)
}

/// The prelude session, under which the new cosigner asks for the generation it does not
/// know yet: everything of [`session_id`] but the generation.
pub fn prelude_id(t: u16, joiner: PeerId, pins: &BTreeMap<PeerId, String>) -> SessionId {
    join_hash(b"cosigner join prelude v1\x00", None, t, joiner, pins)
}

/// The two sessions differ by their tag, so a prelude id never equals a join id.
fn join_hash(
    tag: &[u8],
    epoch: Option<EpochId>,
    t: u16,
    joiner: PeerId,
    pins: &BTreeMap<PeerId, String>,
) -> SessionId {
    let mut h = Sha256::new();
    h.update(tag);
    if let Some(epoch) = epoch {
        h.update(epoch.0);
    }
    h.update(t.to_be_bytes());
    h.update(joiner.to_be_bytes());
    for (id, pin) in pins {
        h.update(id.to_be_bytes());
        h.update(pin.to_ascii_lowercase().as_bytes());
    }
    h.finalize().into()
}

/// The generation id of a public key package with its epoch number.
pub fn epoch_id(epoch: u32, pkp: &PublicKeyPackage) -> EpochId {
    KeyEpoch::of(epoch, pkp).id
}

fn refuse(m: String) -> Option<CeremonyResponse> {
    Some(CeremonyResponse::Refused(m))
}

/// A member's part of a join.
pub struct MemberJoin {
    me: PeerId,
    joiner: PeerId,
    helpers: Vec<PeerId>,
    prelude: SessionId,
    session: SessionId,
    info: JoinInfo,
    /// Our delta for each helper (ours included); empty if we are not a helper.
    outgoing: BTreeMap<PeerId, Zeroizing<Vec<u8>>>,
    received: BTreeMap<PeerId, Delta>,
    sigma: Option<Zeroizing<Vec<u8>>>,
}

impl MemberJoin {
    /// Our part: as a helper (one of the `t` lowest ids), our deltas for the other helpers.
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: RngCore + CryptoRng>(
        me: PeerId,
        joiner: PeerId,
        key_package: &KeyPackage,
        old: &PublicKeyPackage,
        info: JoinInfo,
        prelude: SessionId,
        session: SessionId,
        rng: &mut R,
    ) -> Result<MemberJoin, Abort> {
        let t = *key_package.min_signers();
        let helpers = steps::helpers(&steps::members(old), t);
        let mut join = MemberJoin {
            me,
            joiner,
            helpers: helpers.clone(),
            prelude,
            session,
            info,
            outgoing: BTreeMap::new(),
            received: BTreeMap::new(),
            sigma: None,
        };
        if helpers.contains(&me) {
            let mut out = steps::deltas(key_package, &helpers, joiner, rng)?;
            if let Some(own) = out.remove(&me) {
                join.received.insert(me, steps::decode_delta(me, &own)?);
            }
            join.outgoing = out;
            join.advance()?;
        }
        Ok(join)
    }

    /// The helpers, ascending.
    pub fn helpers(&self) -> &[PeerId] {
        &self.helpers
    }

    fn is_helper(&self, peer: PeerId) -> bool {
        self.helpers.contains(&peer)
    }

    fn advance(&mut self) -> Result<(), Abort> {
        if self.sigma.is_none() && self.received.len() == self.helpers.len() {
            self.sigma = Some(steps::sigma(&self.helpers, &self.received)?);
        }
        Ok(())
    }

    /// What we still need from `peer`: a helper's delta, if we are one.
    pub fn next_ask(&self, peer: PeerId) -> Option<Ask> {
        (self.is_helper(self.me)
            && self.is_helper(peer)
            && peer != self.me
            && !self.received.contains_key(&peer))
        .then_some(Ask::Delta)
    }

    /// Our answer to a join request; `None` if it is not one (the refresh machine's).
    pub fn answer(&self, from: PeerId, request: &CeremonyRequest) -> Option<CeremonyResponse> {
        let me = self.me;
        match request.ask {
            Ask::JoinInfo if from != self.joiner => refuse(format!(
                "cosigner {from} is not the cosigner being added ({})",
                self.joiner
            )),
            Ask::JoinInfo if request.session != self.prelude => refuse(format!(
                "cosigner {me} runs a join of cosigner {} with another membership or \
                 threshold (prelude {}, yours {}): check that every member ran `cosigner \
                 add-peer` with the same fingerprint and the new host's --peer lines",
                self.joiner,
                hex::encode(&self.prelude[..8]),
                hex::encode(&request.session[..8])
            )),
            Ask::JoinInfo => Some(CeremonyResponse::JoinInfo(self.info.clone())),
            Ask::Delta | Ask::Sigma if request.session != self.session => refuse(format!(
                "cosigner {me} runs another join (session {}, yours {})",
                hex::encode(&self.session[..8]),
                hex::encode(&request.session[..8])
            )),
            // Each delta goes to the one helper it is for, over its authenticated connection.
            Ask::Delta => match self.outgoing.get(&from) {
                Some(delta) => Some(CeremonyResponse::Delta(delta.to_vec())),
                None => refuse(format!(
                    "cosigner {from} is not a repair helper (they are {})",
                    members_list(&self.helpers)
                )),
            },
            Ask::Sigma if from != self.joiner => refuse(format!(
                "a repair sigma goes to the cosigner being added ({}) alone",
                self.joiner
            )),
            Ask::Sigma if !self.is_helper(me) => refuse(format!(
                "cosigner {me} is not a repair helper (they are {})",
                members_list(&self.helpers)
            )),
            Ask::Sigma => Some(match &self.sigma {
                Some(sigma) => CeremonyResponse::Sigma(sigma.to_vec()),
                None => CeremonyResponse::NotYet(format!(
                    "cosigner {me} waits for the repair deltas of the other helpers"
                )),
            }),
            _ => None,
        }
    }

    /// `from`'s answer to our [`Ask::Delta`].
    pub fn take(&mut self, from: PeerId, response: CeremonyResponse) -> Result<Progress, Abort> {
        match response {
            CeremonyResponse::Delta(bytes) if self.is_helper(from) => {
                let delta = steps::decode_delta(from, &bytes)?;
                self.received.entry(from).or_insert(delta);
                self.advance()?;
                Ok(Progress::Got)
            }
            CeremonyResponse::NotYet(reason) => Ok(Progress::NotYet(reason)),
            CeremonyResponse::Refused(reason) | CeremonyResponse::Aborted(reason) => {
                Err(Abort::Peer { peer: from, reason })
            }
            _ => Err(Abort::culprit(
                from,
                "asked for its repair delta, it answered something else",
            )),
        }
    }
}

/// What every member agreed on, as the new cosigner learned it.
pub struct Agreed {
    /// The members' public key package.
    pub old: PublicKeyPackage,
    /// It with our verifying share: the package the refresh starts from.
    pub extended: PublicKeyPackage,
    /// The members' generation number.
    pub epoch: u32,
    /// The members' generation.
    pub epoch_id: EpochId,
    /// The key's seed escrow.
    pub seed_escrow: Option<crate::threshold::seed_escrow::SeedEscrow>,
    /// Every chain's highest watermark among the members.
    pub watermarks: Vec<Watermark>,
    /// The helpers, ascending.
    pub helpers: Vec<PeerId>,
    /// The join's session (with the generation).
    pub session: SessionId,
}

/// The new cosigner's part of a join, until its repaired share is checked.
pub struct Joiner {
    me: PeerId,
    threshold: u16,
    members: Vec<PeerId>,
    pins: BTreeMap<PeerId, String>,
    infos: BTreeMap<PeerId, JoinInfo>,
    agreed: Option<Agreed>,
    sigmas: BTreeMap<PeerId, Sigma>,
    repaired: Option<KeyPackage>,
}

impl Joiner {
    /// `members`: the configured peers (every member); `pins`: theirs and ours.
    pub fn new(
        me: PeerId,
        threshold: u16,
        members: Vec<PeerId>,
        pins: BTreeMap<PeerId, String>,
    ) -> Joiner {
        let mut members = members;
        members.sort_unstable();
        members.dedup();
        Joiner {
            me,
            threshold,
            members,
            pins,
            infos: BTreeMap::new(),
            agreed: None,
            sigmas: BTreeMap::new(),
            repaired: None,
        }
    }

    /// The prelude session our [`Ask::JoinInfo`] requests carry.
    pub fn prelude(&self) -> SessionId {
        prelude_id(self.threshold, self.me, &self.pins)
    }

    /// What the members agreed on, once every one answered.
    pub fn agreed(&self) -> Option<&Agreed> {
        self.agreed.as_ref()
    }

    /// What we still need from `peer`.
    pub fn next_ask(&self, peer: PeerId) -> Option<Ask> {
        if !self.members.contains(&peer) || self.repaired.is_some() {
            return None;
        }
        if !self.infos.contains_key(&peer) {
            return Some(Ask::JoinInfo);
        }
        let agreed = self.agreed.as_ref()?;
        (agreed.helpers.contains(&peer) && !self.sigmas.contains_key(&peer)).then_some(Ask::Sigma)
    }

    /// What we wait for, for a "not yet".
    pub fn waiting_for(&self) -> String {
        let me = self.me;
        match &self.agreed {
            None => format!("cosigner {me} waits for every member's key package"),
            Some(_) => format!("cosigner {me} waits for the repair sigmas of the helpers"),
        }
    }

    /// `from`'s answer to `ask`; then moves on as far as it can.
    pub fn take(
        &mut self,
        from: PeerId,
        ask: Ask,
        response: CeremonyResponse,
    ) -> Result<Progress, Abort> {
        match (ask, response) {
            (_, CeremonyResponse::NotYet(reason)) => return Ok(Progress::NotYet(reason)),
            (_, CeremonyResponse::Refused(reason) | CeremonyResponse::Aborted(reason)) => {
                return Err(Abort::Peer { peer: from, reason })
            }
            (Ask::JoinInfo, CeremonyResponse::JoinInfo(info)) => {
                self.infos.entry(from).or_insert(info);
            }
            (Ask::Sigma, CeremonyResponse::Sigma(bytes)) => {
                let sigma = steps::decode_sigma(from, &bytes)?;
                self.sigmas.entry(from).or_insert(sigma);
            }
            (ask, _) => {
                return Err(Abort::culprit(
                    from,
                    format!("asked for {}, it answered something else", ask.describe()),
                ))
            }
        }
        self.advance()?;
        Ok(Progress::Got)
    }

    fn advance(&mut self) -> Result<(), Abort> {
        if self.agreed.is_none() && self.infos.len() == self.members.len() {
            self.agreed = Some(self.agree()?);
        }
        let Some(agreed) = &self.agreed else {
            return Ok(());
        };
        if self.repaired.is_none() && self.sigmas.len() == agreed.helpers.len() {
            self.repaired = Some(steps::repaired(
                self.me,
                &agreed.helpers,
                &self.sigmas,
                &agreed.extended,
            )?);
        }
        Ok(())
    }

    /// Every member must have sent the same key package, generation and escrow, of the
    /// membership our config lists, with our threshold.
    fn agree(&self) -> Result<Agreed, Abort> {
        let mut first: Option<(PeerId, &JoinInfo)> = None;
        for (peer, info) in &self.infos {
            match first {
                None => first = Some((*peer, info)),
                Some((p, f)) => {
                    if f.public_key_package != info.public_key_package
                        || f.epoch != info.epoch
                        || f.seed_escrow != info.seed_escrow
                    {
                        return Err(Abort::local(format!(
                            "cosigners {p} and {peer} hold different key packages or \
                             generations: the members have not settled their last refresh \
                             (run `cosigner refresh --config FILE` on each member first), or \
                             one is of another cluster"
                        )));
                    }
                }
            }
        }
        let Some((p, info)) = first else {
            return Err(Abort::local("no member answered"));
        };
        let old = PublicKeyPackage::deserialize(&info.public_key_package)
            .map_err(|e| Abort::culprit(p, format!("its public key package is invalid: {e}")))?;
        if old.min_signers() != Some(self.threshold) {
            return Err(Abort::local(format!(
                "the members' key has threshold {:?}, this directory {}: its --like config was \
                 of another cluster",
                old.min_signers(),
                self.threshold
            )));
        }
        if steps::members(&old) != self.members {
            return Err(Abort::local(format!(
                "the members' key is shared by cosigners {}, but this directory's peers are {}: \
                 give `cosigner enroll` one --peer per member",
                members_list(&steps::members(&old)),
                members_list(&self.members)
            )));
        }
        let extended = steps::extended(&old, self.me)?;
        let epoch_id = epoch_id(info.epoch, &old);
        let mut highest: BTreeMap<String, Watermark> = BTreeMap::new();
        for info in self.infos.values() {
            for w in &info.watermarks {
                let held = highest.entry(w.chain.clone()).or_insert_with(|| w.clone());
                if (w.height, w.round, w.step) > (held.height, held.round, held.step) {
                    *held = w.clone();
                }
            }
        }
        Ok(Agreed {
            helpers: steps::helpers(&self.members, self.threshold),
            session: session_id(epoch_id, self.threshold, self.me, &self.pins),
            extended,
            old,
            epoch: info.epoch,
            epoch_id,
            seed_escrow: info.seed_escrow.clone(),
            watermarks: highest.into_values().collect(),
        })
    }

    /// Our repaired, checked share and what the refresh starts from, once made.
    pub fn old_share(&self) -> Option<OldShare> {
        let (kp, agreed) = (self.repaired.as_ref()?, self.agreed.as_ref()?);
        Some(OldShare {
            key_package: kp.clone(),
            public_key_package: agreed.extended.clone(),
            epoch: agreed.epoch,
            seed_escrow: agreed.seed_escrow.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
