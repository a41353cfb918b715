//! `raftkv sim`: run the deterministic simulator over a range of seeds, or one seed with its trace.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::ops::RangeInclusive;
use std::process::ExitCode;

use clap::Args;
use sim::{Campaign, RunConfig, Trace, World};

/// Flags of `raftkv sim`.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// Seeds to run, as `A..B` (inclusive) or a single number.
    #[arg(long, default_value = "1..100", value_parser = parse_seed_range, conflicts_with = "seed")]
    seeds: RangeInclusive<u64>,
    /// Run this one seed (with `--trace` to record it).
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes in the simulated cluster (1–7).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=7))]
    nodes: u64,
    /// Length of the safety phase, in ticks of 10 ms simulated time.
    #[arg(long, default_value_t = 1_500)]
    ticks: u64,
    /// Simulated clients (about five share each key).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Worker threads for a range of seeds (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// With `--seed`: write every event of the run as JSON lines to this file.
    #[arg(long, requires = "seed")]
    trace: Option<std::path::PathBuf>,
    /// Stop at the first failing seed.
    #[arg(long)]
    stop_at_first_failure: bool,
    /// How leaders confirm reads: `read-index` (the default) or `lease`, with every lease trusting the
    /// seed's own clock-drift setting (so a stale read is a bug).
    #[arg(long, value_enum, default_value = "read-index")]
    read_mode: SimReadMode,
    /// Test-only (a build with `--features inject-bugs`): break one rule in every node, to see the
    /// simulator catch it: double-vote, commit-old-term-by-counting, ack-before-persist,
    /// stale-leader-read or apply-retries-twice.
    #[cfg(feature = "inject-bugs")]
    #[arg(long, value_name = "NAME")]
    inject_bug: Option<sim::InjectedBug>,
}

/// `--read-mode` of `raftkv sim`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimReadMode {
    ReadIndex,
    Lease,
}

impl SimArgs {
    fn lease_reads(&self) -> Option<sim::LeaseReads> {
        (self.read_mode == SimReadMode::Lease).then_some(sim::LeaseReads::WithinBound)
    }
}

/// Parses `A..B`, `A..=B` (both inclusive) or `N`.
pub fn parse_seed_range(text: &str) -> Result<RangeInclusive<u64>, String> {
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("not a seed number: {s:?}"));
    let range = match text.split_once("..") {
        Some((start, end)) => number(start)?..=number(end.trim_start_matches('='))?,
        None => number(text)?..=number(text)?,
    };
    if range.is_empty() {
        return Err(format!("empty seed range {text:?}: the end must not be below the start"));
    }
    Ok(range)
}

pub fn run(args: SimArgs) -> ExitCode {
    match args.seed {
        Some(seed) => run_one(&args, seed),
        None => run_campaign(&args),
    }
}

fn run_one(args: &SimArgs, seed: u64) -> ExitCode {
    let config = RunConfig {
        nodes: args.nodes as usize,
        ticks: args.ticks,
        clients: args.clients,
        lease_reads: args.lease_reads(),
        #[cfg(feature = "inject-bugs")]
        injected_bug: args.inject_bug,
        ..RunConfig::new(seed)
    };
    let trace = match &args.trace {
        Some(path) => match File::create(path) {
            Ok(file) => Trace::to_writer(Box::new(BufWriter::new(file))),
            Err(error) => {
                eprintln!("raftkv sim: cannot create trace file {}: {error}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Trace::hash_only(),
    };
    let world = World::new(config, trace);
    #[cfg(feature = "inject-bugs")]
    if let Some(bug) = args.inject_bug {
        println!("seed {seed}: injected bug {bug}");
    }
    println!("seed {seed}: faults {}", world.settings());
    let (report, trace) = world.run_keeping_trace();
    let trace_hash = match trace.finish() {
        Ok(hash) => hash,
        Err(error) => {
            eprintln!("raftkv sim: writing the trace failed: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.trace {
        println!("trace written to {}", path.display());
    }
    println!("trace hash {trace_hash:016x}, {} operations, {} ticks", report.operations, report.ticks);
    match report.violation {
        Some(violation) => {
            println!("seed {seed} FAILED: {violation}");
            ExitCode::from(1)
        }
        None => {
            println!("seed {seed} passed");
            ExitCode::SUCCESS
        }
    }
}

fn run_campaign(args: &SimArgs) -> ExitCode {
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let campaign = Campaign {
        stop_at_first_failure: args.stop_at_first_failure,
        lease_reads: args.lease_reads(),
        ..Campaign::new(args.seeds.clone(), args.nodes as usize, args.ticks, args.clients, threads)
    };
    // The CLI's feature turns sim's on, so the switch exists here; with only sim's on, it stays off.
    #[cfg(feature = "inject-bugs")]
    let campaign = campaign.with_injected_bug(args.inject_bug);
    let total = campaign.seeds.end() - campaign.seeds.start() + 1;
    println!(
        "raftkv sim: seeds {}..{} ({total}), {} nodes, {} ticks each, {threads} threads",
        campaign.seeds.start(),
        campaign.seeds.end(),
        campaign.nodes,
        campaign.ticks
    );
    #[cfg(feature = "inject-bugs")]
    if let Some(bug) = campaign.injected_bug {
        println!("raftkv sim: injected bug {bug} (test-only build)");
    }
    let interactive = std::io::stderr().is_terminal();
    // A panic inside a seed is reported as that seed's failure, with its message; the default hook would
    // only interleave backtraces from the worker threads.
    std::panic::set_hook(Box::new(|_| {}));
    let summary = campaign.run(|report, summary| {
        if let Some(violation) = &report.violation {
            println!("seed {} FAILED: {violation}", report.seed);
            println!("  faults: {}", report.settings);
            println!("  replay: {}", campaign.replay_command(report.seed));
        }
        let every = (total / 20).max(1);
        if interactive || summary.seeds_run % every == 0 || summary.seeds_run == total {
            let line = format!(
                "[{:>6}/{total}] {} failures, {} operations, {:.0} ticks/s",
                summary.seeds_run,
                summary.failures.len(),
                summary.operations,
                summary.ticks_per_second()
            );
            if interactive {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
        }
    });
    if interactive {
        eprintln!();
    }
    let _ = std::io::stdout().flush();
    println!(
        "summary: {} seeds, {} operations checked, {:.0} simulated ticks/s, {} failures",
        summary.seeds_run,
        summary.operations,
        summary.ticks_per_second(),
        summary.failures.len()
    );
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_are_inclusive_and_validated() {
        assert_eq!(parse_seed_range("1..1000").unwrap(), 1..=1000);
        assert_eq!(parse_seed_range("5..=6").unwrap(), 5..=6);
        assert_eq!(parse_seed_range("42").unwrap(), 42..=42);
        assert!(parse_seed_range("9..3").is_err());
        assert!(parse_seed_range("x..3").is_err());
    }
}
