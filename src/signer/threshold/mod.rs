//! The threshold signer: this cosigner coordinates signings for the nodes it serves, and
//! takes part in its peers' signings.
//!
//! As coordinator ([`coordinate`]) it runs the pure engine of `threshold::signing`: itself and
//! the `t - 1` fastest peers that handed it nonce commitments in advance, one request in
//! parallel (one round trip), a hedge with another peer when one is late by its own measured
//! round trip, every reachable peer at once on a takeover. As participant ([`participate`]) it
//! serves its peers through the pure [`Participant`], whose watermark is this cosigner's own
//! durable sign state ([`watermark`]): no coordinator, this one included, gets a share for
//! something that state refuses. The rooms besides: the commitment supply ([`supply`]), what
//! it knows of its peers and whether it can coordinate ([`health`]), and the signatures of
//! the validator shared among cosigners ([`gossip`]).

mod coordinate;
mod gossip;
mod health;
mod observe;
mod participate;
mod supply;
mod watermark;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use frost_ed25519::keys::PublicKeyPackage;
use tokio::sync::watch;
use tracing::info;

use super::background::Background;
use super::{SignError, SignOutcome};
use crate::cluster::transport::{Cluster, ClusterConfig};
use crate::consensus::canonical::same_except_timestamp;
use crate::consensus::{ExtensionDoc, SignDoc};
use crate::metrics::KeyMetrics;
use crate::sign_state::ChainSignState;
use crate::threshold::coordinator::CommitmentInventory;
use crate::threshold::key_share::KeyShare;
use crate::threshold::messages::{ClusterRequest, ClusterResponse, PeerId, Refusal, RefusalKind};
use crate::threshold::participant::Participant;

pub(crate) use watermark::ChainWatermarks;

/// Why a threshold signer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ThresholdStartError {
    /// The key share cannot make a participant.
    #[error("the key share cannot serve as a participant: {0}")]
    Participant(crate::threshold::participant::ParticipantError),
    /// The cluster transport could not start.
    #[error("cluster transport: {0}")]
    Cluster(crate::cluster::transport::ClusterError),
    /// A background thread could not be spawned.
    #[error("cannot start the background thread: {0}")]
    Background(std::io::Error),
    /// The share's group key is not a valid Ed25519 public key.
    #[error("the key share's group key is not a valid Ed25519 key: {0}")]
    GroupKey(String),
}

impl From<crate::threshold::participant::ParticipantError> for ThresholdStartError {
    fn from(e: crate::threshold::participant::ParticipantError) -> Self {
        ThresholdStartError::Participant(e)
    }
}

impl From<crate::cluster::transport::ClusterError> for ThresholdStartError {
    fn from(e: crate::cluster::transport::ClusterError) -> Self {
        ThresholdStartError::Cluster(e)
    }
}

impl From<std::io::Error> for ThresholdStartError {
    fn from(e: std::io::Error) -> Self {
        ThresholdStartError::Background(e)
    }
}

/// The threshold signer: coordinates signings for its sessions and answers its peers'.
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
    /// What this cosigner knows of each peer's liveness and speed.
    peers: Mutex<BTreeMap<PeerId, health::PeerRecord>>,
    /// Whether its own links are the slow part of the cluster.
    slowness: Mutex<health::Slowness>,
    /// Whether this cosigner has learnt from its peers what the validator signed while it
    /// was away; until then it releases no share ([`gossip::CatchUp`]).
    caught_up: AtomicBool,
    /// Reported signatures that were not the validator's (forged, or under another key).
    reports_rejected: AtomicU64,
    metrics: KeyMetrics,
}

#[derive(Clone)]
struct LastSigned {
    doc: SignDoc,
    signature: [u8; 64],
    extension: Option<(Vec<u8>, [u8; 64])>,
}

/// What a threshold signer is made of, read and checked at the edge (`cosigner start`).
pub struct ThresholdSetup {
    /// This cosigner's share, already checked to be that of `cluster.id`.
    pub share: KeyShare,
    /// This cosigner's place in the cluster and how to reach its peers.
    pub cluster: ClusterConfig,
    /// Deadlines for the steps of a signing.
    pub timeouts: SignTimeouts,
    /// Where this key's shares, refusals and failed signings are counted.
    pub metrics: KeyMetrics,
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
            metrics,
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
            peers: Mutex::new(BTreeMap::new()),
            slowness: Mutex::new(health::Slowness::default()),
            background: Background::start()?,
            caught_up: AtomicBool::new(false),
            reports_rejected: AtomicU64::new(0),
            metrics,
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
        inner.add_own_commitments(supply::INVENTORY_TARGET);
        tokio::spawn(supply::refill_loop(Arc::downgrade(&inner)));
        tokio::spawn(health::health_loop(Arc::downgrade(&inner)));
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

    /// The validator public key (the group key of the shares).
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.group_key
    }

    /// Whether this signer signs for `chain_id`.
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

    /// Coordinates one signing. `takeover` says this cosigner has only just started serving
    /// the node (its previous signer may have died a moment ago), so every reachable peer is
    /// asked at once.
    pub async fn sign(
        &self,
        doc: SignDoc,
        extension: Option<ExtensionDoc>,
        takeover: bool,
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
            return Err(SignError::GiveWay(format!(
                "this cosigner cannot sign: {reason}"
            )));
        }
        if !self.has_quorum() {
            inner.metrics.insufficient_cosigners(&doc.chain_id);
            return Err(SignError::GiveWay(format!(
                "no quorum: {} cosigners must sign and this one reaches only {:?}",
                inner.threshold,
                inner.cluster.connected_peers()
            )));
        }
        let doc = previous.map(|last| last.doc).unwrap_or(doc);
        let started = Instant::now();
        let signed = inner
            .coordinate(&doc, extension.as_ref(), takeover)
            .await
            .inspect_err(|e| {
                if matches!(e, SignError::GiveWay(_)) {
                    inner.metrics.insufficient_cosigners(&doc.chain_id);
                }
            })?;
        let signatures = signed.signatures;
        info!(
            chain = %doc.chain_id,
            height = doc.hrs.height,
            round = doc.hrs.round,
            step = %doc.hrs.step,
            participants = ?signed.members,
            extra_shares = signed.extra_requests,
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
}
