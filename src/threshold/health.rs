//! What a coordinator knows of each peer's liveness and speed, learnt from every exchange:
//! round-trip estimates as TCP keeps them (RFC 6298: a smoothed mean and a mean deviation),
//! one for heartbeats (the network) and one for sign requests (network plus the peer's work
//! and its fsync), and when the peer was last heard from.
//!
//! A peer that has been silent for several of its own round trips (bounded below, so that
//! scheduling noise on a fast network is not taken for death) is *suspect* at once, long
//! before QUIC's idle timeout would close its connection. Pure: time is passed in.

use std::time::{Duration, Instant};

/// RFC 6298's gains: 1/8 for the mean, 1/4 for the deviation.
const ALPHA: f64 = 0.125;
const BETA: f64 = 0.25;
/// No expected time is shorter than this: a signing's work (share, fsync) alone takes
/// hundreds of microseconds, and the scheduler of a loaded host adds as much.
pub(crate) const MIN_EXPECTED: Duration = Duration::from_millis(2);
/// Silence shorter than this never makes a peer suspect, whatever its round trip.
pub(crate) const MIN_SILENCE: Duration = Duration::from_millis(150);
/// Round trips of silence (beyond the heartbeat interval) that make a peer suspect.
const SILENT_ROUND_TRIPS: u32 = 4;
/// A link is degraded at this many times its usual round trip, and never below the floor:
/// a few milliseconds of scheduling noise on a fast network is no degradation.
const SLOW_FACTOR: u32 = 4;
const SLOW_FLOOR: Duration = Duration::from_millis(50);
/// How much of the gap to a slower sample the baseline moves by: 1/256, so with heartbeats
/// every 250 ms a lasting change is mostly absorbed within a minute.
const BASELINE_DRIFT: u32 = 256;

/// Whether this cosigner's own network is the slow part: every peer it reaches is degraded
/// (see [`PeerHealth::is_degraded`]). One slow peer is routed around; all of them at once,
/// with each usually fast, points at the link they share, this cosigner's.
pub(crate) fn self_degraded<'a>(peers: impl IntoIterator<Item = &'a PeerHealth>) -> bool {
    let mut any = false;
    for p in peers.into_iter().filter(|p| p.is_connected()) {
        if !p.is_degraded() {
            return false;
        }
        any = true;
    }
    any
}

/// A smoothed round-trip estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RttEstimate {
    srtt: Duration,
    rttvar: Duration,
}

impl RttEstimate {
    /// The estimate after the first sample, as RFC 6298 §2.2 starts it.
    pub(crate) fn first(sample: Duration) -> RttEstimate {
        RttEstimate {
            srtt: sample,
            rttvar: sample / 2,
        }
    }

    /// Folds in one more sample (RFC 6298 §2.3).
    pub(crate) fn update(&mut self, sample: Duration) {
        let srtt = self.srtt.as_secs_f64();
        let s = sample.as_secs_f64();
        let rttvar = (1.0 - BETA) * self.rttvar.as_secs_f64() + BETA * (srtt - s).abs();
        self.rttvar = Duration::from_secs_f64(rttvar);
        self.srtt = Duration::from_secs_f64((1.0 - ALPHA) * srtt + ALPHA * s);
    }

    pub(crate) fn srtt(&self) -> Duration {
        self.srtt
    }

    #[cfg(test)]
    pub(crate) fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The time by which an answer is late: mean plus four deviations, at least
    /// [`MIN_EXPECTED`].
    pub(crate) fn expected(&self) -> Duration {
        (self.srtt + 4 * self.rttvar).max(MIN_EXPECTED)
    }
}

/// One peer as the coordinator sees it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PeerHealth {
    /// Heartbeat (and commitment request) round trips: the network.
    network: Option<RttEstimate>,
    /// Sign request to share: the network plus the peer's share and watermark write.
    share: Option<RttEstimate>,
    last_heard: Option<Instant>,
    connected: bool,
    /// The network round trip this peer usually has: the lowest sample, drifting up slowly
    /// towards later ones, so that a link that really moved (another region) is the new
    /// normal within about a minute of heartbeats.
    baseline: Option<Duration>,
}

impl Default for PeerHealth {
    fn default() -> Self {
        PeerHealth::new()
    }
}

impl PeerHealth {
    pub(crate) fn new() -> PeerHealth {
        PeerHealth {
            network: None,
            share: None,
            last_heard: None,
            connected: false,
            baseline: None,
        }
    }

    /// A connection to the peer came up (counts as hearing from it) or went down.
    pub(crate) fn set_connected(&mut self, connected: bool, now: Instant) {
        self.connected = connected;
        if connected {
            self.heard(now);
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    /// Anything arrived from the peer.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = Some(self.last_heard.map_or(now, |t| t.max(now)));
    }

    /// A heartbeat (or any plain request) answered after `rtt`.
    pub(crate) fn network_sample(&mut self, rtt: Duration, now: Instant) {
        update(&mut self.network, rtt);
        self.baseline = Some(match self.baseline {
            None => rtt,
            Some(base) if rtt <= base => rtt,
            Some(base) => base + (rtt - base) / BASELINE_DRIFT,
        });
        self.heard(now);
    }

    /// Whether this link is now much slower than it usually is: its smoothed round trip is
    /// [`SLOW_FACTOR`] times its baseline and at least [`SLOW_FLOOR`].
    pub(crate) fn is_degraded(&self) -> bool {
        match (self.network, self.baseline) {
            (Some(net), Some(base)) => net.srtt() >= SLOW_FLOOR && net.srtt() >= base * SLOW_FACTOR,
            _ => false,
        }
    }

    /// A share arrived `latency` after its request was sent.
    pub(crate) fn share_sample(&mut self, latency: Duration, now: Instant) {
        update(&mut self.share, latency);
        self.heard(now);
    }

    pub(crate) fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// By when a share requested now is late. Without share samples yet, the network
    /// estimate plus [`MIN_EXPECTED`] of work; without either, `fallback`.
    pub(crate) fn expected_share(&self, fallback: Duration) -> Duration {
        match (self.share, self.network) {
            (Some(share), _) => share.expected(),
            (None, Some(net)) => net.expected() + MIN_EXPECTED,
            (None, None) => fallback,
        }
    }

    /// For ordering peers: the mean share latency, or the network's plus work, or `fallback`.
    pub(crate) fn typical_share(&self, fallback: Duration) -> Duration {
        match (self.share, self.network) {
            (Some(share), _) => share.srtt(),
            (None, Some(net)) => net.srtt() + MIN_EXPECTED,
            (None, None) => fallback,
        }
    }

    /// Whether the peer has been silent so long (with heartbeats every `heartbeat`) that it
    /// is taken for dead: more than the heartbeat interval plus several of its round trips,
    /// and at least [`MIN_SILENCE`] beyond the interval. A disconnected peer is unreachable,
    /// which is not the same thing: it is simply not asked.
    pub(crate) fn is_suspect(&self, now: Instant, heartbeat: Duration) -> bool {
        if !self.connected {
            return false;
        }
        let Some(last) = self.last_heard else {
            return false;
        };
        let round_trip = self.network.map_or(MIN_EXPECTED, |n| n.expected());
        let allowance = (round_trip * SILENT_ROUND_TRIPS).max(MIN_SILENCE);
        now.saturating_duration_since(last) > heartbeat + allowance
    }
}

fn update(estimate: &mut Option<RttEstimate>, sample: Duration) {
    match estimate {
        Some(e) => e.update(sample),
        None => *estimate = Some(RttEstimate::first(sample)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_estimate_follows_rfc_6298() {
        let mut e = RttEstimate::first(100 * MS);
        assert_eq!(e.srtt(), 100 * MS);
        assert_eq!(e.rttvar(), 50 * MS);
        assert_eq!(e.expected(), 300 * MS);
        e.update(200 * MS);
        // rttvar = 3/4 * 50 + 1/4 * |100 - 200| = 62.5; srtt = 7/8 * 100 + 1/8 * 200 = 112.5
        assert!((e.rttvar().as_secs_f64() - 0.0625).abs() < 1e-9);
        assert!((e.srtt().as_secs_f64() - 0.1125).abs() < 1e-9);
        // A steady stream of samples converges on the sample with little deviation.
        for _ in 0..100 {
            e.update(10 * MS);
        }
        assert!(e.srtt() < 11 * MS && e.rttvar() < MS, "{e:?}");
        assert_eq!(
            RttEstimate::first(Duration::from_micros(100)).expected(),
            MIN_EXPECTED
        );
    }

    #[test]
    fn a_silent_peer_is_suspect_after_several_round_trips_bounded_below() {
        let t0 = Instant::now();
        let beat = 100 * MS;
        let mut p = PeerHealth::new();
        p.set_connected(true, t0);
        p.network_sample(Duration::from_micros(300), t0);
        assert!(!p.is_suspect(t0 + beat + MIN_SILENCE, beat));
        assert!(p.is_suspect(t0 + beat + MIN_SILENCE + MS, beat));
        // Any news clears it.
        p.heard(t0 + 400 * MS);
        assert!(!p.is_suspect(t0 + 400 * MS, beat));

        // A slow but steady peer is not suspect for being slow.
        let mut slow = PeerHealth::new();
        slow.set_connected(true, t0);
        for i in 0..20 {
            slow.network_sample(200 * MS, t0 + i * 100 * MS);
        }
        let last = t0 + 1900 * MS;
        assert!(!slow.is_suspect(last + beat + 4 * 200 * MS, beat));
        assert!(slow.is_suspect(last + beat + 5 * 400 * MS, beat));

        // Disconnected or never heard: not suspect (not asked at all, or nothing to judge).
        let mut gone = p.clone();
        gone.set_connected(false, t0);
        assert!(!gone.is_suspect(t0 + 10 * beat, beat));
        assert!(!PeerHealth::new().is_suspect(t0, beat));
    }

    #[test]
    fn a_link_much_slower_than_usual_is_degraded_and_all_of_them_point_at_us() {
        let t0 = Instant::now();
        let mut fast = PeerHealth::new();
        fast.set_connected(true, t0);
        for _ in 0..10 {
            fast.network_sample(Duration::from_micros(300), t0);
        }
        assert!(!fast.is_degraded());
        let mut slowed = fast.clone();
        for _ in 0..20 {
            slowed.network_sample(200 * MS, t0);
        }
        assert!(slowed.is_degraded());
        // A link that is always 100 ms (another region) is not degraded.
        let mut far = PeerHealth::new();
        far.set_connected(true, t0);
        for _ in 0..20 {
            far.network_sample(100 * MS, t0);
        }
        assert!(!far.is_degraded());
        // A lasting change becomes the new normal.
        let mut moved = slowed.clone();
        for _ in 0..2000 {
            moved.network_sample(200 * MS, t0);
        }
        assert!(!moved.is_degraded());

        assert!(self_degraded([&slowed, &slowed.clone()]));
        assert!(
            !self_degraded([&slowed, &fast]),
            "one slow peer is routed around"
        );
        assert!(!self_degraded([] as [&PeerHealth; 0]));
        let mut gone = fast.clone();
        gone.set_connected(false, t0);
        assert!(
            self_degraded([&slowed, &gone]),
            "only reachable peers count"
        );
    }

    #[test]
    fn expected_share_time_prefers_share_samples() {
        let t0 = Instant::now();
        let mut p = PeerHealth::new();
        assert_eq!(p.expected_share(800 * MS), 800 * MS);
        p.network_sample(MS, t0);
        assert_eq!(p.expected_share(800 * MS), 3 * MS + MIN_EXPECTED);
        p.share_sample(10 * MS, t0);
        assert_eq!(p.expected_share(800 * MS), 30 * MS);
        assert_eq!(p.typical_share(800 * MS), 10 * MS);
    }
}
