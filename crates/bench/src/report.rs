//! The result of a run, as a table for people or one JSON document for scripts.

use std::fmt;
use std::time::Duration;

use serde_json::json;

use crate::args::{BenchConfig, Length};
use crate::stats::{Op, Recorder, Summary, PERCENTILES};

#[derive(Clone, Debug)]
pub struct Report {
    pub target: String,
    pub connections: usize,
    pub inflight: usize,
    pub get_percent: u32,
    pub keyspace: u64,
    pub value_size: usize,
    pub warmup: Duration,
    /// From the start of measuring to the last measured answer.
    pub measured: Duration,
    pub elapsed: Duration,
    /// One row per operation that was sent, then "all" when there were several.
    pub rows: Vec<(String, Summary)>,
    pub first_error: Option<String>,
}

impl Report {
    pub fn new(
        config: &BenchConfig,
        elapsed: Duration,
        measured: Duration,
        recorder: &Recorder,
        first_error: Option<String>,
    ) -> Report {
        let sent = |op: Op| match op {
            Op::Get => config.get_percent > 0,
            Op::Set => config.get_percent < 100,
        };
        let mut rows: Vec<(String, Summary)> = Op::ALL
            .into_iter()
            .filter(|&op| sent(op))
            .map(|op| (op.name().to_string(), Summary::of(recorder.op(op), measured)))
            .collect();
        if rows.len() > 1 {
            rows.push(("all".into(), Summary::of(&recorder.total(), measured)));
        }
        Report {
            target: format!("{} {}", config.target.kind(), config.target.address()),
            connections: config.connections,
            inflight: config.inflight,
            get_percent: config.get_percent,
            keyspace: config.keyspace,
            value_size: config.value_size,
            warmup: config.warmup,
            measured,
            elapsed,
            rows,
            first_error,
        }
        .checked(config)
    }

    fn checked(self, config: &BenchConfig) -> Report {
        if let (Length::Requests(count), Some((_, all))) = (config.length, self.rows.last()) {
            debug_assert!(all.completed + all.errors <= count, "more answers measured than requests allowed");
        }
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        let operations: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|(name, summary)| {
                let mut latency: serde_json::Map<String, serde_json::Value> = PERCENTILES
                    .iter()
                    .zip(summary.percentiles_ms)
                    .map(|((label, _), ms)| (label.to_string(), json!(ms)))
                    .collect();
                latency.insert("max".into(), json!(summary.max_ms));
                json!({
                    "op": name,
                    "completed": summary.completed,
                    "errors": summary.errors,
                    "ops_per_second": summary.ops_per_second,
                    "latency_ms": latency,
                })
            })
            .collect();
        json!({
            "target": self.target,
            "connections": self.connections,
            "inflight_per_connection": self.inflight,
            "clients": self.connections * self.inflight,
            "get_percent": self.get_percent,
            "keyspace": self.keyspace,
            "value_size": self.value_size,
            "warmup_seconds": self.warmup.as_secs_f64(),
            "measured_seconds": self.measured.as_secs_f64(),
            "operations": operations,
            "first_error": self.first_error,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} connections x {} in flight, {}% reads, {} keys, {}-byte values; measured {:.1} s after {:.1} s of warm-up",
            self.target,
            self.connections,
            self.inflight,
            self.get_percent,
            self.keyspace,
            self.value_size,
            self.measured.as_secs_f64(),
            self.warmup.as_secs_f64()
        )?;
        write!(f, "{:<4} {:>10} {:>7} {:>11}", "op", "requests", "errors", "ops/s")?;
        for (label, _) in PERCENTILES {
            write!(f, " {:>9}", format!("{label} ms"))?;
        }
        writeln!(f, " {:>9}", "max ms")?;
        for (name, summary) in &self.rows {
            write!(
                f,
                "{name:<4} {:>10} {:>7} {:>11.0}",
                summary.completed, summary.errors, summary.ops_per_second
            )?;
            for ms in summary.percentiles_ms {
                write!(f, " {ms:>9.3}")?;
            }
            writeln!(f, " {:>9.3}", summary.max_ms)?;
        }
        if let Some(error) = &self.first_error {
            writeln!(f, "first error reply: {error}")?;
        }
        Ok(())
    }
}
