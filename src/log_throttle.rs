//! Rate-limited log lines: one cause repeated many times a second (a flood of handshakes, a
//! node that refuses every dial, a misconfigured peer) must become one line per interval
//! with a count, not a flood of lines that buries everything else.
//!
//! [`Throttle`] is pure (the caller passes the time), so its windows are tested without
//! waiting; callers log what it returns, and call [`Throttle::due`] now and then so that a
//! burst that stopped still gets its final count.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// At most one line per cause per this interval.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// One cause's window.
#[derive(Debug)]
struct Tally {
    since: Instant,
    /// Events in this window not yet logged.
    pending: u64,
    latest: String,
}

/// Per cause, the first event at once (or not: see [`Throttle::note`]), then at most one
/// line per interval with the number of events it stands for and the latest one's detail.
#[derive(Debug)]
pub(crate) struct Throttle<K> {
    interval: Duration,
    tallies: HashMap<K, Tally>,
}

impl<K: Clone + Eq + Hash> Throttle<K> {
    pub(crate) fn new(interval: Duration) -> Throttle<K> {
        Throttle {
            interval,
            tallies: HashMap::new(),
        }
    }

    /// Notes one event. Returns what to log now: the first event after a quiet period
    /// (if `first_at_once`) or, once a window is over, the events it collected.
    pub(crate) fn note(
        &mut self,
        key: K,
        now: Instant,
        detail: String,
        first_at_once: bool,
    ) -> Option<(u64, String)> {
        match self.tallies.get_mut(&key) {
            None => {
                let pending = u64::from(!first_at_once);
                self.tallies.insert(
                    key,
                    Tally {
                        since: now,
                        pending,
                        latest: detail.clone(),
                    },
                );
                first_at_once.then_some((1, detail))
            }
            Some(t) => {
                t.pending += 1;
                t.latest = detail;
                if now.saturating_duration_since(t.since) < self.interval {
                    return None;
                }
                t.since = now;
                Some((std::mem::take(&mut t.pending), t.latest.clone()))
            }
        }
    }

    /// Windows that are over: their pending events to log. A cause whose window passed
    /// without events is forgotten, so its next event is logged at once again.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(K, u64, String)> {
        let mut out = Vec::new();
        self.tallies.retain(|key, t| {
            if now.saturating_duration_since(t.since) < self.interval {
                return true;
            }
            if t.pending == 0 {
                return false;
            }
            out.push((
                key.clone(),
                std::mem::take(&mut t.pending),
                t.latest.clone(),
            ));
            t.since = now;
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_secs(5);

    #[test]
    fn the_first_event_is_logged_at_once_and_the_rest_once_per_interval() {
        let mut t = Throttle::new(I);
        let t0 = Instant::now();
        assert_eq!(t.note(1, t0, "a".into(), true), Some((1, "a".into())));
        for i in 0..1000 {
            assert_eq!(
                t.note(1, t0 + Duration::from_millis(i), format!("{i}"), true),
                None
            );
        }
        // Another cause has its own window.
        assert!(t.note(2, t0, "b".into(), true).is_some());
        assert_eq!(
            t.note(1, t0 + I, "last".into(), true),
            Some((1001, "last".into()))
        );
        assert_eq!(
            t.note(1, t0 + I + Duration::from_secs(1), "x".into(), true),
            None
        );
        assert_eq!(t.due(t0 + I), vec![]);
        assert_eq!(t.due(t0 + 2 * I), vec![(1, 1, "x".to_string())]);
        // A quiet window ends the cause; its next event is logged at once again.
        assert_eq!(t.due(t0 + 3 * I), vec![]);
        assert_eq!(
            t.note(1, t0 + 3 * I, "y".into(), true),
            Some((1, "y".into()))
        );
    }

    #[test]
    fn quiet_causes_are_only_summed() {
        let mut t = Throttle::new(I);
        let t0 = Instant::now();
        assert_eq!(t.note(1, t0, "a".into(), false), None);
        assert_eq!(t.note(1, t0, "b".into(), false), None);
        assert_eq!(t.due(t0 + I), vec![(1, 2, "b".to_string())]);
    }

    #[test]
    fn a_dial_failing_every_200_ms_is_one_line_per_interval() {
        let mut t: Throttle<String> = Throttle::new(I);
        let t0 = Instant::now();
        let mut lines = Vec::new();
        // 30 s of redials every 200 ms, all of one cause, flushed before each.
        for i in 0..150u64 {
            let now = t0 + Duration::from_millis(200 * i);
            lines.extend(t.due(now).into_iter().map(|(_, n, _)| n));
            lines.extend(
                t.note("refused".into(), now, format!("{i}"), true)
                    .map(|(n, _)| n),
            );
        }
        // The first at once, then one line per 5 s (at 5, 10, 15, 20, 25 s).
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert_eq!(lines[0], 1);
        // The last window's events come with the next flush; none is lost or counted twice.
        let rest: u64 = t.due(t0 + 7 * I).iter().map(|(_, n, _)| n).sum();
        assert_eq!(lines.iter().sum::<u64>() + rest, 150, "{lines:?} + {rest}");
    }
}
