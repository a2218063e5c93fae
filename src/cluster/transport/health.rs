//! Heartbeats: a cheap ping on every connection, which tells when a peer was last heard and
//! how long a round trip takes, and answers "is the process behind this connection alive?"
//! within a few round trips instead of QUIC's idle timeout.
//!
//! A ping is a QUIC datagram (unreliable: a lost one is just a missing sample) of 9 bytes:
//! a kind byte and a sequence number, echoed back as a pong. Datagrams are authenticated like
//! everything else on the connection, so only the process holding that connection's keys can
//! answer: a restarted peer cannot answer for its predecessor's connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::Connection;
use tokio::sync::watch;
use tokio::time::{sleep, timeout_at};

/// How often each side pings each connection.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
/// A liveness probe waits this many smoothed round trips for an answer...
const PROBE_ROUND_TRIPS: u32 = 3;
/// ...but never less than this, so scheduling noise on a loaded host is not taken for death.
pub(crate) const PROBE_FLOOR: Duration = Duration::from_millis(150);
/// Pings whose pong we still wait for; older ones are forgotten (their pongs are late).
const PINGS_REMEMBERED: usize = 16;
/// Bytes of datagrams quinn buffers per connection, each way: plenty for 9-byte pings read
/// as they come, and a bound on what a peer can make us hold.
pub(crate) const DATAGRAM_BUFFER: usize = 2048;

const PING: u8 = 1;
const PONG: u8 = 2;
const DATAGRAM_LEN: usize = 9;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Beat {
    Ping(u64),
    Pong(u64),
}

fn encode(beat: Beat) -> Vec<u8> {
    let (kind, seq) = match beat {
        Beat::Ping(s) => (PING, s),
        Beat::Pong(s) => (PONG, s),
    };
    let mut out = Vec::with_capacity(DATAGRAM_LEN);
    out.push(kind);
    out.extend_from_slice(&seq.to_le_bytes());
    out
}

fn decode(datagram: &[u8]) -> Option<Beat> {
    let (&kind, seq) = datagram.split_first()?;
    let seq = u64::from_le_bytes(seq.try_into().ok()?);
    match kind {
        PING => Some(Beat::Ping(seq)),
        PONG => Some(Beat::Pong(seq)),
        _ => None,
    }
}

/// What the heartbeats of one connection have shown so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// When anything (a ping or a pong) last arrived from the peer on this connection.
    pub last_heard: Option<Instant>,
    /// The latest round-trip sample.
    pub rtt_latest: Option<Duration>,
    /// Round trips smoothed as TCP does (RFC 6298: 7/8 old, 1/8 new).
    pub rtt_smoothed: Option<Duration>,
    /// Round-trip samples taken; a reader polling the snapshot tells new samples by it.
    pub rtt_samples: u64,
}

/// The pure bookkeeping of one connection's heartbeats.
#[derive(Debug, Default)]
struct Beats {
    next_seq: u64,
    /// Pings sent and not yet answered, oldest first.
    outstanding: VecDeque<(u64, Instant)>,
    snapshot: HealthSnapshot,
}

impl Beats {
    fn sent(&mut self, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.outstanding.len() == PINGS_REMEMBERED {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((seq, now));
        seq
    }

    fn heard(&mut self, now: Instant) {
        self.snapshot.last_heard = Some(now);
    }

    /// A pong for `seq`: the round trip it measures, if the ping is one we still wait for.
    fn pong(&mut self, seq: u64, now: Instant) -> Option<Duration> {
        self.heard(now);
        let at = self.outstanding.iter().position(|(s, _)| *s == seq)?;
        let (_, sent) = self.outstanding.remove(at)?;
        let sample = now.saturating_duration_since(sent);
        let s = &mut self.snapshot;
        s.rtt_latest = Some(sample);
        s.rtt_smoothed = Some(match s.rtt_smoothed {
            None => sample,
            Some(old) => (old * 7 + sample) / 8,
        });
        s.rtt_samples += 1;
        Some(sample)
    }
}

/// One connection's heartbeat state, shared by its heartbeat task and liveness probes.
#[derive(Debug)]
pub(super) struct Health {
    beats: Mutex<Beats>,
    /// The highest sequence number answered so far (`None` before the first pong).
    answered: watch::Sender<Option<u64>>,
}

impl Health {
    pub(super) fn new() -> Health {
        Health {
            beats: Mutex::new(Beats::default()),
            answered: watch::Sender::new(None),
        }
    }

    pub(super) fn snapshot(&self) -> HealthSnapshot {
        self.beats.lock().map(|b| b.snapshot).unwrap_or_default()
    }

    /// Sends one ping; its sequence number, or `None` if the connection cannot carry it.
    fn ping(&self, conn: &Connection) -> Option<u64> {
        let seq = self.beats.lock().ok()?.sent(Instant::now());
        conn.send_datagram(encode(Beat::Ping(seq)).into()).ok()?;
        Some(seq)
    }

    fn on_datagram(&self, conn: &Connection, datagram: &[u8]) {
        let now = Instant::now();
        match decode(datagram) {
            Some(Beat::Ping(seq)) => {
                if let Ok(mut b) = self.beats.lock() {
                    b.heard(now);
                }
                // A full send buffer drops the oldest datagrams: fine for pongs.
                let _ = conn.send_datagram(encode(Beat::Pong(seq)).into());
            }
            Some(Beat::Pong(seq)) => {
                let answered = self
                    .beats
                    .lock()
                    .ok()
                    .and_then(|mut b| b.pong(seq, now).map(|_| seq));
                if let Some(seq) = answered {
                    self.answered.send_if_modified(|max| match *max {
                        Some(m) if m >= seq => false,
                        _ => {
                            *max = Some(seq);
                            true
                        }
                    });
                }
            }
            // Our peers send nothing else; anything else is ignored, never answered.
            None => {}
        }
    }

    /// The round trip to wait on when probing: measured by heartbeats, else quinn's estimate.
    fn rtt(&self, conn: &Connection) -> Duration {
        self.snapshot().rtt_smoothed.unwrap_or_else(|| conn.rtt())
    }
}

/// Pings `conn` every [`HEARTBEAT_INTERVAL`] and answers the peer's pings, until the
/// connection closes.
pub(super) async fn run(conn: Connection, health: Arc<Health>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if health.ping(&conn).is_none() && conn.close_reason().is_some() {
                    return;
                }
            }
            datagram = conn.read_datagram() => match datagram {
                Ok(d) => health.on_datagram(&conn, &d),
                Err(_) => return,
            },
        }
    }
}

/// How long a probe waits for an answer at a round trip of `rtt`.
pub(super) fn probe_deadline(rtt: Duration) -> Duration {
    (rtt * PROBE_ROUND_TRIPS).max(PROBE_FLOOR)
}

/// Whether the process behind `conn` answers a ping within [`probe_deadline`]. Pings go out
/// every third of the deadline, so one lost datagram does not decide it.
pub(super) async fn probe(conn: &Connection, health: &Health) -> bool {
    let wait = probe_deadline(health.rtt(conn));
    let deadline = tokio::time::Instant::now() + wait;
    let mut answered = health.answered.subscribe();
    let Some(first) = health.ping(conn) else {
        return false;
    };
    let alive = |max: &Option<u64>| max.is_some_and(|m| m >= first);
    loop {
        let resend = sleep(wait / PROBE_ROUND_TRIPS);
        tokio::select! {
            r = timeout_at(deadline, answered.wait_for(alive)) => {
                return matches!(r, Ok(Ok(_)));
            }
            _ = resend => {
                let _ = health.ping(conn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_round_trip_through_nine_bytes() {
        for beat in [Beat::Ping(0), Beat::Pong(u64::MAX), Beat::Ping(77)] {
            let bytes = encode(beat);
            assert_eq!(bytes.len(), DATAGRAM_LEN);
            assert_eq!(decode(&bytes), Some(beat));
        }
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[PING; 8]), None);
        assert_eq!(decode(&[PING; 10]), None);
        assert_eq!(decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn pongs_give_samples_and_a_smoothed_round_trip() {
        let mut b = Beats::default();
        let t0 = Instant::now();
        let s0 = b.sent(t0);
        let s1 = b.sent(t0);
        assert_eq!(
            b.pong(s0, t0 + Duration::from_millis(8)),
            Some(Duration::from_millis(8))
        );
        assert_eq!(b.snapshot.rtt_smoothed, Some(Duration::from_millis(8)));
        assert_eq!(
            b.pong(s1, t0 + Duration::from_millis(16)),
            Some(Duration::from_millis(16))
        );
        assert_eq!(b.snapshot.rtt_latest, Some(Duration::from_millis(16)));
        assert_eq!(b.snapshot.rtt_smoothed, Some(Duration::from_millis(9)));
        assert_eq!(b.snapshot.rtt_samples, 2);
        assert_eq!(b.snapshot.last_heard, Some(t0 + Duration::from_millis(16)));
        // A repeated or unknown pong is heard but measures nothing.
        assert_eq!(b.pong(s1, t0 + Duration::from_millis(20)), None);
        assert_eq!(b.pong(999, t0 + Duration::from_millis(21)), None);
        assert_eq!(b.snapshot.rtt_samples, 2);
        assert_eq!(b.snapshot.last_heard, Some(t0 + Duration::from_millis(21)));
    }

    #[test]
    fn unanswered_pings_are_bounded() {
        let mut b = Beats::default();
        let t0 = Instant::now();
        for _ in 0..1000 {
            b.sent(t0);
        }
        assert_eq!(b.outstanding.len(), PINGS_REMEMBERED);
        // The oldest were forgotten; the newest still measure.
        assert_eq!(b.pong(0, t0), None);
        assert!(b.pong(999, t0).is_some());
    }

    #[test]
    fn probes_wait_a_few_round_trips_bounded_below() {
        assert_eq!(probe_deadline(Duration::from_micros(300)), PROBE_FLOOR);
        assert_eq!(
            probe_deadline(Duration::from_millis(100)),
            Duration::from_millis(300)
        );
    }
}
