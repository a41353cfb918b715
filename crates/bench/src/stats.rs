//! Latency recording and the arithmetic of the report: histograms per operation, merged across
//! connections, turned into throughput and percentiles.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The operations a run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Set,
    Get,
}

impl Op {
    pub const ALL: [Op; 2] = [Op::Set, Op::Get];

    pub fn name(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Get => "get",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Latencies are recorded in microseconds, from 1 µs to a minute, to 3 significant digits (0.1% error).
const LOWEST_MICROS: u64 = 1;
const HIGHEST_MICROS: u64 = 60_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
        .expect("constant bounds are valid")
}

/// What one connection (or, merged, the whole run) measured for one operation.
#[derive(Clone, Debug)]
pub struct OpRecord {
    pub latency_micros: Histogram<u64>,
    /// Requests answered with an error reply (their latency is not in the histogram).
    pub errors: u64,
}

/// Per-operation records, one set per connection, merged at the end.
#[derive(Clone, Debug)]
pub struct Recorder {
    ops: [OpRecord; 2],
}

impl Default for Recorder {
    fn default() -> Recorder {
        let fresh = || OpRecord { latency_micros: new_histogram(), errors: 0 };
        Recorder { ops: [fresh(), fresh()] }
    }
}

impl Recorder {
    /// A successful request. Latencies beyond the histogram's range are clamped to its top (a minute),
    /// so one absurd stall shows as "max ≥ 60 s" instead of being lost.
    pub fn record(&mut self, op: Op, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(LOWEST_MICROS, HIGHEST_MICROS);
        self.ops[op.slot()].latency_micros.saturating_record(micros);
    }

    pub fn record_error(&mut self, op: Op) {
        self.ops[op.slot()].errors += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.latency_micros.add(&theirs.latency_micros).expect("histograms share their bounds");
            mine.errors += theirs.errors;
        }
    }

    pub fn op(&self, op: Op) -> &OpRecord {
        &self.ops[op.slot()]
    }

    /// Every operation together (the "all" row of a mixed run).
    pub fn total(&self) -> OpRecord {
        let mut total = self.ops[0].clone();
        for other in &self.ops[1..] {
            total.latency_micros.add(&other.latency_micros).expect("histograms share their bounds");
            total.errors += other.errors;
        }
        total
    }
}

/// The percentiles the report shows, in this order, in tenths of a percent (integers, so that "99.9% of
/// 1000 requests" is exactly 999 of them and not 999.0000000000001 rounded up to the slowest one).
pub const PERCENTILES: [(&str, u64); 4] = [("p50", 500), ("p90", 900), ("p99", 990), ("p99.9", 999)];

/// The nearest-rank percentile: the smallest recorded value (to the histogram's precision) such that at
/// least `per_mille`/1000 of all values are at or below it. `None` when nothing was recorded.
pub fn percentile(histogram: &Histogram<u64>, per_mille: u64) -> Option<u64> {
    let total = histogram.len();
    if total == 0 {
        return None;
    }
    let rank = (u128::from(total) * u128::from(per_mille)).div_ceil(1000).max(1) as u64;
    let mut seen = 0;
    for bucket in histogram.iter_recorded() {
        seen += bucket.count_at_value();
        if seen >= rank {
            return Some(histogram.highest_equivalent(bucket.value_iterated_to()));
        }
    }
    Some(histogram.max())
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub completed: u64,
    pub errors: u64,
    pub ops_per_second: f64,
    /// `PERCENTILES` in order, then nothing else: milliseconds.
    pub percentiles_ms: [f64; 4],
    pub max_ms: f64,
}

impl Summary {
    /// Throughput counts successful requests only, over the measured wall time.
    pub fn of(record: &OpRecord, measured: Duration) -> Summary {
        let histogram = &record.latency_micros;
        let completed = histogram.len();
        let seconds = measured.as_secs_f64();
        let ops_per_second = if seconds > 0.0 { completed as f64 / seconds } else { 0.0 };
        let to_ms = |micros: Option<u64>| micros.map_or(0.0, |micros| micros as f64 / 1000.0);
        Summary {
            completed,
            errors: record.errors,
            ops_per_second,
            percentiles_ms: PERCENTILES.map(|(_, per_mille)| to_ms(percentile(histogram, per_mille))),
            max_ms: to_ms((completed > 0).then(|| histogram.max())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// hdrhistogram reports the highest value equivalent to the bucket, within 0.1%.
    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_one_to_a_thousand_microseconds() {
        let mut recorder = Recorder::default();
        for n in 1..=1000 {
            recorder.record(Op::Set, micros(n));
        }
        let summary = Summary::of(recorder.op(Op::Set), Duration::from_secs(2));
        assert_eq!(summary.completed, 1000);
        assert_eq!(summary.ops_per_second, 500.0);
        let [p50, p90, p99, p999] = summary.percentiles_ms;
        assert!(close(p50, 0.5), "p50 {p50}");
        assert!(close(p90, 0.9), "p90 {p90}");
        assert!(close(p99, 0.99), "p99 {p99}");
        assert!(close(p999, 0.999), "p99.9 {p999}");
        assert!(close(summary.max_ms, 1.0), "max {}", summary.max_ms);
    }

    #[test]
    fn one_slow_request_in_a_thousand_shows_at_p99_9_and_max_only() {
        let mut recorder = Recorder::default();
        for _ in 0..999 {
            recorder.record(Op::Get, micros(200));
        }
        recorder.record(Op::Get, Duration::from_millis(50));
        let summary = Summary::of(recorder.op(Op::Get), Duration::from_secs(1));
        let [p50, p90, p99, p999] = summary.percentiles_ms;
        assert!(close(p50, 0.2) && close(p90, 0.2) && close(p99, 0.2), "{summary:?}");
        assert!(close(p999, 0.2), "the 999th of 1000 is still fast: {p999}");
        assert!(close(summary.max_ms, 50.0), "{summary:?}");
    }

    #[test]
    fn merged_connections_count_every_request_and_keep_operations_apart() {
        let mut first = Recorder::default();
        let mut second = Recorder::default();
        for _ in 0..300 {
            first.record(Op::Set, micros(1000));
            second.record(Op::Get, micros(100));
        }
        second.record(Op::Set, micros(3000));
        second.record_error(Op::Set);
        first.merge(&second);
        let sets = Summary::of(first.op(Op::Set), Duration::from_millis(500));
        assert_eq!((sets.completed, sets.errors), (301, 1));
        assert_eq!(sets.ops_per_second, 602.0);
        assert!(close(sets.max_ms, 3.0));
        let gets = Summary::of(first.op(Op::Get), Duration::from_millis(500));
        assert_eq!((gets.completed, gets.errors), (300, 0));
        let all = Summary::of(&first.total(), Duration::from_millis(500));
        assert_eq!((all.completed, all.errors), (601, 1));
        // Half the requests took 100 µs and half 1 ms or more: p90 falls among the slow half.
        assert!(close(all.percentiles_ms[1], 1.0), "{all:?}");
    }

    #[test]
    fn nearest_rank_on_small_counts() {
        let mut histogram = new_histogram();
        for value in [10, 20, 30, 40] {
            histogram.record(value).unwrap();
        }
        // Ranks: p50 of 4 is the 2nd value, p90 and above the 4th (ceil(3.6)).
        assert_eq!(percentile(&histogram, 500), Some(20));
        assert_eq!(percentile(&histogram, 900), Some(40));
        assert_eq!(percentile(&histogram, 999), Some(40));
        assert_eq!(percentile(&histogram, 0), Some(10), "rank 0 means the smallest");
        assert_eq!(percentile(&new_histogram(), 500), None);
    }

    #[test]
    fn nothing_measured_reads_as_zeros_not_garbage() {
        let summary = Summary::of(Recorder::default().op(Op::Get), Duration::ZERO);
        assert_eq!(summary.completed, 0);
        assert_eq!(summary.ops_per_second, 0.0);
        assert_eq!(summary.percentiles_ms, [0.0; 4]);
        assert_eq!(summary.max_ms, 0.0);
    }

    #[test]
    fn latencies_out_of_range_are_clamped_not_dropped() {
        let mut recorder = Recorder::default();
        recorder.record(Op::Set, Duration::ZERO);
        recorder.record(Op::Set, Duration::from_secs(3600));
        let summary = Summary::of(recorder.op(Op::Set), Duration::from_secs(1));
        assert_eq!(summary.completed, 2);
        assert!(close(summary.max_ms, 60_000.0), "{summary:?}");
    }
}
