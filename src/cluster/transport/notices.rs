//! What the transport refuses, counted and logged at a bounded rate: a flood of handshakes or
//! requests must not become a flood of log lines.
//!
//! Each cause is logged at once when it first happens after a quiet period, and then at most
//! once per [`LOG_INTERVAL`], with the number of events since the previous line and the
//! latest one's detail. Every event is also counted in [`TransportStats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tracing::{debug, error, warn};

use crate::cluster::PeerId;
use crate::log_throttle::Throttle;

pub(super) use crate::log_throttle::LOG_INTERVAL;
/// Address validations (Retry) are part of every handshake; more than this many in one
/// interval are worth a line, since peers need one each per connection.
const RETRIES_WORTH_A_LINE: u64 = 16;

/// Why something was refused (or, for `Retry`, made to prove its address first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Notice {
    /// An Initial from a source address that is not a configured peer's: ignored.
    NotAPeer,
    /// An Initial without a valid address-validation token: answered with a Retry.
    Retry,
    /// A source already has its share of handshakes in progress: refused.
    SourceBusy,
    /// All handshake slots are taken: refused.
    Saturated,
    /// A handshake failed or timed out.
    HandshakeFailed,
    /// A handshake failed because the two sides' certificates are of different clusters.
    OtherCluster,
    /// A handshake completed with a certificate that is not a configured peer's.
    UnknownCertificate,
    /// A peer's connection did not complete the hello.
    HelloFailed,
    /// A peer opened more requests than it may have in flight.
    PeerBusy(PeerId),
    /// A peer refused us because it sees two live processes with our identity.
    Twin(PeerId),
}

/// Counts of what happened to incoming handshakes and requests since start, and of twin
/// refusals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Initials from addresses that are not a configured peer's, ignored.
    pub ignored_not_peer: u64,
    /// Initials answered with a Retry to validate their address.
    pub retried: u64,
    /// Handshakes refused because their source already had its share in progress.
    pub refused_source_busy: u64,
    /// Handshakes refused because every handshake slot was taken.
    pub refused_saturated: u64,
    /// Handshakes begun (address validated, a slot taken).
    pub accepted: u64,
    /// Handshakes that failed or timed out.
    pub failed: u64,
    /// Handshakes completed with a certificate that is no configured peer's.
    pub unknown_certificate: u64,
    /// Connections that did not complete the hello.
    pub hello_failed: u64,
    /// Requests reset because their peer had too many in flight.
    pub requests_busy: u64,
    /// Refusals from peers that see two live processes with our identity.
    pub twin_refusals: u64,
}

/// The transport's counters and rate-limited log.
#[derive(Debug)]
pub(super) struct Notices {
    throttle: Mutex<Throttle<Notice>>,
    ignored_not_peer: AtomicU64,
    retried: AtomicU64,
    refused_source_busy: AtomicU64,
    refused_saturated: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
    unknown_certificate: AtomicU64,
    hello_failed: AtomicU64,
    requests_busy: AtomicU64,
    twin_reports: AtomicU64,
}

impl Notices {
    pub(super) fn new() -> Notices {
        Notices {
            throttle: Mutex::new(Throttle::new(LOG_INTERVAL)),
            ignored_not_peer: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            refused_source_busy: AtomicU64::new(0),
            refused_saturated: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unknown_certificate: AtomicU64::new(0),
            hello_failed: AtomicU64::new(0),
            requests_busy: AtomicU64::new(0),
            twin_reports: AtomicU64::new(0),
        }
    }

    pub(super) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one event and logs it if the rate allows; `detail` is built only then.
    pub(super) fn note(&self, notice: Notice, detail: impl FnOnce() -> String) {
        let counter = match notice {
            Notice::NotAPeer => &self.ignored_not_peer,
            Notice::Retry => &self.retried,
            Notice::SourceBusy => &self.refused_source_busy,
            Notice::Saturated => &self.refused_saturated,
            Notice::HandshakeFailed | Notice::OtherCluster => &self.failed,
            Notice::UnknownCertificate => &self.unknown_certificate,
            Notice::HelloFailed => &self.hello_failed,
            Notice::PeerBusy(_) => &self.requests_busy,
            Notice::Twin(_) => &self.twin_reports,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let first_at_once = notice != Notice::Retry;
        let now = Instant::now();
        let line = match self.throttle.lock() {
            Ok(mut t) => t.note(notice, now, detail(), first_at_once),
            Err(_) => None,
        };
        if let Some((count, latest)) = line {
            emit(notice, count, &latest);
        }
    }

    /// Logs the windows that are over; called periodically so a flood that stopped still
    /// gets its final count.
    pub(super) fn flush(&self) {
        let due = match self.throttle.lock() {
            Ok(mut t) => t.due(Instant::now()),
            Err(_) => Vec::new(),
        };
        for (notice, count, latest) in due {
            emit(notice, count, &latest);
        }
    }

    pub(super) fn stats(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            ignored_not_peer: get(&self.ignored_not_peer),
            retried: get(&self.retried),
            refused_source_busy: get(&self.refused_source_busy),
            refused_saturated: get(&self.refused_saturated),
            accepted: get(&self.accepted),
            failed: get(&self.failed),
            unknown_certificate: get(&self.unknown_certificate),
            hello_failed: get(&self.hello_failed),
            requests_busy: get(&self.requests_busy),
            twin_refusals: get(&self.twin_reports),
        }
    }
}

fn emit(notice: Notice, count: u64, latest: &str) {
    let window = LOG_INTERVAL.as_secs();
    match notice {
        Notice::NotAPeer => warn!(
            count,
            latest,
            "ignored {count} cluster handshake(s) from addresses that are not configured peers \
             (at most one such line per {window} s; if a peer sends from another address than \
             its configured one, add that address to [threshold] allowed_sources)"
        ),
        Notice::Retry if count > RETRIES_WORTH_A_LINE => warn!(
            count,
            latest,
            "sent {count} address validations (QUIC Retry) in {window} s, far more than peers \
             need: replayed or spoofed handshakes?"
        ),
        Notice::Retry => debug!(
            count,
            latest, "sent {count} address validations (QUIC Retry)"
        ),
        Notice::SourceBusy => warn!(
            count,
            latest,
            "refused {count} cluster handshake(s): that source already has handshakes in progress"
        ),
        Notice::Saturated => warn!(
            count,
            latest, "refused {count} cluster handshake(s): every handshake slot is taken"
        ),
        Notice::HandshakeFailed => warn!(count, latest, "{count} cluster handshake(s) failed"),
        Notice::OtherCluster => warn!(
            count,
            from = latest,
            "refused {count} connection(s) from a cosigner of another cluster at {latest}: its \
             certificate is not one this config pins (a directory of another split-key run, \
             or another key's cluster on a port this one expects a peer on); check that host's \
             directory and this config's peer addresses"
        ),
        Notice::UnknownCertificate => warn!(
            count,
            latest, "refused {count} cluster connection(s): certificate is not a configured peer"
        ),
        Notice::HelloFailed => warn!(
            count,
            latest, "closed {count} cluster connection(s) that did not complete the hello"
        ),
        Notice::Twin(peer) => error!(
            peer,
            count,
            "this cosigner has a twin: another live process runs with our identity, and \
             cosigner {peer} (and any peer that sees both) refuses to sign with either of us \
             until one is gone; stop one of them. {count} refusal(s); latest: {latest}"
        ),
        Notice::PeerBusy(peer) => warn!(
            peer,
            count,
            latest,
            "reset {count} request(s) from cosigner {peer}: it has too many in flight"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_counted() {
        let n = Notices::new();
        for _ in 0..50 {
            n.note(Notice::NotAPeer, || "x".into());
            n.note(Notice::PeerBusy(2), || "y".into());
        }
        n.note(Notice::Retry, String::new);
        let s = n.stats();
        assert_eq!(
            (s.ignored_not_peer, s.requests_busy, s.retried),
            (50, 50, 1)
        );
    }
}
