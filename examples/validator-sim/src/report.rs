//! The run's results: latency percentiles per request type, pass/fail counts, refusals,
//! double signs, connection statistics; rendered as text (ending in `N passed, M failed`)
//! or serialised as JSON. Tests read the JSON back through these same types, so a field
//! renamed here fails to compile or to parse there instead of reading as a default.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::doublesign::DoubleSign;

/// Most failure samples / double-sign details kept in a report.
const MAX_SAMPLES: usize = 50;

/// Latency distribution in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=100); 0 for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// Summarises latency samples given in nanoseconds.
pub fn summarize(samples: &mut [u64]) -> LatencySummary {
    samples.sort_unstable();
    LatencySummary {
        count: samples.len() as u64,
        p50_ms: ms(percentile(samples, 50.0)),
        p90_ms: ms(percentile(samples, 90.0)),
        p99_ms: ms(percentile(samples, 99.0)),
        max_ms: ms(samples.last().copied().unwrap_or(0)),
    }
}

/// Results for one request type.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TypeReport {
    pub requests: u64,
    pub passed: u64,
    pub failed: u64,
    /// Round trip of the attempt that got the answer.
    pub latency: LatencySummary,
    /// From the first attempt to the answer, including retries and fail-over.
    pub total_latency: LatencySummary,
}

/// Connection-level statistics.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConnStats {
    pub accepted: u64,
    pub handshake_failures: u64,
    pub rejected_signers: u64,
    pub drops: u64,
    /// Attempts beyond the first, summed over all requests.
    pub retries: u64,
    /// Pings that got no answer (the node just reconnects; not a failure).
    pub ping_failures: u64,
}

/// How a timestamp-only replay was answered.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TimestampReplay {
    /// With the timestamp of the original signature (FilePV behaviour).
    pub returned_stored: u64,
    /// With the new timestamp, signed afresh (tmkms behaviour).
    pub returned_new: u64,
    pub returned_other: u64,
}

/// The full report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub protocol: String,
    pub chains: Vec<String>,
    pub elapsed_ms: f64,
    pub passed: u64,
    pub failed: u64,
    pub by_type: BTreeMap<String, TypeReport>,
    /// RemoteSignerError descriptions and how often each came back.
    pub refusals: BTreeMap<String, u64>,
    /// Failure labels and counts.
    pub failures: BTreeMap<String, u64>,
    pub failure_samples: Vec<String>,
    pub double_signs: u64,
    pub double_sign_details: Vec<DoubleSign>,
    /// Heights the plan went through (a height is committed whatever its signer answered).
    pub heights_committed: u64,
    /// Committed heights at which some request (key, proposal or vote) got no valid answer:
    /// what a validator would see as a missed block.
    pub heights_missed: u64,
    pub longest_gap_ms: f64,
    pub longest_gap_request: String,
    pub connections: ConnStats,
    pub timestamp_replay: TimestampReplay,
    /// Base64 of the validator key the signer presented.
    pub validator_pubkey: Option<String>,
    /// Node IDs of the signers that connected (bounded).
    pub signer_ids: Vec<String>,
    pub ledger_pruned: u64,
    pub stopped_early: bool,
}

impl Report {
    /// The final line: `N passed, M failed`.
    pub fn summary_line(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }

    pub fn success(&self) -> bool {
        self.failed == 0
    }

    /// Human-readable rendering.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "validator-sim {} chains {:?}, {:.3} s",
            self.protocol,
            self.chains,
            self.elapsed_ms / 1000.0
        );
        let _ = writeln!(
            s,
            "{:<17} {:>7} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "type", "reqs", "ok", "fail", "p50 ms", "p90 ms", "p99 ms", "max ms", "max tot ms"
        );
        for (name, t) in &self.by_type {
            let _ = writeln!(
                s,
                "{:<17} {:>7} {:>7} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10.3}",
                name,
                t.requests,
                t.passed,
                t.failed,
                t.latency.p50_ms,
                t.latency.p90_ms,
                t.latency.p99_ms,
                t.latency.max_ms,
                t.total_latency.max_ms
            );
        }
        for (desc, n) in &self.refusals {
            let _ = writeln!(s, "refused {n}x: {desc}");
        }
        for (label, n) in &self.failures {
            let _ = writeln!(s, "failure {n}x: {label}");
        }
        for sample in &self.failure_samples {
            let _ = writeln!(s, "  {sample}");
        }
        let _ = writeln!(
            s,
            "heights committed {}, missed {}",
            self.heights_committed, self.heights_missed
        );
        let _ = writeln!(
            s,
            "longest gap {:.3} ms ({}); connections accepted {}, handshake failures {}, drops {}, retries {}, ping failures {}",
            self.longest_gap_ms,
            self.longest_gap_request,
            self.connections.accepted,
            self.connections.handshake_failures,
            self.connections.drops,
            self.connections.retries,
            self.connections.ping_failures
        );
        let tr = &self.timestamp_replay;
        if tr.returned_stored + tr.returned_new + tr.returned_other > 0 {
            let _ = writeln!(
                s,
                "timestamp replay: stored timestamp {}, new timestamp {}, other {}",
                tr.returned_stored, tr.returned_new, tr.returned_other
            );
        }
        let _ = writeln!(s, "double signs: {}", self.double_signs);
        for ds in &self.double_sign_details {
            let _ = writeln!(
                s,
                "  DOUBLE SIGN {} h={} r={} step={}: {} vs {}",
                ds.key.chain_id,
                ds.key.height,
                ds.key.round,
                ds.key.step,
                ds.first_sign_bytes,
                ds.second_sign_bytes
            );
        }
        s.push_str(&self.summary_line());
        s.push('\n');
        s
    }
}

#[derive(Default)]
struct Samples {
    rtt: Vec<u64>,
    total: Vec<u64>,
}

/// Accumulates results during a run.
#[derive(Default)]
pub struct Recorder {
    report: Report,
    samples: BTreeMap<String, Samples>,
    longest_gap: Duration,
    /// `report.failed` when the previous height was committed.
    failed_at_last_commit: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Recorder {
    pub fn new(protocol: &str, chains: &[String]) -> Self {
        let mut r = Self::default();
        r.report.protocol = protocol.to_owned();
        r.report.chains = chains.to_vec();
        r
    }

    fn gap(&mut self, kind: &str, what: &str, total: Duration) {
        if total > self.longest_gap {
            self.longest_gap = total;
            self.report.longest_gap_request = format!("{kind} {what}");
        }
    }

    /// A request whose answer verified.
    pub fn pass(&mut self, kind: &str, what: &str, rtt: Duration, total: Duration) {
        let t = self.report.by_type.entry(kind.to_owned()).or_default();
        t.requests += 1;
        t.passed += 1;
        self.report.passed += 1;
        let s = self.samples.entry(kind.to_owned()).or_default();
        s.rtt.push(nanos(rtt));
        s.total.push(nanos(total));
        self.gap(kind, what, total);
    }

    /// A request that failed (`label` groups failures; `detail` is kept as a sample).
    pub fn fail(&mut self, kind: &str, what: &str, label: &str, detail: &str, total: Duration) {
        let t = self.report.by_type.entry(kind.to_owned()).or_default();
        t.requests += 1;
        t.failed += 1;
        self.report.failed += 1;
        *self.report.failures.entry(label.to_owned()).or_default() += 1;
        if self.report.failure_samples.len() < MAX_SAMPLES {
            self.report
                .failure_samples
                .push(format!("{kind} {what}: {detail}"));
        }
        self.gap(kind, what, total);
    }

    /// A RemoteSignerError came back (whether expected or not is decided by the caller).
    pub fn refusal(&mut self, description: &str) {
        *self
            .report
            .refusals
            .entry(description.to_owned())
            .or_default() += 1;
    }

    /// A double sign: always a failure.
    pub fn double_sign(&mut self, ds: DoubleSign) {
        self.report.double_signs += 1;
        self.report.failed += 1;
        *self
            .report
            .failures
            .entry("double_sign".to_owned())
            .or_default() += 1;
        if self.report.double_sign_details.len() < MAX_SAMPLES {
            self.report.double_sign_details.push(ds);
        }
    }

    /// A height's last request is done: it counts as missed if anything failed since the
    /// previous height was committed.
    pub fn committed(&mut self) {
        self.report.heights_committed += 1;
        if self.report.failed > self.failed_at_last_commit {
            self.report.heights_missed += 1;
        }
        self.failed_at_last_commit = self.report.failed;
    }

    pub fn report_mut(&mut self) -> &mut Report {
        &mut self.report
    }

    /// Computes the percentiles and returns the report.
    pub fn finish(mut self, elapsed: Duration) -> Report {
        for (kind, mut s) in std::mem::take(&mut self.samples) {
            if let Some(t) = self.report.by_type.get_mut(&kind) {
                t.latency = summarize(&mut s.rtt);
                t.total_latency = summarize(&mut s.total);
            }
        }
        self.report.longest_gap_ms = self.longest_gap.as_secs_f64() * 1e3;
        self.report.elapsed_ms = elapsed.as_secs_f64() * 1e3;
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 90.0), 90);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&sorted, 100.0), 100);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 50.0), 5);
        assert_eq!(percentile(&ten, 99.0), 10);
    }

    #[test]
    fn summary_sorts_and_converts_to_ms() {
        let mut s = vec![3_000_000, 1_000_000, 2_000_000];
        let sum = summarize(&mut s);
        assert_eq!(sum.count, 3);
        assert_eq!(sum.p50_ms, 2.0);
        assert_eq!(sum.max_ms, 3.0);
    }

    #[test]
    fn recorder_counts_and_final_line() {
        let mut r = Recorder::new("v0.38", &["c".into()]);
        r.pass(
            "prevote",
            "h=1",
            Duration::from_millis(1),
            Duration::from_millis(1),
        );
        r.pass(
            "prevote",
            "h=2",
            Duration::from_millis(2),
            Duration::from_millis(900),
        );
        r.fail(
            "precommit",
            "h=2",
            "bad_signature",
            "signature does not verify",
            Duration::from_millis(3),
        );
        let rep = r.finish(Duration::from_secs(1));
        assert_eq!(rep.summary_line(), "2 passed, 1 failed");
        assert!(rep.render().ends_with("2 passed, 1 failed\n"));
        assert!(!rep.success());
        assert_eq!(rep.by_type["prevote"].latency.max_ms, 2.0);
        assert_eq!(rep.longest_gap_request, "prevote h=2");
        assert_eq!(rep.failures["bad_signature"], 1);
    }
}
