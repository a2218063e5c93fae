//! After a refresh (or a join) decided: how long, and how, a member keeps answering (and
//! asking) the others so that every one hears the decision before it stops.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::{sleep, Instant};

use super::run::{disk, Disk};
use crate::ceremony::abort::Abort;
use crate::ceremony::messages::{Ask, CeremonyResponse, RefreshStatus};
use crate::ceremony::run::{Hooks, TICK};
use crate::cluster::PeerId;
use crate::threshold::epoch::EpochId;
use crate::threshold::messages::ClusterResponse;

/// After switching: until every member has switched or heard that we did, we answer, and
/// we ask each member we are not sure of. Waiting only to be asked is not enough: a member
/// that decided as we did ("every cosigner staged") never asks again, so two such members
/// would each wait out the linger for the other.
pub(super) struct Told<'a> {
    pub(super) disk: &'a Mutex<Disk>,
    pub(super) heard: BTreeMap<PeerId, Option<RefreshStatus>>,
    pub(super) new: EpochId,
}

impl Told<'_> {
    fn waits_for(&self, peer: PeerId) -> bool {
        let switched = self
            .heard
            .get(&peer)
            .is_some_and(|s| s.is_some_and(|s| s.current == self.new));
        !switched && !disk(self.disk).fetched_after_decision.contains(&peer)
    }
}

impl Hooks for Told<'_> {
    fn done(&mut self) -> bool {
        !self.heard.keys().any(|&peer| self.waits_for(peer))
    }

    fn next_ask(&self, peer: PeerId) -> Option<Ask> {
        self.waits_for(peer).then_some(Ask::Status)
    }

    fn take(&mut self, peer: PeerId, _: Ask, response: ClusterResponse) -> Option<String> {
        if let ClusterResponse::Ceremony(CeremonyResponse::Status(status)) = response {
            self.heard.insert(peer, Some(status));
        }
        // Asked again, after a pause, until it has switched.
        Some("has not switched yet".to_string())
    }

    fn fail(&mut self, _: Abort) {}
}

/// Keeps answering until every member has heard our decision (`told`: it asked after we
/// decided), except those we heard already switched to `new`, at most `limit`. A refresh and
/// a join keep `told` in their own state.
pub(crate) async fn linger_until_told(
    told: impl Fn(PeerId) -> bool,
    heard: &BTreeMap<PeerId, Option<RefreshStatus>>,
    new: Option<EpochId>,
    limit: Duration,
) {
    let until = Instant::now() + limit;
    loop {
        let waiting = heard
            .iter()
            .any(|(peer, status)| !status.is_some_and(|s| Some(s.current) == new) && !told(*peer));
        if !waiting || Instant::now() >= until {
            return;
        }
        sleep(TICK).await;
    }
}
