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
    /// Latency percentiles in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
}

impl Summary {
    /// Summarizes `h` (successful operations) over `elapsed`.
    pub fn from_histogram(h: &Histogram<u64>, errors: u64, elapsed: Duration) -> Summary {
        Summary {
            ops: h.len(),
            errors,
            elapsed,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
        }
    }

    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.ops as f64 / s
        } else {
            0.0
        }
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
        assert!((s.throughput() - 500.0).abs() < 1e-9);
        assert!((499_000..=501_000).contains(&s.p50_us), "{}", s.p50_us);
        assert!((989_000..=991_000).contains(&s.p99_us), "{}", s.p99_us);
        assert!(s.p50_us <= s.p90_us && s.p90_us <= s.p99_us && s.p99_us <= s.p999_us);
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
