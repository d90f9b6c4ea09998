//! Latency samples and their summary (nearest-rank percentiles).

use std::time::{Duration, Instant};

use serde::Serialize;

/// Latencies of one series, in milliseconds, in the order measured.
#[derive(Clone, Debug, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// Records one duration.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e3);
    }

    /// Records a value already in milliseconds.
    pub fn push_ms(&mut self, ms: f64) {
        self.0.push(ms);
    }

    /// The summary, or `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        summarize(&self.0)
    }
}

/// What a series of latencies comes to.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Fastest, ms.
    pub min_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms (with fewer than 100 samples, close to the max).
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Sum of all samples, s (the busy time of a sequential series).
    pub total_s: f64,
}

impl Summary {
    /// Operations per second of one sequential stream: n / total busy time.
    pub fn sequential_rate(&self) -> f64 {
        if self.total_s > 0.0 {
            self.n as f64 / self.total_s
        } else {
            0.0
        }
    }
}

/// Summarises samples in milliseconds; `None` when there are none.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let total: f64 = sorted.iter().sum();
    Some(Summary {
        n: sorted.len(),
        min_ms: sorted[0],
        mean_ms: total / sorted.len() as f64,
        p50_ms: percentile(&sorted, 0.50),
        p95_ms: percentile(&sorted, 0.95),
        p99_ms: percentile(&sorted, 0.99),
        max_ms: sorted[sorted.len() - 1],
        total_s: total / 1e3,
    })
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Times an async operation.
pub async fn timed<T, F: std::future::Future<Output = T>>(f: F) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

/// Formats milliseconds for the table.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&samples).unwrap();
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p95_ms, 95.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        let one = summarize(&[7.0]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert!(summarize(&[]).is_none());
    }
}
