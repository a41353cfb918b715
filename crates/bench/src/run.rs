//! The runner: start every connection, warm up, measure, stop, merge what each connection recorded.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::args::{BenchConfig, Length, Target};
use crate::control::Control;
use crate::report::Report;
use crate::stats::{Op, Recorder};

/// What one connection (or one etcd stream) brings back.
#[derive(Debug, Default)]
pub struct ConnectionOutcome {
    pub recorder: Recorder,
    /// When its last measured answer arrived: the measured window ends at the latest of these.
    pub last_answer: Option<Instant>,
    /// The text of the first error reply, to show the user what went wrong.
    pub first_error: Option<String>,
}

impl ConnectionOutcome {
    pub fn answered(&mut self, op: Op, is_error: bool, sent_at: Instant, now: Instant) {
        if is_error {
            self.recorder.record_error(op);
        } else {
            self.recorder.record(op, now - sent_at);
        }
        self.last_answer = Some(now);
    }

    pub fn merge(&mut self, other: ConnectionOutcome) {
        self.recorder.merge(&other.recorder);
        self.last_answer = self.last_answer.max(other.last_answer);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The whole run: a report, plus the first failure of a connection if one failed (the report then covers
/// the connections that did not).
pub async fn run(config: BenchConfig) -> Result<(Report, Option<String>), String> {
    let config = Arc::new(config);
    let budget = match config.length {
        Length::Requests(count) => Some(count),
        Length::Duration(_) => None,
    };
    let control = Arc::new(Control::new(budget));
    let mut connections = JoinSet::new();
    for number in 0..config.connections as u64 {
        let (config, control) = (config.clone(), control.clone());
        connections.spawn(async move {
            let address = config.target.address().to_string();
            let outcome = match &config.target {
                Target::Resp(_) => {
                    crate::resp_target::run_connection(address, number, config.clone(), control.clone()).await
                }
                Target::Etcd(_) => {
                    crate::etcd_target::run_connection(address, number, config.clone(), control.clone()).await
                }
            };
            control.connection_ended();
            outcome
        });
    }
    let progress = config.progress.then(|| tokio::spawn(show_progress(control.clone())));

    let started = Instant::now();
    tokio::time::sleep(config.warmup).await;
    control.start_measuring();
    let measuring_since = Instant::now();
    match config.length {
        Length::Duration(duration) => {
            let deadline = measuring_since + duration;
            while Instant::now() < deadline && control.ended_connections() < config.connections {
                tokio::time::sleep(Duration::from_millis(20).min(deadline - Instant::now())).await;
            }
        }
        Length::Requests(_) => {
            while !control.is_stopping() && control.ended_connections() < config.connections {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    control.stop();

    let mut total = ConnectionOutcome::default();
    let mut failure = None;
    let drain_deadline = Instant::now() + config.timeout + Duration::from_secs(1);
    while let Ok(Some(joined)) = tokio::time::timeout_at(drain_deadline.into(), connections.join_next()).await
    {
        match joined {
            Ok(Ok(outcome)) => total.merge(outcome),
            Ok(Err(error)) => failure = failure.or(Some(error)),
            Err(panic) => failure = failure.or(Some(format!("a connection task failed: {panic}"))),
        }
    }
    if !connections.is_empty() {
        failure = failure.or(Some(format!("{} connections did not finish in time", connections.len())));
        connections.abort_all();
    }
    if let Some(progress) = progress {
        progress.abort();
        if std::io::stderr().is_terminal() {
            eprint!("\r{:78}\r", "");
        }
    }
    let measured =
        total.last_answer.map_or(Duration::ZERO, |last| last.saturating_duration_since(measuring_since));
    let report = Report::new(&config, started.elapsed(), measured, &total.recorder, total.first_error);
    Ok((report, failure))
}

/// Once a second on stderr: answers per second in the last second, totals and errors. On a terminal the
/// line rewrites itself; into a file it is one line per second.
async fn show_progress(control: Arc<Control>) {
    let (start, end) = if std::io::stderr().is_terminal() { ("\r", "") } else { ("", "\n") };
    let started = Instant::now();
    let mut last = 0;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    loop {
        interval.tick().await;
        let answered = control.answered.load(Ordering::Relaxed);
        let phase = if control.is_measuring() { "measuring" } else { "warming up" };
        eprint!(
            "{start}{:>4.0} s {phase:<10} {:>8} answers/s {:>10} answers {:>6} errors{end}",
            started.elapsed().as_secs_f64(),
            answered - last,
            answered,
            control.errors.load(Ordering::Relaxed)
        );
        last = answered;
    }
}
