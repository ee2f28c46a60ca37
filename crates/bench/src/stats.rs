//! Latency histograms and their summaries: every benchmark reports the same
//! percentiles so the tables line up.

use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency histogram in microseconds, 1 µs to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("static bounds are valid")
}

/// Records `d` (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, 100_000_000);
    h.record(us).expect("clamped into range");
}

/// Throughput and latency percentiles of one measured point.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Operations that succeeded.
    pub ops: u64,
    /// Operations that failed (errors or timeouts).
    pub errors: u64,
    /// Wall time of the measurement.
    pub elapsed: Duration,
    /// Latency percentiles in microseconds: `None` when no operation
    /// succeeded (an empty histogram has no percentiles; hdrhistogram
    /// would answer 0, which reads like a real, very fast result).
    pub p50_us: Option<u64>,
    /// 90th percentile.
    pub p90_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// 99.9th percentile.
    pub p999_us: Option<u64>,
}

impl Summary {
    /// Summarizes `h` (successful operations) over `elapsed`.
    pub fn from_histogram(h: &Histogram<u64>, errors: u64, elapsed: Duration) -> Summary {
        let q = |q| (!h.is_empty()).then(|| h.value_at_quantile(q));
        Summary {
            ops: h.len(),
            errors,
            elapsed,
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
        }
    }

    /// Successful operations per second, or `None` if nothing was measured
    /// (no operation started in the window, or an empty window).
    pub fn throughput(&self) -> Option<f64> {
        let s = self.elapsed.as_secs_f64();
        (s > 0.0 && self.ops + self.errors > 0).then(|| self.ops as f64 / s)
    }
}

/// The value at quantile `q` (0..=1) of `sorted` (nearest rank), if any.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "input must be sorted");
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles_follow_the_data() {
        let mut h = new_histogram();
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let s = Summary::from_histogram(&h, 2, Duration::from_secs(2));
        assert_eq!(s.ops, 1000);
        assert_eq!(s.errors, 2);
        assert!((s.throughput().unwrap() - 500.0).abs() < 1e-9);
        let (p50, p90, p99, p999) = (
            s.p50_us.unwrap(),
            s.p90_us.unwrap(),
            s.p99_us.unwrap(),
            s.p999_us.unwrap(),
        );
        assert!((499_000..=501_000).contains(&p50), "{p50}");
        assert!((989_000..=991_000).contains(&p99), "{p99}");
        assert!(p50 <= p90 && p90 <= p99 && p99 <= p999);
    }

    #[test]
    fn an_empty_histogram_has_no_percentiles() {
        // Every operation failed: a throughput of 0 is a fact, latencies
        // are not (hdrhistogram says 0 for any quantile of nothing).
        let s = Summary::from_histogram(&new_histogram(), 3, Duration::from_secs(1));
        assert_eq!((s.ops, s.errors), (0, 3));
        assert_eq!(s.throughput(), Some(0.0));
        assert_eq!((s.p50_us, s.p90_us, s.p99_us, s.p999_us), (None, None, None, None));
        // No operation started in the window at all: nothing was measured.
        let s = Summary::from_histogram(&new_histogram(), 0, Duration::from_secs(1));
        assert_eq!(s.throughput(), None);
    }

    #[test]
    fn quantile_uses_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(2.0));
        assert_eq!(quantile(&v, 0.99), Some(4.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
