//! What the validator signed, shared among the cosigners.
//!
//! Each cosigner's watermark refuses what conflicts with the shares *it* released. That is
//! enough while every cosigner keeps its state: any two quorums share a cosigner. It is not
//! when a state is lost, rolled back or copied: with 2-of-3, {A, B} sign X; B's state is lost;
//! {B, C} sign Y, and C never saw X. So every signature the cluster makes is also told to every
//! peer ([`Inner::announce`]), which raises its own watermark to it as if it had taken part:
//! C then refuses Y. A signature that verifies under the validator key is self-authenticating
//! (no single cosigner can make one), so a report of one is believed whoever sends it, and a
//! forged one is dropped and counted.
//!
//! A starting cosigner asks its peers for the highest signatures they know, per chain, and
//! adopts them before it releases any share ([`CatchUp`] says when it has heard enough). It
//! asks again whenever a peer (re)connects, which covers a peer that was away or partitioned.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::{Inner, LastSigned};
use crate::consensus::{canonical, SignDoc};
use crate::sign_state::{NotSigned, Observed, SignStateError, ValidatorSigned};
use crate::threshold::messages::{
    ClusterRequest, ClusterResponse, PeerId, ValidatorSignature, WireSignature,
};

/// How long telling one peer of a signature may take; nothing waits for it.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one peer may take to answer a catch-up request.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// A reported signature of the validator, checked: the vote or proposal, and the vote
/// extension's signature if one came with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Checked {
    pub(super) vote: ValidatorSigned,
    pub(super) extension: Option<(Vec<u8>, [u8; 64])>,
}

/// Why a reported signature was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Rejected {
    #[error("vote or proposal: {0}")]
    Vote(NotSigned),
    #[error("vote extension: {0}")]
    Extension(String),
}

/// Checks a reported signature under the validator key `key`: the sign bytes parse strictly
/// and canonically, the signature verifies, and an extension belongs to the vote and verifies
/// too.
pub(super) fn check(report: &ValidatorSignature, key: &VerifyingKey) -> Result<Checked, Rejected> {
    let vote = ValidatorSigned::verify(&report.sign_bytes, report.signature.to_bytes(), key)
        .map_err(Rejected::Vote)?;
    let extension = match &report.extension {
        None => None,
        Some((bytes, signature)) => {
            let ext = canonical::parse_extension(bytes)
                .map_err(|e| Rejected::Extension(e.to_string()))?;
            ext.belongs_to(vote.doc())
                .map_err(|e| Rejected::Extension(e.to_string()))?;
            let signature = signature.to_bytes();
            key.verify_strict(bytes, &Signature::from_bytes(&signature))
                .map_err(|_| {
                    Rejected::Extension(
                        "the signature does not verify under the validator key".into(),
                    )
                })?;
            Some((bytes.clone(), signature))
        }
    };
    Ok(Checked { vote, extension })
}

/// The wire form of a signature this cosigner made or learnt.
pub(super) fn report(
    doc: &SignDoc,
    signature: [u8; 64],
    extension: Option<(&[u8], [u8; 64])>,
) -> ValidatorSignature {
    ValidatorSignature {
        sign_bytes: doc.sign_bytes.clone(),
        signature: WireSignature::from_bytes(&signature),
        extension: extension.map(|(bytes, sig)| (bytes.to_vec(), WireSignature::from_bytes(&sig))),
    }
}

/// When a starting cosigner has heard enough from its peers to release shares.
///
/// It never releases a share before at least `t - 1` peers have answered: it can take part
/// in no signing before that many are up anyway. Beyond that it waits for every peer, with
/// two limits: a peer it cannot even connect to is not waited for once [`CONNECT_GRACE`] has
/// passed (a host that is down would otherwise delay every restart by the whole window), and
/// no peer is waited for beyond `window`. Every peer is asked again whenever it (re)connects,
/// so a late peer's knowledge still arrives, just not before the first shares.
#[derive(Debug)]
pub(super) struct CatchUp {
    peers: BTreeSet<PeerId>,
    answered: BTreeSet<PeerId>,
    needed: usize,
    started: Instant,
    deadline: Instant,
    done: bool,
}

/// How long after start a peer that is not connected is still waited for: connections to
/// live peers form within a few round trips of the start.
pub(super) const CONNECT_GRACE: Duration = Duration::from_millis(250);

impl CatchUp {
    pub(super) fn new(
        peers: impl IntoIterator<Item = PeerId>,
        threshold: u16,
        now: Instant,
        window: Duration,
    ) -> CatchUp {
        CatchUp {
            peers: peers.into_iter().collect(),
            answered: BTreeSet::new(),
            needed: usize::from(threshold.saturating_sub(1)),
            started: now,
            deadline: now + window,
            done: false,
        }
    }

    pub(super) fn answered(&mut self, peer: PeerId) {
        if self.peers.contains(&peer) {
            self.answered.insert(peer);
        }
    }

    /// Whether enough peers answered by `now`, `connected` being the peers connected now;
    /// once true, it stays true.
    pub(super) fn is_done(&mut self, now: Instant, connected: &BTreeSet<PeerId>) -> bool {
        let enough = self.answered.len() >= self.needed;
        let only_unreachable_missing = now >= self.started + CONNECT_GRACE
            && self.missing().iter().all(|p| !connected.contains(p));
        self.done = self.done
            || self.answered.len() == self.peers.len()
            || (enough && (only_unreachable_missing || now >= self.deadline));
        self.done
    }

    /// Peers that have not answered.
    pub(super) fn missing(&self) -> Vec<PeerId> {
        self.peers.difference(&self.answered).copied().collect()
    }

    pub(super) fn answered_count(&self) -> usize {
        self.answered.len()
    }
}

impl Inner {
    /// Whether this cosigner has caught up with its peers and may release shares.
    pub(super) fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Tells every connected peer of a signature this cosigner just made, and learns it
    /// itself (its own participant recorded it already; this makes it what peers catching up
    /// are told). Nothing waits for the peers.
    pub(super) fn announce(
        self: &Arc<Self>,
        doc: &SignDoc,
        signature: [u8; 64],
        extension: Option<(&[u8], [u8; 64])>,
    ) {
        if let Some(state) = self.watermarks.0.get(&doc.chain_id) {
            let signed = ValidatorSigned::made_here(doc.clone(), signature);
            if let Err(e) = state.observe(&signed) {
                warn!(chain = %doc.chain_id, "cannot note our own signature: {e}");
            }
        }
        let request = ClusterRequest::Signed(report(doc, signature, extension));
        let peers: Vec<PeerId> = self.cluster.connected_peers();
        if peers.is_empty() {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            let request = Arc::new(request);
            for peer in peers {
                let (inner, request) = (inner.clone(), request.clone());
                tasks.spawn(async move {
                    let sent = inner
                        .cluster
                        .request::<_, ClusterResponse>(peer, request.as_ref(), ANNOUNCE_TIMEOUT)
                        .await;
                    if let Err(e) = sent {
                        debug!(peer, "could not tell the peer of a signature: {e}");
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        });
    }

    /// A peer told us of a signature: check and adopt it off every signing's path.
    pub(super) fn receive_signed(self: &Arc<Self>, from: PeerId, report: ValidatorSignature) {
        let inner = self.clone();
        self.background.run("check a reported signature", move || {
            inner.adopt_reported(from, &report);
            inner.flush_observed();
        });
    }

    /// Checks `report` from `from` and raises our watermark to it. Returns whether it was
    /// a valid signature of the validator.
    pub(super) fn adopt_reported(&self, from: PeerId, report: &ValidatorSignature) -> bool {
        let checked = match check(report, &self.validator_key) {
            Ok(checked) => checked,
            Err(rejected) => {
                let count = self.reports_rejected.fetch_add(1, Ordering::Relaxed) + 1;
                warn!(
                    peer = from,
                    rejected_so_far = count,
                    "ignoring a reported signature that is not the validator's: {rejected}"
                );
                return false;
            }
        };
        let doc = checked.vote.doc();
        let Some(state) = self.watermarks.0.get(&doc.chain_id) else {
            debug!(peer = from, chain = %doc.chain_id, "ignoring a signature for a chain this cosigner does not sign");
            return true;
        };
        match state.observe(&checked.vote) {
            Ok(Observed::Raised) => {
                debug!(peer = from, chain = %doc.chain_id, at = %doc.hrs, "watermark raised to a signature made without us")
            }
            Ok(Observed::Known) => {}
            Ok(Observed::Conflict(conflict)) => error!(
                peer = from,
                chain = %doc.chain_id,
                at = %doc.hrs,
                "the validator's signature reported by cosigner {from} conflicts with this cosigner's own record ({conflict}); keeping ours. The validator may have double-signed, or this state was restored from an old copy or shared with a twin: check every host"
            ),
            Err(SignStateError::Storage(e)) => self.storage_failed(&e.to_string()),
            Err(e) => warn!(peer = from, "cannot note a reported signature: {e}"),
        }
        self.remember_signed(LastSigned {
            doc: doc.clone(),
            signature: checked.vote.signature(),
            extension: checked.extension,
        });
        true
    }

    /// Writes watermarks raised by reported signatures, coalesced: one write per chain for
    /// however many reports arrived meanwhile.
    fn flush_observed(self: &Arc<Self>) {
        let inner = self.clone();
        self.background
            .run_unless_pending("write raised watermarks", move || {
                for state in inner.watermarks.0.values() {
                    match state.flush() {
                        Ok(_) => {}
                        Err(SignStateError::Storage(e)) => inner.storage_failed(&e.to_string()),
                        Err(e) => {
                            warn!(chain = %state.chain_id(), "cannot write a raised watermark: {e}")
                        }
                    }
                }
            });
    }

    /// Our answer to a peer catching up: the highest signature we know per chain.
    pub(super) fn highest_signed(&self) -> Vec<ValidatorSignature> {
        self.watermarks
            .0
            .values()
            .filter_map(|state| state.highest_signed())
            .map(|signed| report(signed.doc(), signed.signature(), None))
            .collect()
    }

    /// Asks `peer` for the highest signatures it knows and adopts them; whether it answered.
    async fn ask(self: &Arc<Self>, peer: PeerId) -> bool {
        match self
            .cluster
            .request::<_, ClusterResponse>(peer, &ClusterRequest::HighestSigned, ASK_TIMEOUT)
            .await
        {
            Ok(ClusterResponse::HighestSigned(reports)) => {
                let inner = self.clone();
                // Verifying costs tens of microseconds each: not on an async worker. The
                // writes happen here too, so the answer counts only once it is on disk.
                let adopted = tokio::task::spawn_blocking(move || {
                    for report in &reports {
                        inner.adopt_reported(peer, report);
                    }
                    for state in inner.watermarks.0.values() {
                        if let Err(SignStateError::Storage(e)) = state.flush() {
                            inner.storage_failed(&e.to_string());
                        }
                    }
                })
                .await;
                adopted.is_ok()
            }
            Ok(other) => {
                warn!(peer, "answered a catch-up request with {other:?}");
                false
            }
            Err(e) => {
                debug!(peer, "no catch-up answer: {e}");
                false
            }
        }
    }
}

/// Asks every peer that connects for the highest signatures it knows, and says when this
/// cosigner has caught up.
pub(super) async fn catch_up_loop(inner: std::sync::Weak<Inner>, mut catch_up: CatchUp) {
    let mut tick = tokio::time::interval(super::health::POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Peers asked on their current connection, and answers coming back.
    let mut asked: BTreeSet<PeerId> = BTreeSet::new();
    let mut answers: JoinSet<(PeerId, bool)> = JoinSet::new();
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(Ok((peer, ok))) = answers.join_next(), if !answers.is_empty() => {
                if ok {
                    catch_up.answered(peer);
                } else {
                    // Ask again at the next tick if it is still connected.
                    asked.remove(&peer);
                }
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        let connected: BTreeSet<PeerId> = inner.cluster.connected_peers().into_iter().collect();
        asked.retain(|p| connected.contains(p));
        for &peer in connected.difference(&asked.clone()) {
            asked.insert(peer);
            let inner = inner.clone();
            answers.spawn(async move { (peer, inner.ask(peer).await) });
        }
        if !inner.caught_up() {
            let now = Instant::now();
            if catch_up.is_done(now, &connected) {
                inner.caught_up.store(true, Ordering::Release);
                info!(
                    answered = catch_up.answered_count(),
                    missing = ?catch_up.missing(),
                    "caught up with peers on what the validator signed: releasing shares"
                );
            } else if now >= catch_up.deadline && !warned {
                warned = true;
                warn!(
                    answered = catch_up.answered_count(),
                    needed = catch_up.needed,
                    missing = ?catch_up.missing(),
                    "not releasing shares until at least {} peers have said what the validator signed",
                    catch_up.needed
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::Step;
    use ed25519_dalek::{Signer as _, SigningKey};

    const CHAIN: &str = "gossip-chain";

    fn vote(height: i64, block: Option<&str>) -> SignDoc {
        let bytes = crate::threshold::participant::testkit::vote_bytes(
            CHAIN,
            height,
            0,
            Step::Precommit,
            block,
        );
        canonical::parse(&bytes).unwrap()
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn signed_report(key: &SigningKey, doc: &SignDoc) -> ValidatorSignature {
        report(doc, key.sign(&doc.sign_bytes).to_bytes(), None)
    }

    #[test]
    fn a_signature_of_the_validator_is_accepted() {
        let k = key();
        let doc = vote(10, Some("B"));
        let checked = check(&signed_report(&k, &doc), &k.verifying_key()).unwrap();
        assert_eq!(checked.vote.doc(), &doc);
        assert!(checked.extension.is_none());
    }

    #[test]
    fn forged_and_wrong_key_signatures_are_rejected() {
        let k = key();
        let doc = vote(10, Some("B"));
        let mut forged = signed_report(&k, &doc);
        forged.signature.s[0] ^= 1;
        assert_eq!(
            check(&forged, &k.verifying_key()),
            Err(Rejected::Vote(NotSigned::BadSignature))
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            check(&signed_report(&other, &doc), &k.verifying_key()),
            Err(Rejected::Vote(NotSigned::BadSignature))
        );
        // Signed, but other bytes than those reported.
        let mut swapped = signed_report(&k, &doc);
        swapped.sign_bytes = vote(11, Some("B")).sign_bytes;
        assert_eq!(
            check(&swapped, &k.verifying_key()),
            Err(Rejected::Vote(NotSigned::BadSignature))
        );
        let mut garbage = signed_report(&k, &doc);
        garbage.sign_bytes = vec![1, 2, 3];
        assert!(matches!(
            check(&garbage, &k.verifying_key()),
            Err(Rejected::Vote(NotSigned::SignBytes(_)))
        ));
    }

    #[test]
    fn an_extension_must_belong_to_the_vote_and_verify() {
        let k = key();
        let doc = vote(10, Some("B"));
        let ext_bytes = crate::threshold::participant::testkit::ext_bytes(CHAIN, 10, 0, "x");
        let mut r = signed_report(&k, &doc);
        r.extension = Some((
            ext_bytes.clone(),
            WireSignature::from_bytes(&k.sign(&ext_bytes).to_bytes()),
        ));
        assert!(check(&r, &k.verifying_key()).unwrap().extension.is_some());

        let mut bad_sig = r.clone();
        bad_sig.extension = Some((ext_bytes.clone(), WireSignature::from_bytes(&[0; 64])));
        assert!(matches!(
            check(&bad_sig, &k.verifying_key()),
            Err(Rejected::Extension(_))
        ));

        let other = crate::threshold::participant::testkit::ext_bytes(CHAIN, 11, 0, "x");
        let mut wrong = r.clone();
        wrong.extension = Some((
            other.clone(),
            WireSignature::from_bytes(&k.sign(&other).to_bytes()),
        ));
        assert!(matches!(
            check(&wrong, &k.verifying_key()),
            Err(Rejected::Extension(_))
        ));
    }

    #[test]
    fn catch_up_waits_for_every_peer_then_for_a_quorum() {
        let start = Instant::now();
        let window = Duration::from_secs(1);
        // 3-of-5: four peers, two needed after the window.
        let all_up: BTreeSet<PeerId> = [2, 3, 4, 5].into();
        let mut c = CatchUp::new([2, 3, 4, 5], 3, start, window);
        assert!(!c.is_done(start, &all_up));
        c.answered(2);
        assert!(
            !c.is_done(start + window, &all_up),
            "one answer is not a quorum's worth"
        );
        c.answered(9); // not a peer
        assert!(!c.is_done(start + window * 10, &all_up));
        c.answered(4);
        assert!(
            !c.is_done(start + window / 2, &all_up),
            "before the window, every connected peer is awaited"
        );
        assert!(c.is_done(start + window, &all_up));
        assert_eq!(c.missing(), vec![3, 5]);
        // Once caught up, it stays so.
        assert!(c.is_done(start, &all_up));

        let mut all = CatchUp::new([2, 3], 2, start, window);
        all.answered(2);
        all.answered(3);
        assert!(
            all.is_done(start, &all_up),
            "every peer answered: no need to wait"
        );

        // A peer that is down is not waited for past the grace, once t - 1 answered.
        let mut down = CatchUp::new([2, 3], 2, start, window);
        down.answered(2);
        let only_2: BTreeSet<PeerId> = [2].into();
        assert!(
            !down.is_done(start, &only_2),
            "connections may still be forming"
        );
        assert!(down.is_done(start + CONNECT_GRACE, &only_2));
        // But a connected one is, until the window.
        let mut slow = CatchUp::new([2, 3], 2, start, window);
        slow.answered(2);
        assert!(!slow.is_done(start + CONNECT_GRACE, &all_up));
        assert!(slow.is_done(start + window, &all_up));
    }
}
