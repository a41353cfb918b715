//! Running many seeds: a campaign spreads seeds over threads (each seed's world is single-threaded and
//! deterministic; threads only decide which seed runs where, never what happens in it), reports progress,
//! and collects failures with the command that replays each one.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::checks::{Check, Violation};
use crate::swarm::FaultSettings;
use crate::trace::Trace;
use crate::world::{RunConfig, RunReport, World};

/// What a campaign runs.
#[derive(Clone, Debug)]
pub struct Campaign {
    pub seeds: RangeInclusive<u64>,
    pub nodes: usize,
    pub ticks: u64,
    pub clients: usize,
    pub threads: usize,
    /// Stop at the first failing seed (for the teeth tests: find a bug, name the check, stop).
    pub stop_at_first_failure: bool,
    /// Serve reads from leases (see [`RunConfig::lease_reads`]); `None`: ReadIndex, as by default.
    pub lease_reads: Option<crate::world::LeaseReads>,
    /// Test-only: one rule broken on purpose in every node of every seed.
    #[cfg(feature = "inject-bugs")]
    pub injected_bug: Option<crate::inject::InjectedBug>,
}

/// What a campaign found.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seeds_run: u64,
    pub operations: u64,
    pub ticks: u64,
    pub elapsed: Duration,
    pub failures: Vec<RunReport>,
}

impl Summary {
    /// Simulated node-ticks per wall-clock second.
    pub fn ticks_per_second(&self) -> f64 {
        self.ticks as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs one seed; an assertion that fires inside the real code becomes that seed's failure, with the
/// panic message, instead of taking the campaign down.
pub fn run_catching_panics(config: RunConfig) -> RunReport {
    let seed = config.seed;
    let settings = config.settings.clone().unwrap_or_else(|| FaultSettings::draw(seed));
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        World::new(config, Trace::hash_only()).run()
    }));
    run.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string());
        RunReport {
            seed,
            settings,
            operations: 0,
            ticks: 0,
            violation: Some(Violation { check: Check::Invariant, detail: message }),
            trace_hash: 0,
            snapshot_installs: [0, 0],
            reads_confirmed: [0, 0],
        }
    })
}

impl Campaign {
    /// A campaign over `seeds` with every test-only switch off. Callers outside this crate build a
    /// campaign from here (`Campaign { stop_at_first_failure: true, ..Campaign::new(..) }`) rather than
    /// spelling every field: the test-only fields exist whenever this crate's `inject-bugs` feature is on,
    /// which feature unification may turn on behind a caller's back, and the caller's own `cfg` cannot
    /// see that.
    pub fn new(seeds: RangeInclusive<u64>, nodes: usize, ticks: u64, clients: usize, threads: usize) -> Self {
        Campaign {
            seeds,
            nodes,
            ticks,
            clients,
            threads,
            stop_at_first_failure: false,
            lease_reads: None,
            #[cfg(feature = "inject-bugs")]
            injected_bug: None,
        }
    }

    /// Test-only: break `bug` in every node of every seed.
    #[cfg(feature = "inject-bugs")]
    pub fn with_injected_bug(self, bug: Option<crate::inject::InjectedBug>) -> Self {
        Campaign { injected_bug: bug, ..self }
    }

    /// The run configuration of one seed.
    pub fn run_config(&self, seed: u64) -> RunConfig {
        RunConfig {
            nodes: self.nodes,
            ticks: self.ticks,
            clients: self.clients,
            lease_reads: self.lease_reads,
            #[cfg(feature = "inject-bugs")]
            injected_bug: self.injected_bug,
            ..RunConfig::new(seed)
        }
    }

    /// The command that replays `seed` alone, with its trace.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut arguments =
            format!("--seed {seed} --nodes {} --ticks {} --trace seed-{seed}.jsonl", self.nodes, self.ticks);
        // The command line knows one lease setting: leases told the run's true drift.
        if self.lease_reads == Some(crate::world::LeaseReads::WithinBound) {
            arguments.push_str(" --read-mode lease");
        }
        #[cfg(feature = "inject-bugs")]
        if let Some(bug) = self.injected_bug {
            // Only a build with the test-only switches has the flag.
            return format!(
                "cargo run --release -p raftkv --features inject-bugs -- sim {arguments} --inject-bug {bug}"
            );
        }
        format!("raftkv sim {arguments}")
    }

    /// Runs every seed, calling `progress` after each with the report and the summary so far.
    pub fn run(&self, mut progress: impl FnMut(&RunReport, &Summary)) -> Summary {
        let started = Instant::now();
        let next_seed = AtomicU64::new(*self.seeds.start());
        let last_seed = *self.seeds.end();
        let stop = AtomicBool::new(false);
        let (sender, receiver) = mpsc::channel::<RunReport>();
        let mut summary = Summary::default();
        std::thread::scope(|scope| {
            for _ in 0..self.threads.max(1) {
                let sender = sender.clone();
                let (next_seed, stop) = (&next_seed, &stop);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let seed = next_seed.fetch_add(1, Ordering::Relaxed);
                        if seed > last_seed {
                            break;
                        }
                        let report = run_catching_panics(self.run_config(seed));
                        if sender.send(report).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sender);
            for report in receiver {
                summary.seeds_run += 1;
                summary.operations += report.operations as u64;
                summary.ticks += report.ticks;
                summary.elapsed = started.elapsed();
                if report.violation.is_some() {
                    summary.failures.push(report.clone());
                    if self.stop_at_first_failure {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                progress(&report, &summary);
            }
        });
        summary.elapsed = started.elapsed();
        summary.failures.sort_by_key(|r| r.seed);
        summary
    }
}
