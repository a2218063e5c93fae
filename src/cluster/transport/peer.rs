//! One peer as the transport keeps it: its pinned identity, its connections (each with the
//! instance its hello named and its heartbeat health), and which instances of it are alive.
//!
//! A connection from an instance we do not hold a connection to yet means either that the
//! peer restarted (its old process died, and QUIC has not noticed: that takes the idle
//! timeout) or that a second process runs with its identity (a copied directory). Before the
//! newcomer is used, every other instance is probed ([`health::probe`]): one that does not
//! answer within a few round trips is dead, and its connections are closed at once, so a
//! restarted peer is usable at once; one that answers is a live twin, and the peer is
//! [`Duplicate`] until one of them is gone: its connections closed, which QUIC does when
//! nothing, heartbeats included, has come from it for the idle timeout (2 s). A shorter
//! silence is not taken for the end of a twin: a live twin behind a brief loss is exactly
//! the one that could sign elsewhere.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use quinn::{Connection, VarInt};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::close;
use super::health::{self, probe_deadline, Health};
use super::hello::InstanceId;
use crate::cluster::PeerId;

/// Connections kept per peer: one dialed by each side, plus one, so that a newcomer (a
/// restarted process or a twin) is held next to them while it is told apart.
pub(super) const MAX_CONNECTIONS_PER_PEER: usize = 3;
/// Requests one peer may have in flight with us, over all its connections: what two
/// connections (one each way) carry at full stream credit. A well-behaved peer never reaches
/// it; the excess of one that does is reset as busy rather than queued.
pub(super) const MAX_IN_FLIGHT_PER_PEER: usize =
    2 * crate::cluster::tls::MAX_STREAMS_PER_CONNECTION as usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    Outgoing,
    Incoming,
}

impl Direction {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
        }
    }
}

/// A connection that completed its hello.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) conn: Connection,
    pub(super) instance: InstanceId,
    pub(super) direction: Direction,
    pub(super) health: Arc<Health>,
}

impl Link {
    fn is_live(&self) -> bool {
        self.conn.close_reason().is_none()
    }
}

/// One running process of a peer, as its connection shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The process, as its hello named it.
    pub id: InstanceId,
    /// The address its connection comes from.
    pub address: SocketAddr,
}

/// Two or more live processes with one peer's identity, in the order we met them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    /// The instances, first met first.
    pub instances: Vec<Instance>,
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, inst) in self.instances.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "instance {} at {}", inst.id, inst.address)?;
        }
        Ok(())
    }
}

pub(super) struct Peer {
    pub(super) id: PeerId,
    /// `HOST:PORT`, resolved anew on every dial.
    pub(super) address: String,
    pub(super) fingerprint: String,
    /// Oldest first; the newest live one carries our requests.
    links: watch::Sender<Vec<Arc<Link>>>,
    /// Asks the dialer to skip its backoff because a request is waiting.
    pub(super) dial_now: Notify,
    /// One admission at a time, so concurrent newcomers do not probe the same instance twice.
    admission: tokio::sync::Mutex<()>,
    /// Whether a duplicate was reported and its end not yet.
    reported_duplicate: Mutex<bool>,
    pub(super) in_flight: Arc<Semaphore>,
}

impl Peer {
    pub(super) fn new(id: PeerId, address: String, fingerprint: String) -> Peer {
        Peer {
            id,
            address,
            fingerprint,
            links: watch::Sender::new(Vec::new()),
            dial_now: Notify::new(),
            admission: tokio::sync::Mutex::new(()),
            reported_duplicate: Mutex::new(false),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_PEER)),
        }
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Vec<Arc<Link>>> {
        self.links.subscribe()
    }

    pub(super) fn live(&self) -> Option<Arc<Link>> {
        live(&self.links.borrow())
    }

    pub(super) fn live_links(&self) -> Vec<Arc<Link>> {
        self.links
            .borrow()
            .iter()
            .filter(|l| l.is_live())
            .cloned()
            .collect()
    }

    pub(super) fn duplicate(&self) -> Option<Duplicate> {
        let instances = instances(&self.live_links());
        (instances.len() > 1).then_some(Duplicate { instances })
    }

    /// Installs a connection that completed its hello, first telling a restart from a twin
    /// if it comes from an instance we hold no connection to.
    pub(super) async fn admit(&self, link: Arc<Link>) {
        let _turn = self.admission.lock().await;
        let others: Vec<Arc<Link>> = self.live_links();
        if others.is_empty() || others.iter().any(|l| l.instance == link.instance) {
            self.install(link);
            return;
        }
        let newcomer = Instance {
            id: link.instance,
            address: link.conn.remote_address(),
        };
        for old in instances(&others) {
            let of_old: Vec<Arc<Link>> = others
                .iter()
                .filter(|l| l.instance == old.id)
                .cloned()
                .collect();
            let wait = of_old
                .iter()
                .map(|l| probe_deadline(l.health.snapshot().rtt_smoothed.unwrap_or(l.conn.rtt())))
                .max()
                .unwrap_or_default();
            if answers(&of_old).await {
                if let Ok(mut reported) = self.reported_duplicate.lock() {
                    *reported = true;
                }
                error!(
                    peer = self.id,
                    first_instance = %old.id,
                    first_address = %old.address,
                    second_instance = %newcomer.id,
                    second_address = %newcomer.address,
                    "two live instances of cosigner {}: instance {} at {} and instance {} at {} \
                     (a copied cosigner directory?); refusing shares to and from cosigner {} \
                     until one of them is gone",
                    self.id, old.id, old.address, newcomer.id, newcomer.address, self.id
                );
            } else {
                info!(
                    peer = self.id,
                    old_instance = %old.id,
                    old_address = %old.address,
                    new_instance = %newcomer.id,
                    new_address = %newcomer.address,
                    "cosigner {} restarted: its previous instance did not answer within {:?}; \
                     closing its connections",
                    self.id, wait
                );
                for l in of_old {
                    l.conn.close(
                        VarInt::from_u32(close::RESTARTED),
                        b"superseded by a new instance",
                    );
                }
            }
        }
        self.install(link);
    }

    fn install(&self, link: Arc<Link>) {
        self.links.send_modify(|links| {
            links.retain(|l| l.is_live());
            links.push(link);
            while links.len() > MAX_CONNECTIONS_PER_PEER {
                let ids: Vec<InstanceId> = links.iter().map(|l| l.instance).collect();
                let old = links.remove(evict(&ids));
                old.conn
                    .close(VarInt::from_u32(close::SUPERSEDED), b"superseded");
            }
        });
    }

    pub(super) fn remove(&self, conn: &Connection) {
        let id = conn.stable_id();
        self.links.send_if_modified(|links| {
            let before = links.len();
            links.retain(|l| l.conn.stable_id() != id);
            links.len() != before
        });
        let Ok(mut reported) = self.reported_duplicate.lock() else {
            return;
        };
        if *reported && self.duplicate().is_none() {
            *reported = false;
            let left: Vec<String> = instances(&self.live_links())
                .iter()
                .map(|i| format!("instance {} at {}", i.id, i.address))
                .collect();
            warn!(
                peer = self.id,
                "cosigner {} is down to one live instance ({}): serving it again",
                self.id,
                if left.is_empty() {
                    "none connected".to_string()
                } else {
                    left.join(", ")
                }
            );
        }
    }
}

pub(super) fn live(links: &[Arc<Link>]) -> Option<Arc<Link>> {
    links.iter().rev().find(|l| l.is_live()).cloned()
}

/// The distinct instances of `links`, in the order of their first link, each at the address
/// of its newest one.
fn instances(links: &[Arc<Link>]) -> Vec<Instance> {
    let mut out: Vec<Instance> = Vec::new();
    for l in links {
        let address = l.conn.remote_address();
        match out.iter_mut().find(|i| i.id == l.instance) {
            Some(i) => i.address = address,
            None => out.push(Instance {
                id: l.instance,
                address,
            }),
        }
    }
    out
}

/// Which of too many connections (oldest first, by instance) to close: the oldest of an
/// instance that has another, so that every instance stays visible; if each has only one,
/// the oldest.
fn evict(instances: &[InstanceId]) -> usize {
    instances
        .iter()
        .position(|i| instances.iter().filter(|j| *j == i).count() > 1)
        .unwrap_or(0)
}

/// Whether any of one instance's connections answers a probe.
async fn answers(links: &[Arc<Link>]) -> bool {
    let mut probes = JoinSet::new();
    for l in links {
        let l = l.clone();
        probes.spawn(async move { health::probe(&l.conn, &l.health).await });
    }
    while let Some(r) = probes.join_next().await {
        if matches!(r, Ok(true)) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_keeps_every_instance_visible() {
        let (a, b, c, d) = (
            InstanceId([1; 16]),
            InstanceId([2; 16]),
            InstanceId([3; 16]),
            InstanceId([4; 16]),
        );
        // One instance: the oldest goes.
        assert_eq!(evict(&[a, a, a, a]), 0);
        // A twin's only connection stays; the current instance gives up its oldest.
        assert_eq!(evict(&[b, a, a, b]), 0);
        assert_eq!(evict(&[b, a, a, c]), 1);
        assert_eq!(evict(&[b, c, a, a]), 2);
        // All distinct: the oldest.
        assert_eq!(evict(&[a, b, c, d]), 0);
    }

    #[test]
    fn a_duplicate_names_every_instance() {
        let d = Duplicate {
            instances: vec![
                Instance {
                    id: InstanceId([0xab; 16]),
                    address: "10.0.0.1:7101".parse().unwrap(),
                },
                Instance {
                    id: InstanceId([0xcd; 16]),
                    address: "10.0.0.9:7101".parse().unwrap(),
                },
            ],
        };
        let text = d.to_string();
        assert!(
            text.contains("10.0.0.1:7101") && text.contains("10.0.0.9:7101"),
            "{text}"
        );
        assert!(
            text.contains(&"ab".repeat(16)) && text.contains(&"cd".repeat(16)),
            "{text}"
        );
    }
}
