//! One cosigner's ceremony as a pure state machine: what it still needs from each peer
//! ([`Machine::next_ask`]), what it makes of an answer ([`Machine::absorb`]) and what it answers
//! a peer ([`Machine::answer`]). No I/O: [`super::run`] carries the messages and keeps time.
//!
//! The order of the protocol (see [`crate::ceremony`]) is enforced on both sides: a host
//! asks for a step only once it can use the answer, and answers a step only once it has
//! everything the step depends on, saying "not yet" (and what it waits for) until then.

use std::collections::{BTreeMap, BTreeSet};

use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest as _, Sha256};

use super::abort::Abort;
use super::file::SessionId;
use super::messages::{bounded_reason, Ask, CeremonyRequest, CeremonyResponse, Digest};
use super::test_sign::{self, TestSigning};
use super::{dkg, echo};
use crate::cluster::PeerId;
use crate::threshold::seed_escrow::SeedEscrow;
use keys::KeyPhase;

/// Where a cosigner's share comes from.
pub enum KeySource {
    /// A new key, by DKG.
    Dkg,
    /// This host's Horcrux shard, already turned into a key package ([`super::horcrux::import`]).
    Horcrux {
        /// This host's share as a FROST key package.
        key_package: Box<KeyPackage>,
        /// The validator's public key, which the imported shares must make.
        expected_key: [u8; 32],
    },
    /// New shares of the key this share belongs to (frost's DKG-based refresh).
    Refresh(Box<OldShare>),
}

/// The share a refresh starts from.
pub struct OldShare {
    /// This cosigner's current share.
    pub key_package: KeyPackage,
    /// Every member's verifying share and the group key, as they are now.
    pub public_key_package: PublicKeyPackage,
    /// The key epoch of the current share; the new one is the next.
    pub epoch: u32,
    /// Carried over unchanged: the key (and so what the escrow opens with) stays the same.
    pub seed_escrow: Option<SeedEscrow>,
}

/// What a ceremony starts from.
pub struct Setup {
    /// This cosigner's identifier.
    pub me: PeerId,
    /// How many cosigners must sign together (`t`).
    pub threshold: u16,
    /// Every cosigner taking part (ourselves included), ascending: `1..=n`, or after a
    /// refresh that removed cosigners the ones that remain.
    pub members: Vec<PeerId>,
    /// The ceremony's identity; peers in another ceremony are refused.
    pub session: SessionId,
    /// A new key or an imported one.
    pub source: KeySource,
}

/// The result: this cosigner's share and the group's key, proven by the test signature.
pub struct Keys {
    /// The generation number the share file gets.
    pub epoch: u32,
    /// This cosigner's new signing share.
    pub key_package: KeyPackage,
    /// Every cosigner's verifying share and the group key.
    pub public_key_package: PublicKeyPackage,
    /// The validator public key the shares make.
    pub group_key: [u8; 32],
    /// The seed escrow of the key, carried over unchanged.
    pub seed_escrow: Option<SeedEscrow>,
}

/// An answer that was not the thing itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Taken in.
    Got,
    /// The peer does not have it yet, waiting for this.
    NotYet(String),
}

/// One cosigner's ceremony: what it holds, what it still needs, and whether it failed.
pub struct Machine {
    me: PeerId,
    threshold: u16,
    members: Vec<PeerId>,
    shares: u16,
    session: SessionId,
    phase: KeyPhase,
    own_contribution: Vec<u8>,
    /// Digests of the contributions held, ours included.
    digests: BTreeMap<PeerId, Digest>,
    echo: Option<Vec<Digest>>,
    echoes_checked: BTreeSet<PeerId>,
    keys: Option<Keys>,
    test: Option<TestSigning>,
    /// A digest of our public key package, once the test signature verified.
    verified: Option<Digest>,
    /// Our share is on disk (staged): only then do we say we verified.
    staged: bool,
    confirmed: BTreeSet<PeerId>,
    /// Peers that fetched our confirmation.
    fetched: BTreeSet<PeerId>,
    failed: Option<Abort>,
}

impl Machine {
    /// Makes our contribution (DKG part 1, or our verifying share).
    pub fn new<R: RngCore + CryptoRng>(setup: Setup, rng: &mut R) -> Result<Machine, Abort> {
        let Setup {
            me,
            threshold,
            members,
            session,
            source,
        } = setup;
        let shares = u16::try_from(members.len())
            .map_err(|_| Abort::local("too many cosigners in one ceremony"))?;
        if !members.contains(&me) || !members.windows(2).all(|w| w[0] < w[1]) {
            return Err(Abort::local(format!(
                "cosigner {me} is not among the ceremony's cosigners {members:?}"
            )));
        }
        let (phase, own_contribution) = KeyPhase::start(me, shares, threshold, source, rng)?;
        let own_digest = echo::digest(&session, me, &own_contribution);
        Ok(Machine {
            me,
            threshold,
            members,
            shares,
            session,
            phase,
            own_contribution,
            digests: [(me, own_digest)].into(),
            echo: None,
            echoes_checked: BTreeSet::new(),
            keys: None,
            test: None,
            verified: None,
            staged: false,
            confirmed: BTreeSet::new(),
            fetched: BTreeSet::new(),
            failed: None,
        })
    }

    /// Every other cosigner.
    pub fn peers(&self) -> Vec<PeerId> {
        self.members
            .iter()
            .copied()
            .filter(|p| *p != self.me)
            .collect()
    }

    fn is_peer(&self, peer: PeerId) -> bool {
        peer != self.me && self.members.contains(&peer)
    }

    /// The new keys' generation once they are made and until they are staged: a refresh's
    /// answer to "what will you stage" ([`super::refresh::settle`]).
    pub fn pending(&self) -> Option<&Keys> {
        match (self.failed.is_none() && !self.staged, &self.keys) {
            (true, Some(keys)) => Some(keys),
            _ => None,
        }
    }

    /// Why the ceremony stopped, once it has.
    pub fn failed(&self) -> Option<&Abort> {
        self.failed.as_ref()
    }

    /// Stops the ceremony (a deadline, a local failure); later answers say why.
    pub fn fail(&mut self, abort: Abort) {
        self.failed.get_or_insert(abort);
    }

    /// Every cosigner verified the same test signature: the share may be written.
    pub fn complete(&self) -> bool {
        self.failed.is_none() && self.staged && self.confirmed.len() == usize::from(self.shares - 1)
    }

    /// Our keys, once the test signature verified and until they are staged: the driver
    /// writes them to disk, then calls [`Machine::mark_staged`].
    pub fn needs_staging(&self) -> Option<&Keys> {
        match (self.failed.is_none() && !self.staged, self.verified) {
            (true, Some(_)) => self.keys.as_ref(),
            _ => None,
        }
    }

    /// Our share is staged: from now on we tell peers we verified.
    pub fn mark_staged(&mut self) {
        self.staged = self.verified.is_some();
    }

    /// Our key share, once the test signature verified.
    pub fn keys(&self) -> Option<&Keys> {
        self.verified.and(self.keys.as_ref())
    }

    /// Peers that have not yet fetched our confirmation.
    pub fn unconfirmed_peers(&self) -> Vec<PeerId> {
        self.peers()
            .into_iter()
            .filter(|p| !self.fetched.contains(p))
            .collect()
    }

    /// What we still need from `peer` and can use now; `None` if nothing (yet).
    pub fn next_ask(&self, peer: PeerId) -> Option<Ask> {
        if self.failed.is_some() || !self.is_peer(peer) {
            return None;
        }
        if !self.digests.contains_key(&peer) {
            return Some(Ask::Contribution);
        }
        self.echo.as_ref()?;
        if !self.echoes_checked.contains(&peer) {
            return Some(Ask::Echo);
        }
        if let KeyPhase::Dkg {
            secret2: Some(_),
            incoming,
            ..
        } = &self.phase
        {
            if !incoming.contains_key(&peer) {
                return Some(Ask::Round2);
            }
        }
        let test = self.test.as_ref()?;
        if !test.has_commitment(peer) {
            return Some(Ask::Commitment);
        }
        test.own_share()?;
        if !test.has_share(peer) {
            return Some(Ask::TestShare);
        }
        (self.staged && !self.confirmed.contains(&peer)).then_some(Ask::Verified)
    }

    /// What we are waiting for, for a "not yet".
    pub fn waiting_for(&self) -> String {
        let missing = |have: &dyn Fn(PeerId) -> bool| -> String {
            let list: Vec<String> = self
                .peers()
                .into_iter()
                .filter(|p| !have(*p))
                .map(|p| p.to_string())
                .collect();
            format!("cosigner(s) {}", list.join(", "))
        };
        let me = self.me;
        if let Some(abort) = &self.failed {
            return format!("nothing: cosigner {me} stopped ({abort})");
        }
        if self.echo.is_none() {
            return format!(
                "cosigner {me} waits for the round-1 contributions of {}",
                missing(&|p| self.digests.contains_key(&p))
            );
        }
        if self.echoes_checked.len() + 1 < usize::from(self.shares) {
            return format!(
                "cosigner {me} waits for the echoes of {}",
                missing(&|p| self.echoes_checked.contains(&p))
            );
        }
        if let KeyPhase::Dkg { incoming, .. } = &self.phase {
            if self.keys.is_none() {
                return format!(
                    "cosigner {me} waits for the round-2 packages of {}",
                    missing(&|p| incoming.contains_key(&p))
                );
            }
        }
        match &self.test {
            Some(test) if test.own_share().is_none() => format!(
                "cosigner {me} waits for the test commitments of {}",
                missing(&|p| test.has_commitment(p))
            ),
            Some(test) if self.verified.is_none() => format!(
                "cosigner {me} waits for the test shares of {}",
                missing(&|p| test.has_share(p))
            ),
            Some(_) if !self.staged => format!("cosigner {me} is writing its key share"),
            _ => format!(
                "cosigner {me} waits for the confirmations of {}",
                missing(&|p| self.confirmed.contains(&p))
            ),
        }
    }

    /// Answers `from`'s request (`from` is the authenticated peer).
    pub fn answer(&mut self, from: PeerId, request: &CeremonyRequest) -> CeremonyResponse {
        let me = self.me;
        if request.session != self.session {
            return CeremonyResponse::Refused(format!(
                "cosigner {me} runs another ceremony (session {}, yours {}): its directory and \
                 yours come from different split-key runs, or a cosigner.toml or ceremony.json \
                 was edited",
                hex::encode(&self.session[..8]),
                hex::encode(&request.session[..8])
            ));
        }
        if !self.is_peer(from) {
            return CeremonyResponse::Refused(format!("cosigner {from} is not in this ceremony"));
        }
        if let Some(abort) = &self.failed {
            return CeremonyResponse::Aborted(bounded_reason(&abort.to_string()));
        }
        let not_yet = |m: &Machine| CeremonyResponse::NotYet(bounded_reason(&m.waiting_for()));
        match request.ask {
            Ask::Contribution => CeremonyResponse::Contribution(self.own_contribution.clone()),
            Ask::Echo => match &self.echo {
                Some(echo) => CeremonyResponse::Echo(echo.clone()),
                None => not_yet(self),
            },
            Ask::Round2 => match &self.phase {
                KeyPhase::Dkg { outgoing, .. } => match outgoing.get(&from) {
                    // Made only after every echo agreed with ours, and only for `from`.
                    Some(package) => CeremonyResponse::Round2(package.to_vec()),
                    None => not_yet(self),
                },
                KeyPhase::Import { .. } => {
                    CeremonyResponse::Refused("a Horcrux import has no round 2".into())
                }
            },
            Ask::Commitment => match &self.test {
                Some(test) => CeremonyResponse::Commitment(test.own_commitment()),
                None => not_yet(self),
            },
            Ask::TestShare => match self.test.as_ref().and_then(TestSigning::own_share) {
                Some((share, commitments)) => CeremonyResponse::TestShare { share, commitments },
                None => not_yet(self),
            },
            // Answered by a refresh's driver, from the files on disk.
            Ask::Status => {
                CeremonyResponse::Refused(format!("cosigner {me} is not running a refresh"))
            }
            // Answered by a join's driver, from its repair state.
            Ask::JoinInfo | Ask::Delta | Ask::Sigma => CeremonyResponse::Refused(format!(
                "cosigner {me} is not running a join (`cosigner refresh --add` or `cosigner \
                 join`)"
            )),
            Ask::Verified => match self.verified.filter(|_| self.staged) {
                Some(digest) => {
                    self.fetched.insert(from);
                    CeremonyResponse::Verified(digest)
                }
                None => not_yet(self),
            },
        }
    }

    /// Takes `from`'s answer to `ask`, then moves on as far as it can. An error stops the
    /// ceremony (and is remembered for our answers).
    pub fn absorb<R: RngCore + CryptoRng>(
        &mut self,
        from: PeerId,
        ask: Ask,
        response: CeremonyResponse,
        rng: &mut R,
    ) -> Result<Progress, Abort> {
        if let Some(abort) = &self.failed {
            return Err(abort.clone());
        }
        let result = self
            .take(from, ask, response)
            .and_then(|progress| self.advance(rng).map(|()| progress));
        if let Err(abort) = &result {
            self.fail(abort.clone());
        }
        result
    }

    fn take(
        &mut self,
        from: PeerId,
        ask: Ask,
        response: CeremonyResponse,
    ) -> Result<Progress, Abort> {
        let me = self.me;
        match (ask, response) {
            (_, CeremonyResponse::NotYet(reason)) => Ok(Progress::NotYet(reason)),
            (_, CeremonyResponse::Refused(reason) | CeremonyResponse::Aborted(reason)) => {
                Err(Abort::Peer { peer: from, reason })
            }
            (Ask::Contribution, CeremonyResponse::Contribution(bytes)) => {
                self.take_contribution(from, &bytes)?;
                Ok(Progress::Got)
            }
            (Ask::Echo, CeremonyResponse::Echo(theirs)) => {
                let ours = self
                    .echo
                    .as_ref()
                    .map(|e| {
                        self.members
                            .iter()
                            .copied()
                            .zip(e.iter().copied())
                            .collect()
                    })
                    .ok_or_else(|| Abort::local("an echo was taken before our own"))?;
                echo::compare::<Digest>(me, &ours, from, &theirs, "round-1 contribution")?;
                self.echoes_checked.insert(from);
                Ok(Progress::Got)
            }
            (Ask::Round2, CeremonyResponse::Round2(bytes)) => {
                let package = dkg::decode_round2(from, &bytes)?;
                match &mut self.phase {
                    KeyPhase::Dkg { incoming, .. } => {
                        incoming.insert(from, package);
                        Ok(Progress::Got)
                    }
                    KeyPhase::Import { .. } => Err(Abort::local("no round 2 in an import")),
                }
            }
            (Ask::Commitment, CeremonyResponse::Commitment(c)) => {
                let test = self
                    .test
                    .as_mut()
                    .ok_or_else(|| Abort::local("a commitment was taken before our keys"))?;
                test.absorb_commitment(from, c)?;
                Ok(Progress::Got)
            }
            (Ask::TestShare, CeremonyResponse::TestShare { share, commitments }) => {
                let test = self
                    .test
                    .as_mut()
                    .ok_or_else(|| Abort::local("a test share was taken before our keys"))?;
                test.absorb_share(from, share, &commitments)?;
                Ok(Progress::Got)
            }
            (Ask::Verified, CeremonyResponse::Verified(digest)) => {
                if Some(digest) != self.verified {
                    return Err(Abort::culprit(
                        from,
                        "it verified the test signature under another public key package than \
                         ours",
                    ));
                }
                self.confirmed.insert(from);
                Ok(Progress::Got)
            }
            (ask, other) => Err(Abort::culprit(
                from,
                format!(
                    "asked for {}, it answered {}",
                    ask.describe(),
                    variant_name(&other)
                ),
            )),
        }
    }

    fn take_contribution(&mut self, from: PeerId, bytes: &[u8]) -> Result<(), Abort> {
        let canonical = self.phase.take_contribution(from, bytes, self.threshold)?;
        let digest = echo::digest(&self.session, from, &canonical);
        match self.digests.get(&from) {
            Some(held) if *held != digest => Err(Abort::culprit(
                from,
                "it sent us two different round-1 contributions",
            )),
            Some(_) => Ok(()),
            None => {
                self.digests.insert(from, digest);
                Ok(())
            }
        }
    }

    fn advance<R: RngCore + CryptoRng>(&mut self, rng: &mut R) -> Result<(), Abort> {
        let n = usize::from(self.shares);
        if self.echo.is_none() && self.digests.len() == n {
            self.echo = Some(self.digests.values().copied().collect());
        }
        let agreed = self.echo.is_some() && self.echoes_checked.len() + 1 == n;
        if agreed && self.keys.is_none() {
            self.keys = self.phase.make_keys(self.me, self.threshold, self.shares)?;
            if let Some(keys) = &self.keys {
                let message = test_sign::message(&self.session, &keys.group_key);
                self.test = Some(TestSigning::new(
                    self.me,
                    self.shares,
                    message,
                    &keys.key_package,
                    rng,
                )?);
            }
        }
        let (Some(keys), Some(test)) = (&self.keys, &mut self.test) else {
            return Ok(());
        };
        test.sign_when_ready(&keys.key_package)?;
        if self.verified.is_none()
            && test
                .finish(&keys.public_key_package, &keys.group_key)?
                .is_some()
        {
            let bytes = keys
                .public_key_package
                .serialize()
                .map_err(|e| Abort::local(format!("cannot encode the public key package: {e}")))?;
            self.verified = Some(Sha256::digest(bytes).into());
        }
        Ok(())
    }
}

fn variant_name(response: &CeremonyResponse) -> &'static str {
    match response {
        CeremonyResponse::Contribution(_) => "a contribution",
        CeremonyResponse::Echo(_) => "an echo",
        CeremonyResponse::Round2(_) => "a round-2 package",
        CeremonyResponse::Commitment(_) => "a commitment",
        CeremonyResponse::TestShare { .. } => "a test share",
        CeremonyResponse::Verified(_) => "a confirmation",
        CeremonyResponse::Status(_) => "a refresh status",
        CeremonyResponse::JoinInfo(_) => "a join's key package",
        CeremonyResponse::Delta(_) => "a repair delta",
        CeremonyResponse::Sigma(_) => "a repair sigma",
        CeremonyResponse::NotYet(_) => "not yet",
        CeremonyResponse::Refused(_) => "a refusal",
        CeremonyResponse::Aborted(_) => "an abort",
    }
}

mod keys;
#[cfg(test)]
pub(crate) mod tests;
