//! One peer as the transport keeps it: its pinned identity and its live connections.

use quinn::{Connection, VarInt};
use tokio::sync::{watch, Notify};

use super::{close, MAX_CONNECTIONS_PER_PEER};
use crate::cluster::PeerId;

pub(super) struct Peer {
    pub(super) id: PeerId,
    pub(super) address: String,
    pub(super) fingerprint: String,
    /// Oldest first; the newest live one carries our requests.
    pub(super) conns: watch::Sender<Vec<Connection>>,
    /// Asks the dialer to skip its backoff because a request is waiting.
    pub(super) dial_now: Notify,
}

impl Peer {
    pub(super) fn live(&self) -> Option<Connection> {
        live(&self.conns.borrow())
    }

    pub(super) fn install(&self, conn: Connection) {
        self.conns.send_modify(|conns| {
            conns.retain(|c| c.close_reason().is_none());
            conns.push(conn);
            while conns.len() > MAX_CONNECTIONS_PER_PEER {
                let old = conns.remove(0);
                old.close(VarInt::from_u32(close::SUPERSEDED), b"superseded");
            }
        });
    }

    pub(super) fn remove(&self, conn: &Connection) {
        let id = conn.stable_id();
        self.conns.send_if_modified(|conns| {
            let before = conns.len();
            conns.retain(|c| c.stable_id() != id);
            conns.len() != before
        });
    }
}

pub(super) fn live(conns: &[Connection]) -> Option<Connection> {
    conns
        .iter()
        .rev()
        .find(|c| c.close_reason().is_none())
        .cloned()
}
