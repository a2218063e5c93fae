//! The threshold signer: this cosigner coordinates signings for the nodes it serves, and
//! takes part in its peers' signings.
//!
//! As coordinator it picks itself and the `t - 1` fastest peers that handed it nonce
//! commitments in advance, sends them one request in parallel (one round trip), aggregates
//! the shares (which verifies the signature) and answers the node. A participant that is slow,
//! unreachable or refuses for a reason that is not double-sign protection is left out and the
//! signing retried with another set and fresh commitments, within the node's deadline.
//!
//! As participant it serves its peers through the pure [`Participant`], whose watermark is
//! this cosigner's own durable sign state: no coordinator, this one included, gets a share
//! for something that state refuses.

mod gossip;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use frost_ed25519::keys::PublicKeyPackage;
use rand_core::OsRng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::background::Background;
use super::fault::{test_crash, CrashPoint};
use super::{SignError, SignOutcome};
use crate::cluster::transport::{Cluster, ClusterConfig};
use crate::consensus::canonical::same_except_timestamp;
use crate::consensus::{ExtensionDoc, SignDoc};
use crate::sign_state::Recorded;
use crate::sign_state::{ChainSignState, SignStateError};
use crate::threshold::coordinator::{
    build_request, choose_participants, Candidate, CommitmentInventory, Precomputed, SigningSession,
};
use crate::threshold::key_share::KeyShare;
use crate::threshold::messages::{
    ClusterRequest, ClusterResponse, DecodedRequest, PeerId, Refusal, RefusalKind, SignRequest,
    SignResponse,
};
use crate::threshold::participant::{record, Participant, Watermark};

/// Commitments we try to hold from every participant, and the level that triggers a refill.
const INVENTORY_TARGET: usize = 32;
const INVENTORY_LOW: usize = 16;
/// How often the refill task looks at the inventory.
const REFILL_INTERVAL: Duration = Duration::from_millis(250);
const REFILL_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the quorum watch looks at the cluster's connections. A lost peer shows up here
/// as soon as the transport closes its connection (at most its idle timeout after a crash).
const QUORUM_POLL: Duration = Duration::from_millis(50);
/// How long a peer that did not answer is avoided: until the transport would have noticed
/// a dead connection by itself.
const SUSPECT_FOR: Duration = crate::cluster::tls::IDLE_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub enum ThresholdStartError {
    #[error("the key share cannot serve as a participant: {0}")]
    Participant(#[from] crate::threshold::participant::ParticipantError),
    #[error("cluster transport: {0}")]
    Cluster(#[from] crate::cluster::transport::ClusterError),
    #[error("cannot start the background thread: {0}")]
    Background(#[from] std::io::Error),
    #[error("the key share's group key is not a valid Ed25519 key: {0}")]
    GroupKey(String),
}

pub struct ThresholdSigner {
    inner: Arc<Inner>,
}

struct Inner {
    id: PeerId,
    threshold: u16,
    members: Vec<PeerId>,
    group_key: [u8; 32],
    /// The group key as a verifier, for signatures peers report.
    validator_key: ed25519_dalek::VerifyingKey,
    public_key_package: PublicKeyPackage,
    participant: Participant,
    watermarks: ChainWatermarks,
    cluster: Cluster,
    inventory: Mutex<CommitmentInventory>,
    /// Per chain, the last signature this coordinator produced, for FilePV-style replies
    /// to a repeated request.
    last_signed: Mutex<HashMap<String, LastSigned>>,
    timeouts: SignTimeouts,
    /// Whether this cosigner can coordinate: `t - 1` peers are connected and its own sign
    /// state is writable. Otherwise it gives way: it does not dial nodes and drops the
    /// connections it has, so that a node's next attempt lands on a cosigner that can sign.
    quorum: watch::Sender<bool>,
    /// Where preprocessing runs, at the lowest priority.
    background: Background,
    /// Why our own sign state could not be written, once that happened. The state file
    /// refuses every later write until a restart, so from then on this cosigner releases no
    /// share, as participant or as coordinator. One chain's failure stops all: the state
    /// files share a directory, and in practice a disk.
    storage_failure: OnceLock<String>,
    /// Peers that timed out or failed in transport lately, until when. A killed peer looks
    /// connected until the transport's idle timeout; choosing it costs a whole attempt, so
    /// coordinators prefer other peers while one is suspect (and use it if they must).
    suspects: Mutex<HashMap<PeerId, Instant>>,
    /// Whether this cosigner has learnt from its peers what the validator signed while it
    /// was away; until then it releases no share ([`gossip::CatchUp`]).
    caught_up: AtomicBool,
    /// Reported signatures that were not the validator's (forged, or under another key).
    reports_rejected: AtomicU64,
}

#[derive(Clone)]
struct LastSigned {
    doc: SignDoc,
    signature: [u8; 64],
    extension: Option<(Vec<u8>, [u8; 64])>,
}

/// This cosigner's own sign state, one per chain, as the participant's watermark.
pub(crate) struct ChainWatermarks(HashMap<String, ChainSignState>);

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

/// What a threshold signer is made of, read and checked at the edge (`cosigner start`).
pub struct ThresholdSetup {
    /// This cosigner's share, already checked to be that of `cluster.id`.
    pub share: KeyShare,
    pub cluster: ClusterConfig,
    pub timeouts: SignTimeouts,
}

/// The deadlines of threshold signings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignTimeouts {
    /// One attempt with one set of participants.
    pub attempt: Duration,
    /// All attempts of one signing together; must stay under the node's 5 s.
    pub total: Duration,
    /// How long a starting cosigner waits for every peer to say what the validator signed
    /// before it settles for `t - 1` of them.
    pub catch_up: Duration,
}

impl ThresholdSigner {
    /// Binds the cluster transport and starts serving peers.
    pub async fn start(
        setup: ThresholdSetup,
        states: HashMap<String, ChainSignState>,
    ) -> Result<ThresholdSigner, ThresholdStartError> {
        let ThresholdSetup {
            share,
            cluster,
            timeouts,
        } = setup;
        let (id, threshold, listen) = (cluster.id, share.threshold(), cluster.listen);
        let participant = Participant::new(
            id,
            share.key_package().clone(),
            share.public_key_package().clone(),
            threshold,
        )?;
        let peers: Vec<PeerId> = cluster.peers.iter().map(|p| p.id).collect();
        let cluster = Cluster::bind(cluster).await?;
        let mut members = peers.clone();
        members.push(id);
        members.sort_unstable();
        let validator_key = ed25519_dalek::VerifyingKey::from_bytes(&share.group_public_key())
            .map_err(|e| ThresholdStartError::GroupKey(e.to_string()))?;
        let inner = Arc::new(Inner {
            id,
            threshold,
            members,
            group_key: share.group_public_key(),
            validator_key,
            public_key_package: share.public_key_package().clone(),
            participant,
            watermarks: ChainWatermarks(states),
            cluster,
            inventory: Mutex::new(CommitmentInventory::default()),
            last_signed: Mutex::new(HashMap::new()),
            timeouts,
            quorum: watch::Sender::new(false),
            storage_failure: OnceLock::new(),
            suspects: Mutex::new(HashMap::new()),
            background: Background::start()?,
            caught_up: AtomicBool::new(false),
            reports_rejected: AtomicU64::new(0),
        });
        // The handler and the refill task hold weak references: the signer owns the cluster,
        // not the other way round.
        let weak = Arc::downgrade(&inner);
        inner
            .cluster
            .serve(move |peer: PeerId, req: ClusterRequest| {
                let weak = weak.clone();
                async move {
                    match weak.upgrade() {
                        Some(inner) => inner.serve_peer(peer, req).await,
                        None => ClusterResponse::Refused(Refusal::new(
                            RefusalKind::Internal,
                            "cosigner is shutting down",
                        )),
                    }
                }
            });
        inner.add_own_commitments(INVENTORY_TARGET);
        tokio::spawn(refill_loop(Arc::downgrade(&inner)));
        tokio::spawn(quorum_loop(Arc::downgrade(&inner)));
        let catch_up = gossip::CatchUp::new(peers, threshold, Instant::now(), timeouts.catch_up);
        tokio::spawn(gossip::catch_up_loop(Arc::downgrade(&inner), catch_up));
        info!(
            id,
            threshold,
            cosigners = inner.members.len(),
            %listen,
            "threshold cosigner ready"
        );
        Ok(ThresholdSigner { inner })
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.inner.group_key
    }

    pub fn has_chain(&self, chain_id: &str) -> bool {
        self.inner.watermarks.0.contains_key(chain_id)
    }

    /// Whether this cosigner can coordinate now: it reaches a quorum (itself and `t - 1`
    /// connected peers) and its own sign state is writable.
    pub fn has_quorum(&self) -> bool {
        *self.inner.quorum.borrow()
    }

    /// Follows [`ThresholdSigner::has_quorum`]; node dialers and sessions watch it to give
    /// way to a cosigner that can sign.
    pub fn quorum_watch(&self) -> watch::Receiver<bool> {
        self.inner.quorum.subscribe()
    }

    /// Coordinates one signing.
    pub async fn sign(
        &self,
        doc: SignDoc,
        extension: Option<ExtensionDoc>,
    ) -> Result<SignOutcome, SignError> {
        let inner = &self.inner;
        // A repeat of what we last signed (identical, or differing only in timestamp) gets
        // the same signature and timestamp, as FilePV answers. An extension is not part of
        // that signature; if it changed, the vote is signed again as it was first signed.
        let previous = inner.last_signed_for(&doc);
        if let Some(last) = &previous {
            let extension_matches = match (&extension, &last.extension) {
                (None, _) => true,
                (Some(ext), Some((bytes, _))) => &ext.sign_bytes == bytes,
                (Some(_), None) => false,
            };
            if extension_matches {
                return Ok(SignOutcome {
                    signature: last.signature,
                    timestamp: last.doc.timestamp,
                    extension_signature: extension
                        .as_ref()
                        .and(last.extension.as_ref().map(|(_, sig)| *sig)),
                });
            }
        }
        // Without a writable sign state or a quorum, say so at once instead of spending the
        // node's deadline.
        if let Some(reason) = inner.storage_failure.get() {
            return Err(SignError::Unavailable(format!(
                "this cosigner cannot sign: {reason}"
            )));
        }
        if !self.has_quorum() {
            return Err(SignError::Unavailable(no_quorum(
                inner.threshold,
                &inner.cluster.connected_peers(),
                &[],
            )));
        }
        let doc = previous.map(|last| last.doc).unwrap_or(doc);
        let started = Instant::now();
        let (signatures, participants) = inner.coordinate(&doc, extension.as_ref()).await?;
        info!(
            chain = %doc.chain_id,
            height = doc.hrs.height,
            round = doc.hrs.round,
            step = %doc.hrs.step,
            participants = ?participants,
            micros = started.elapsed().as_micros() as u64,
            "signed"
        );
        let outcome = SignOutcome {
            signature: signatures.vote,
            timestamp: doc.timestamp,
            extension_signature: signatures.extension,
        };
        let extension = extension
            .map(|ext| ext.sign_bytes)
            .zip(signatures.extension);
        inner.announce(
            &doc,
            signatures.vote,
            extension
                .as_ref()
                .map(|(bytes, sig)| (bytes.as_slice(), *sig)),
        );
        inner.remember_signed(LastSigned {
            signature: signatures.vote,
            extension,
            doc,
        });
        Ok(outcome)
    }
}

impl Inner {
    /// Keeps `last` for FilePV-style answers to a repeated request, if it is the newest
    /// signature of its chain we know.
    fn remember_signed(&self, last: LastSigned) {
        if let Ok(mut cache) = self.last_signed.lock() {
            let newer = cache
                .get(&last.doc.chain_id)
                .is_none_or(|held| held.doc.hrs <= last.doc.hrs);
            if newer {
                cache.insert(last.doc.chain_id.clone(), last);
            }
        }
    }

    fn last_signed_for(&self, doc: &SignDoc) -> Option<LastSigned> {
        let cache = self.last_signed.lock().ok()?;
        let last = cache.get(&doc.chain_id)?;
        (last.doc.hrs == doc.hrs
            && (last.doc.sign_bytes == doc.sign_bytes || same_except_timestamp(&last.doc, doc)))
        .then(|| last.clone())
    }

    /// Serves a peer's request as participant.
    async fn serve_peer(self: Arc<Self>, peer: PeerId, req: ClusterRequest) -> ClusterResponse {
        // Two live processes with one identity could each form a quorum with other peers
        // around their own copy of one watermark: neither gets shares or commitments.
        if matches!(
            req,
            ClusterRequest::Commitments { .. } | ClusterRequest::Sign(_)
        ) {
            if let Some(refusal) = self.refuse_duplicate(peer) {
                return ClusterResponse::Refused(refusal);
            }
        }
        let result = match req {
            ClusterRequest::Commitments { count } => {
                // Up to 64 nonces of ~60 us each: not on an async worker.
                let inner = self.clone();
                let result = tokio::task::spawn_blocking(move || {
                    inner
                        .participant
                        .handle_commitments(peer, count, &mut OsRng)
                        .map(ClusterResponse::Commitments)
                })
                .await
                .unwrap_or_else(|e| Err(task_failed(e)));
                self.replenish_spare_nonces();
                result
            }
            ClusterRequest::Sign(_) if !self.caught_up() => Err(Refusal::new(
                RefusalKind::CatchingUp,
                "just started: learning from peers what the validator signed meanwhile",
            )),
            ClusterRequest::Sign(request) => {
                self.participate(peer, Incoming::FromPeer(request)).await
            }
            ClusterRequest::Signed(report) => {
                self.receive_signed(peer, report);
                Ok(ClusterResponse::Noted)
            }
            ClusterRequest::HighestSigned => {
                Ok(ClusterResponse::HighestSigned(self.highest_signed()))
            }
            ClusterRequest::Ceremony(_) => Err(crate::ceremony::run::refuse_while_signing()),
        };
        result.unwrap_or_else(ClusterResponse::Refused)
    }

    /// A refusal for `peer` if the transport sees two live instances of it.
    fn refuse_duplicate(&self, peer: PeerId) -> Option<Refusal> {
        let twins = self.cluster.duplicate(peer)?;
        debug!(
            peer,
            "refusing a request of duplicated cosigner {peer}: {twins}"
        );
        Some(Refusal::new(
            RefusalKind::Duplicate,
            format!(
                "cosigner {} sees two live instances of cosigner {peer}: {twins}; it gives \
                 neither shares nor commitments until one of them is gone",
                self.id
            ),
        ))
    }

    /// Takes part in a signing coordinated by `coordinator` (possibly this cosigner).
    async fn participate(
        self: Arc<Self>,
        coordinator: PeerId,
        mut incoming: Incoming,
    ) -> Result<ClusterResponse, Refusal> {
        let upcoming = match &mut incoming {
            Incoming::FromPeer(request) => std::mem::take(&mut request.upcoming),
            Incoming::Own(_) => BTreeMap::new(),
        };
        let inner = self.clone();
        let result =
            tokio::task::spawn_blocking(move || inner.participate_blocking(coordinator, incoming))
                .await
                .unwrap_or_else(|e| Err(task_failed(e)));
        self.replenish_spare_nonces();
        if !upcoming.is_empty() {
            let inner = self.clone();
            self.background
                .run("validate upcoming commitments", move || {
                    inner.participant.learn_upcoming(coordinator, &upcoming)
                });
        }
        match result {
            Ok(response) => Ok(ClusterResponse::Signed(response)),
            Err(refusal) => {
                warn!(coordinator, kind = ?refusal.kind, "refused to sign: {}", refusal.reason);
                if refusal.kind == RefusalKind::Storage {
                    self.storage_failed(&refusal.reason);
                }
                Err(refusal)
            }
        }
    }

    /// The participant's work, on a blocking thread. The watermark write (an fsync, on a
    /// second blocking thread) and the share computation run at the same time; the share
    /// leaves only with the proof that the write is on disk.
    fn participate_blocking(
        self: Arc<Self>,
        coordinator: PeerId,
        incoming: Incoming,
    ) -> Result<SignResponse, Refusal> {
        test_crash(CrashPoint::ParticipantBeforePersist);
        let participant = &self.participant;
        let decoded = match incoming {
            Incoming::Own(decoded) => decoded,
            Incoming::FromPeer(request) => participant.decode_request(coordinator, &request)?,
        };
        let prepared = participant.prepare(coordinator, &decoded)?;
        let doc = prepared.doc().clone();
        let (recorded_tx, recorded_rx) = std::sync::mpsc::sync_channel(1);
        let inner = self.clone();
        let record_and_tell = move || {
            // The receiver is gone only if this signing was abandoned: nothing to tell.
            let _ = recorded_tx.send(record(&inner.watermarks, &doc));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(record_and_tell)),
            Err(_) => record_and_tell(),
        }
        let unreleased = participant.sign(prepared);
        let recorded = recorded_rx.recv().unwrap_or_else(|_| {
            Err(Refusal::new(
                RefusalKind::Internal,
                "the watermark task ended without an answer",
            ))
        });
        let (share, extension_share) = unreleased?.release(recorded?)?;
        test_crash(CrashPoint::ParticipantAfterPersist);
        let commitments = participant.refill(coordinator, extension_share.is_some(), &mut OsRng)?;
        Ok(SignResponse {
            share,
            extension_share,
            commitments,
        })
    }

    /// Tops up the participant's spare nonces in the background, off every signing's path.
    fn replenish_spare_nonces(self: &Arc<Self>) {
        let inner = self.clone();
        self.background
            .run_unless_pending("make spare nonces", move || {
                inner.participant.replenish_spare(&mut OsRng)
            });
    }

    /// Our sign state could not be written: nothing can be signed here until a restart.
    /// Give way for good, as without a quorum. Otherwise this cosigner would rejoin every
    /// node's accept queue and, at each later fail-over that reached it, cost the node a
    /// retry before giving way again.
    fn storage_failed(&self, reason: &str) {
        if self.storage_failure.set(reason.to_string()).is_ok() {
            error!(
                "sign state not writable: refusing to sign until restarted; giving way for good \
                 (dropping node connections, not dialing nodes). Check the disk, then restart: {reason}"
            );
        }
        self.quorum.send_replace(false);
    }

    /// Tops up our own commitments for the signings we coordinate.
    /// Makes sure our own inventory holds what one signing needs, making commitments on the
    /// spot only if it ran dry, and has it topped up in the background when low: making a
    /// batch costs about a millisecond, which no signing should wait for.
    fn ensure_own_commitments(self: &Arc<Self>, needed: usize) {
        let have = self.available(self.id);
        if have < needed {
            self.add_own_commitments(needed - have);
        }
        if have < INVENTORY_LOW {
            self.top_up_own_commitments();
        }
    }

    fn top_up_own_commitments(self: &Arc<Self>) {
        let inner = self.clone();
        self.background
            .run_unless_pending("make own commitments", move || {
                let have = inner.available(inner.id);
                inner.add_own_commitments(INVENTORY_TARGET.saturating_sub(have));
            });
    }

    /// Adds `count` fresh commitments of our own to the inventory. Made here, so nothing to
    /// decode or validate.
    fn add_own_commitments(&self, count: usize) {
        let count = u16::try_from(count).unwrap_or(u16::MAX);
        if count == 0 {
            return;
        }
        if let Ok(commitments) = self
            .participant
            .commitments_with_decoded(self.id, count, &mut OsRng)
        {
            if let Ok(mut inv) = self.inventory.lock() {
                inv.add_decoded(self.id, commitments);
            }
        }
    }

    fn available(&self, peer: PeerId) -> usize {
        self.inventory
            .lock()
            .map(|inv| inv.available(peer))
            .unwrap_or(0)
    }

    fn add_commitments(
        &self,
        peer: PeerId,
        commitments: &[crate::threshold::messages::Commitment],
    ) {
        if commitments.is_empty() {
            return;
        }
        if let Ok(mut inv) = self.inventory.lock() {
            if let Err(e) = inv.add(peer, commitments) {
                warn!(peer, "discarding commitments: {e}");
            }
        }
    }

    fn clear_commitments(&self, peer: PeerId) {
        if let Ok(mut inv) = self.inventory.lock() {
            inv.clear(peer);
        }
    }

    /// Asks one peer for commitments; returns whether any arrived.
    async fn refill_peer(self: &Arc<Self>, peer: PeerId, timeout: Duration) -> bool {
        let have = self.available(peer);
        if have >= INVENTORY_LOW {
            return true;
        }
        let count = (INVENTORY_TARGET - have) as u16;
        match self
            .cluster
            .request::<_, ClusterResponse>(peer, &ClusterRequest::Commitments { count }, timeout)
            .await
        {
            Ok(ClusterResponse::Commitments(commitments)) => {
                // Validating a batch takes milliseconds: not on an async worker.
                let any = !commitments.is_empty();
                let inner = self.clone();
                let _ =
                    tokio::task::spawn_blocking(move || inner.add_commitments(peer, &commitments))
                        .await;
                any
            }
            Ok(ClusterResponse::Refused(r)) if r.kind == RefusalKind::Duplicate => {
                self.cluster.report_twin(peer, &r.reason);
                false
            }
            Ok(ClusterResponse::Refused(r)) => {
                warn!(peer, "refused to hand out commitments: {}", r.reason);
                false
            }
            Ok(other) => {
                warn!(peer, "answered a commitments request with {other:?}");
                false
            }
            Err(e) => {
                debug!(peer, "no commitments: {e}");
                false
            }
        }
    }

    fn candidates(&self) -> Vec<Candidate> {
        let inventory = match self.inventory.lock() {
            Ok(inv) => inv,
            Err(_) => return Vec::new(),
        };
        self.members
            .iter()
            .filter_map(|&id| {
                // A duplicated peer is never asked for shares.
                if id != self.id && self.cluster.duplicate(id).is_some() {
                    return None;
                }
                let rtt = if id == self.id {
                    Duration::ZERO
                } else {
                    self.cluster.rtt(id)?
                };
                Some(Candidate {
                    id,
                    rtt,
                    available: inventory.available(id),
                })
            })
            .collect()
    }

    fn suspect(&self, peer: PeerId) {
        if let Ok(mut suspects) = self.suspects.lock() {
            suspects.insert(peer, Instant::now() + SUSPECT_FOR);
        }
    }

    fn clear_suspect(&self, peer: PeerId) {
        if let Ok(mut suspects) = self.suspects.lock() {
            suspects.remove(&peer);
        }
    }

    fn current_suspects(&self) -> BTreeSet<PeerId> {
        let now = Instant::now();
        match self.suspects.lock() {
            Ok(mut suspects) => {
                suspects.retain(|_, until| *until > now);
                suspects.keys().copied().collect()
            }
            Err(_) => BTreeSet::new(),
        }
    }

    /// Runs attempts until a quorum signs, double-sign protection refuses, or time is up.
    async fn coordinate(
        self: &Arc<Self>,
        doc: &SignDoc,
        extension: Option<&ExtensionDoc>,
    ) -> Result<(crate::threshold::coordinator::Signatures, Vec<PeerId>), SignError> {
        let deadline = Instant::now() + self.timeouts.total;
        // Peers that failed in this signing, and those plus the suspects: avoided first.
        let mut failed_here = BTreeSet::new();
        let mut excluded = self.current_suspects();
        let mut problems: Vec<String> = Vec::new();
        loop {
            self.ensure_own_commitments(if extension.is_some() { 2 } else { 1 });
            let chosen = match choose_participants(
                self.id,
                self.threshold,
                &self.candidates(),
                &excluded,
                extension.is_some(),
            ) {
                Some(chosen) => chosen,
                None if excluded != failed_here => {
                    // Not enough peers without the suspects: try them after all.
                    excluded = failed_here.clone();
                    continue;
                }
                None => {
                    // Perhaps only commitments are missing: fetch them once, in parallel,
                    // from every reachable peer we have not given up on.
                    if !self.refill_reachable(&excluded, deadline).await {
                        return Err(SignError::Unavailable(no_quorum(
                            self.threshold,
                            &self.cluster.connected_peers(),
                            &problems,
                        )));
                    }
                    continue;
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(SignError::Unavailable(format!(
                    "no quorum signed within {:?}: {}",
                    self.timeouts.total,
                    problems.join("; ")
                )));
            }
            let (request, mut session) = {
                let mut inventory = self
                    .inventory
                    .lock()
                    .map_err(|_| SignError::Unavailable("commitment inventory poisoned".into()))?;
                build_request(
                    &mut inventory,
                    &chosen,
                    doc.sign_bytes.clone(),
                    extension.map(|e| e.sign_bytes.clone()),
                )
                .map_err(|e| SignError::Unavailable(format!("cannot build the request: {e}")))?
            };
            let attempt_deadline = (now + self.timeouts.attempt).min(deadline);
            match self
                .attempt(&chosen, request, &mut session, attempt_deadline)
                .await
            {
                Attempt::Signed(precomputed) => {
                    match session.finish(&self.public_key_package, precomputed.as_ref()) {
                        Ok(signatures) => {
                            test_crash(CrashPoint::CoordinatorAfterShares);
                            return Ok((signatures, chosen));
                        }
                        Err(crate::threshold::coordinator::AggregateError::InvalidShares {
                            culprits,
                        }) => {
                            warn!(?culprits, "invalid signature shares; retrying without them");
                            problems.push(format!("invalid shares from {culprits:?}"));
                            failed_here.extend(culprits.iter().copied());
                            excluded.extend(culprits);
                        }
                        Err(e) => {
                            problems.push(format!("aggregation failed: {e}"));
                            let others = chosen.iter().copied().filter(|&p| p != self.id);
                            failed_here.extend(others.clone());
                            excluded.extend(others);
                        }
                    }
                }
                Attempt::Refused(reason) => return Err(SignError::Refused(reason)),
                Attempt::Failed(failed) => {
                    for (peer, problem) in failed {
                        if peer == self.id && !problem.retry_self {
                            return Err(SignError::Unavailable(format!(
                                "this cosigner cannot sign: {}",
                                problem.text
                            )));
                        }
                        problems.push(format!("cosigner {peer}: {}", problem.text));
                        if problem.suspect {
                            self.suspect(peer);
                        }
                        // A peer that only lacked our commitments (it restarted) gets fresh
                        // ones and another chance.
                        if peer != self.id && problem.exclude {
                            failed_here.insert(peer);
                            excluded.insert(peer);
                        }
                    }
                }
            }
        }
    }

    /// Fetches commitments from reachable peers that are not excluded; whether any arrived.
    async fn refill_reachable(
        self: &Arc<Self>,
        excluded: &BTreeSet<PeerId>,
        deadline: Instant,
    ) -> bool {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return false;
        }
        let mut tasks = JoinSet::new();
        for &peer in &self.members {
            if peer == self.id || excluded.contains(&peer) || self.available(peer) > 1 {
                continue;
            }
            // A peer without a connection (down, or not yet back) would hold this signing
            // for the whole timeout; the refill loop asks it once it is connected.
            if self.cluster.rtt(peer).is_none() {
                continue;
            }
            let inner = self.clone();
            let timeout = remaining.min(REFILL_TIMEOUT);
            tasks.spawn(async move { inner.refill_peer(peer, timeout).await });
        }
        let mut any = false;
        while let Some(result) = tasks.join_next().await {
            any |= result.unwrap_or(false);
        }
        any
    }

    /// Sends one request to every chosen participant in parallel and collects the shares.
    async fn attempt(
        self: &Arc<Self>,
        chosen: &[PeerId],
        request: SignRequest,
        session: &mut SigningSession,
        deadline: Instant,
    ) -> Attempt {
        let request = Arc::new(request);
        let mut tasks = JoinSet::new();
        for &peer in chosen {
            let inner = self.clone();
            let request = request.clone();
            // Our own participant gets the commitments as the inventory validated them.
            let own = (peer == self.id).then(|| session.decoded_request());
            tasks.spawn(async move {
                let response = if let Some(own) = own {
                    Ok(inner
                        .clone()
                        .participate(peer, Incoming::Own(own))
                        .await
                        .unwrap_or_else(ClusterResponse::Refused))
                } else {
                    let timeout = deadline.saturating_duration_since(Instant::now());
                    inner
                        .cluster
                        .request::<_, ClusterResponse>(
                            peer,
                            &ClusterRequest::Sign((*request).clone()),
                            timeout,
                        )
                        .await
                        .map_err(|e| e.to_string())
                };
                (peer, response)
            });
        }
        // The group commitment does not depend on the shares: compute it while they travel.
        let precompute = {
            let session = session.clone();
            let inner = self.clone();
            tokio::task::spawn_blocking(move || session.precompute(&inner.public_key_package).ok())
        };
        let mut failed: Vec<(PeerId, Problem)> = Vec::new();
        loop {
            let next = tokio::time::timeout_at(deadline.into(), tasks.join_next()).await;
            let (peer, response) = match next {
                Ok(Some(Ok(done))) => done,
                Ok(Some(Err(e))) => {
                    warn!("signing task failed: {e}");
                    continue;
                }
                Ok(None) => break,
                Err(_) => {
                    for peer in session.pending() {
                        failed.push((peer, Problem::unresponsive("timed out")));
                    }
                    tasks.abort_all();
                    return Attempt::Failed(failed);
                }
            };
            match response {
                Ok(ClusterResponse::Signed(mut resp)) => {
                    self.clear_suspect(peer);
                    // Validating the refill (point decoding, ~80 us) is not needed for this
                    // signing: leave it to the background.
                    let refill = std::mem::take(&mut resp.commitments);
                    if !refill.is_empty() {
                        let inner = self.clone();
                        self.background.run("validate refill commitments", move || {
                            inner.add_commitments(peer, &refill)
                        });
                    }
                    if let Err(e) = session.accept(peer, &resp) {
                        failed.push((peer, Problem::retry(&e.to_string())));
                    }
                }
                Ok(ClusterResponse::Refused(refusal)) => match refusal.kind {
                    RefusalKind::Watermark => {
                        tasks.abort_all();
                        return Attempt::Refused(if peer == self.id {
                            refusal.reason
                        } else {
                            format!("cosigner {peer}: {}", refusal.reason)
                        });
                    }
                    RefusalKind::UnknownCommitment => {
                        // It restarted or evicted them: ours are all stale.
                        self.clear_commitments(peer);
                        failed.push((peer, Problem::stale(&refusal.reason)));
                    }
                    // A peer whose sign state cannot be written refuses until restarted:
                    // avoid it in the next signings too.
                    RefusalKind::Storage => failed.push((
                        peer,
                        Problem {
                            suspect: true,
                            ..Problem::fatal_for_self(&refusal.reason)
                        },
                    )),
                    RefusalKind::Internal => {
                        failed.push((peer, Problem::fatal_for_self(&refusal.reason)))
                    }
                    RefusalKind::BadRequest | RefusalKind::SignBytes => {
                        failed.push((peer, Problem::fatal_for_self(&refusal.reason)))
                    }
                    // It restarted a moment ago; its commitments are stale too.
                    RefusalKind::CatchingUp => {
                        self.clear_commitments(peer);
                        failed.push((peer, Problem::retry(&refusal.reason)))
                    }
                    // The peer sees this cosigner's identity twice: we have a twin, and no
                    // peer that sees it will sign with either of us until one is gone.
                    RefusalKind::Duplicate => {
                        self.cluster.report_twin(peer, &refusal.reason);
                        failed.push((peer, Problem::fatal_for_self(&refusal.reason)))
                    }
                },
                Ok(other) => failed.push((
                    peer,
                    Problem::retry(&format!("unexpected answer {other:?}")),
                )),
                Err(e) => failed.push((peer, Problem::unresponsive(&e))),
            }
        }
        if failed.is_empty() && session.is_complete() {
            Attempt::Signed(precompute.await.ok().flatten())
        } else {
            Attempt::Failed(failed)
        }
    }
}

/// A sign request as it reaches this cosigner's participant.
enum Incoming {
    /// From a peer's coordinator: every commitment but our own still to be decoded.
    FromPeer(SignRequest),
    /// From this cosigner's coordinator, whose inventory validated every commitment.
    Own(DecodedRequest),
}

fn task_failed(e: tokio::task::JoinError) -> Refusal {
    Refusal::new(RefusalKind::Internal, format!("signing task failed: {e}"))
}

enum Attempt {
    /// Every share is in; the group commitments, if they could be computed ahead.
    Signed(Option<Precomputed>),
    /// Double-sign protection refused: final.
    Refused(String),
    Failed(Vec<(PeerId, Problem)>),
}

struct Problem {
    text: String,
    /// Whether it is worth another attempt when it is this cosigner's own participant that
    /// failed (a stale commitment is; a failed disk is not).
    retry_self: bool,
    /// Whether to leave the peer out of this signing's further attempts.
    exclude: bool,
    /// Whether to avoid the peer in the next signings too (it did not answer).
    suspect: bool,
}

impl Problem {
    fn retry(text: &str) -> Problem {
        Problem {
            text: text.to_string(),
            retry_self: true,
            exclude: true,
            suspect: false,
        }
    }
    fn unresponsive(text: &str) -> Problem {
        Problem {
            suspect: true,
            ..Problem::retry(text)
        }
    }
    /// It no longer knows the commitments we used: it restarted, and is worth a retry.
    fn stale(text: &str) -> Problem {
        Problem {
            exclude: false,
            ..Problem::retry(text)
        }
    }
    fn fatal_for_self(text: &str) -> Problem {
        Problem {
            text: text.to_string(),
            retry_self: false,
            exclude: true,
            suspect: false,
        }
    }
}

fn no_quorum(threshold: u16, connected: &[PeerId], problems: &[String]) -> String {
    // A peer that stopped answering stays connected until the transport's idle timeout, so
    // the list says who might answer, not who did.
    let mut text = format!(
        "no quorum: {threshold} cosigners must sign and this one could not gather them (peers still connected: {connected:?})"
    );
    if !problems.is_empty() {
        text.push_str("; ");
        text.push_str(&problems.join("; "));
    }
    text
}

/// Whether a coordinator with `connected` peers reaches `threshold` signers.
fn quorum_reachable(threshold: u16, connected: usize) -> bool {
    connected + 1 >= usize::from(threshold)
}

/// Whether a coordinator may serve nodes: it reaches a quorum, and its own sign state (its
/// share of every signature) is writable.
fn can_coordinate(threshold: u16, connected: usize, storage_ok: bool) -> bool {
    storage_ok && quorum_reachable(threshold, connected)
}

/// Publishes whether this cosigner can coordinate, and logs every change of the quorum.
async fn quorum_loop(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(QUORUM_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let connected = inner.cluster.connected_peers();
        let mut storage_ok = true;
        let mut now = false;
        let changed = inner.quorum.send_if_modified(|held| {
            // Read under the watch's lock: a storage failure recorded concurrently is either
            // seen here or published (false) after this closure, never overwritten by it.
            storage_ok = inner.storage_failure.get().is_none();
            now = inner.caught_up() && can_coordinate(inner.threshold, connected.len(), storage_ok);
            let changed = *held != now;
            *held = now;
            changed
        });
        // A storage failure was logged where it happened.
        if !changed || !storage_ok {
            continue;
        }
        if now {
            info!(
                threshold = inner.threshold,
                connected_peers = ?connected,
                "quorum reachable: dialing nodes"
            );
        } else {
            warn!(
                threshold = inner.threshold,
                connected_peers = ?connected,
                "no quorum reachable: giving way (dropping node connections, not dialing nodes until {} peers are connected)",
                inner.threshold.saturating_sub(1)
            );
        }
    }
}

/// Keeps every participant's commitments topped up in the background, so a signing never
/// waits for them.
async fn refill_loop(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(REFILL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.top_up_own_commitments();
        let mut tasks = JoinSet::new();
        for &peer in &inner.members {
            if peer == inner.id || inner.available(peer) >= INVENTORY_LOW {
                continue;
            }
            let inner = inner.clone();
            tasks.spawn(async move { inner.refill_peer(peer, REFILL_TIMEOUT).await });
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::{can_coordinate, quorum_reachable};

    #[test]
    fn quorum_needs_t_minus_one_peers() {
        assert!(!quorum_reachable(2, 0));
        assert!(quorum_reachable(2, 1));
        assert!(!quorum_reachable(3, 1));
        assert!(quorum_reachable(3, 2));
        assert!(quorum_reachable(3, 4));
    }

    #[test]
    fn a_failed_sign_state_never_coordinates() {
        assert!(can_coordinate(2, 1, true));
        assert!(!can_coordinate(2, 1, false));
        assert!(!can_coordinate(2, 2, false));
        assert!(!can_coordinate(2, 0, true));
    }
}
