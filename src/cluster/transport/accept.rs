//! Accepting: admitting incoming handshakes and mapping each to a configured peer.
//!
//! An Initial costs us nothing beyond quinn's decoding until we decide on it, and the order
//! of the checks keeps it so for anyone who is not a peer:
//! 1. A source IP that is not a configured peer's (nor in `allowed_sources`) is ignored
//!    without an answer, so nobody else can make us hold state or send to a third party.
//! 2. An unvalidated source gets a QUIC Retry (stateless; the token proves on the next Initial
//!    that the sender receives at that address), so replayed or spoofed Initials hold nothing.
//! 3. A validated source with [`MAX_HANDSHAKES_PER_SOURCE`] handshakes in progress, or any
//!    source once all [`crate::cluster::tls::MAX_INCOMING`] slots are taken, is refused.
//! 4. Only then does a handshake hold a slot, until it completes its hello or times out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use quinn::{Incoming, VarInt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::timeout;

use super::notices::{Notice, LOG_INTERVAL};
use super::peer::Direction;
use super::serve::{open_link, run_connection};
use super::{close, until_shutdown, Inner, HANDSHAKE_TIMEOUT};
use crate::cluster::tls::{is_other_cluster, negotiated_alpn, peer_fingerprint};

/// Handshakes one source address (IP and port) may have in progress. A peer dials one
/// connection at a time from its single socket; two leave room for a restarted peer on the
/// same port while its predecessor's attempt times out.
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 2;

/// What to do with an Initial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    Ignore,
    Retry,
    Refuse(Notice),
    Accept,
}

fn decide(source_allowed: bool, validated: bool, from_source: usize, slot_free: bool) -> Admission {
    if !source_allowed {
        Admission::Ignore
    } else if !validated {
        Admission::Retry
    } else if from_source >= MAX_HANDSHAKES_PER_SOURCE {
        Admission::Refuse(Notice::SourceBusy)
    } else if !slot_free {
        Admission::Refuse(Notice::Saturated)
    } else {
        Admission::Accept
    }
}

/// Handshakes in progress per source address; an entry lives only while one does.
#[derive(Debug, Default)]
pub(super) struct SourceSlots(Mutex<HashMap<SocketAddr, usize>>);

impl SourceSlots {
    fn count(&self, addr: SocketAddr) -> usize {
        self.0
            .lock()
            .map(|m| m.get(&addr).copied().unwrap_or(0))
            .unwrap_or(usize::MAX)
    }

    fn take(self: &Arc<Self>, addr: SocketAddr) -> SourceSlot {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(addr).or_insert(0) += 1;
        }
        SourceSlot {
            slots: self.clone(),
            addr,
        }
    }
}

struct SourceSlot {
    slots: Arc<SourceSlots>,
    addr: SocketAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.slots.0.lock() {
            if let Some(n) = m.get_mut(&self.addr) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.addr);
                }
            }
        }
    }
}

pub(super) async fn accept_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    // Flushes the rate-limited log often enough that a window's count appears soon after
    // it ends.
    let mut flush = tokio::time::interval(LOG_INTERVAL / 5);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let incoming = tokio::select! {
            incoming = inner.endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            _ = flush.tick() => {
                inner.notices.flush();
                continue;
            }
            _ = until_shutdown(&mut shutdown) => break,
        };
        admit(&inner, incoming);
    }
    inner.notices.flush();
}

fn admit(inner: &Arc<Inner>, incoming: Incoming) {
    let addr = incoming.remote_address();
    let permit = inner.handshakes.clone().try_acquire_owned();
    let decision = decide(
        inner.sources.allows(addr.ip()),
        incoming.remote_address_validated(),
        inner.source_slots.count(addr),
        permit.is_ok(),
    );
    let detail = || format!("from {addr}");
    match (decision, permit) {
        (Admission::Ignore, _) => {
            incoming.ignore();
            inner.notices.note(Notice::NotAPeer, detail);
        }
        (Admission::Retry, _) => {
            // `retry` fails only for an Incoming that is already validated.
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            inner.notices.note(Notice::Retry, detail);
        }
        (Admission::Refuse(why), _) => {
            incoming.refuse();
            inner.notices.note(why, detail);
        }
        (Admission::Accept, Ok(permit)) => {
            let slot = inner.source_slots.take(addr);
            inner.notices.accepted();
            let inner = inner.clone();
            tokio::spawn(async move {
                handshake(&inner, incoming, (permit, slot)).await;
            });
        }
        (Admission::Accept, Err(_)) => {
            incoming.refuse();
            inner.notices.note(Notice::Saturated, detail);
        }
    }
}

/// Completes an admitted handshake and its hello while holding its slots, then serves the
/// connection.
async fn handshake(inner: &Inner, incoming: Incoming, held: (OwnedSemaphorePermit, SourceSlot)) {
    let addr = incoming.remote_address();
    let accepted = async {
        let connecting = incoming.accept()?;
        connecting.await
    };
    let conn = match timeout(HANDSHAKE_TIMEOUT, accepted).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) if is_other_cluster(&e) => {
            inner
                .notices
                .note(Notice::OtherCluster, || addr.to_string());
            return;
        }
        Ok(Err(e)) => {
            inner
                .notices
                .note(Notice::HandshakeFailed, || format!("from {addr}: {e}"));
            return;
        }
        Err(_) => {
            inner.notices.note(Notice::HandshakeFailed, || {
                format!("from {addr}: timed out after {HANDSHAKE_TIMEOUT:?}")
            });
            return;
        }
    };
    let fingerprint = peer_fingerprint(&conn);
    let id = fingerprint
        .as_deref()
        .filter(|_| negotiated_alpn(&conn))
        .and_then(|fp| inner.pins.identify(fp));
    let peer = id.and_then(|id| inner.peers.get(&id).cloned());
    let Some(peer) = peer else {
        inner.notices.note(Notice::UnknownCertificate, || match id {
            // Pinned but not a member: a cosigner being added (`[[threshold.joining]]`).
            Some(id) => format!(
                "from {addr}: cosigner {id} is joining, not a member: nothing is signed with \
                 it until `cosigner refresh --add {id}` has run on every member host"
            ),
            None => format!(
                "from {addr}, certificate sha256 {}",
                fingerprint.as_deref().unwrap_or("none")
            ),
        });
        conn.close(
            VarInt::from_u32(close::UNKNOWN_CERTIFICATE),
            b"unknown certificate",
        );
        return;
    };
    let link = open_link(inner, &peer, conn, Direction::Incoming).await;
    drop(held);
    if let Some(link) = link {
        run_connection(inner, &peer, link).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_checks_source_then_address_then_slots() {
        use Admission::*;
        // Not a peer: ignored whatever else holds.
        assert_eq!(decide(false, true, 0, true), Ignore);
        assert_eq!(decide(false, false, 0, true), Ignore);
        // A peer's address, not yet validated: a Retry, even when saturated.
        assert_eq!(decide(true, false, 0, true), Retry);
        assert_eq!(decide(true, false, 9, false), Retry);
        assert_eq!(decide(true, true, 0, true), Accept);
        assert_eq!(
            decide(true, true, MAX_HANDSHAKES_PER_SOURCE, true),
            Refuse(Notice::SourceBusy)
        );
        assert_eq!(decide(true, true, 0, false), Refuse(Notice::Saturated));
    }

    #[test]
    fn source_slots_are_released() {
        let slots = Arc::new(SourceSlots::default());
        let a: SocketAddr = "10.0.0.1:7101".parse().unwrap();
        let s1 = slots.take(a);
        let s2 = slots.take(a);
        assert_eq!(slots.count(a), 2);
        drop(s1);
        assert_eq!(slots.count(a), 1);
        drop(s2);
        assert_eq!(slots.count(a), 0);
        assert!(slots.0.lock().unwrap().is_empty());
    }
}
