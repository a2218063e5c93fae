//! The two kinds of series added to prometheus-client's own: a count exposed under Horcrux's
//! exact names, and a latency histogram that records with atomics alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A count that only goes up, exposed under its name as given (`signer_total_prevotes_signed`).
/// prometheus-client appends `_total` to every counter, as OpenMetrics asks; Horcrux's Go
/// client does not, and the dashboards and alerts of operators moving from Horcrux use the
/// bare names. So these are typed `unknown`, which Prometheus ingests under the exact name.
/// Our own counts are ordinary counters (`cosigner_..._total`).
#[derive(Clone, Debug, Default)]
pub struct Total(Arc<AtomicU64>);

impl Total {
    /// Counts one event.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The events counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for Total {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for Total {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Upper bounds of the latency buckets, in seconds: from a loopback signing (under a
/// millisecond) to the node's 5 s deadline.
const BOUNDS: [f64; 14] = [
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const BOUNDS_NANOS: [u64; 14] = [
    250_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];

/// A latency histogram (fixed buckets, [`BOUNDS`]). prometheus-client's own takes a lock
/// per observation; this one is a few relaxed atomic adds, so recording a signing's latency
/// costs the signing nothing measurable. A scrape may see a bucket count and the sum of
/// slightly different moments, which a histogram's readers tolerate.
#[derive(Clone, Debug, Default)]
pub struct Latency(Arc<LatencyCells>);

#[derive(Debug, Default)]
struct LatencyCells {
    /// Per bucket (the last one above every bound), not cumulative.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Latency {
    /// Records one latency in its bucket and in the sum.
    pub fn observe(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BOUNDS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_agree_in_both_units() {
        for (s, n) in BOUNDS.iter().zip(BOUNDS_NANOS) {
            assert_eq!((s * 1e9).round() as u64, n);
        }
    }

    #[test]
    fn latencies_land_in_their_buckets() {
        let h = Latency::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(250));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let cells: Vec<u64> =
            h.0.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
        assert_eq!(cells[0], 2);
        assert_eq!(cells[4], 1);
        assert_eq!(cells[BOUNDS.len()], 1);
        assert_eq!(cells.iter().sum::<u64>(), 4);
    }
}
