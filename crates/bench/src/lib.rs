//! `raftkv bench`: a closed-loop load generator. Each of `connections` connections keeps `inflight`
//! requests outstanding and sends the next as soon as one is answered, so the offered load follows the
//! server's speed (closed loop) and latency is measured per request, from when it was queued to when its
//! answer arrived.
//!
//! Targets: any RESP endpoint (a raftkv node, whose GETs are linearizable by default, or Redis) with
//! SET/GET, and, with the `etcd` cargo feature, etcd's v3 API with Put and a default (linearizable) Range.
//! A warm-up runs first and is not counted; then the run is measured for a duration or a request count.
//! Latencies go to one HdrHistogram per operation and connection, merged at the end.

use std::process::ExitCode;

mod args;
mod control;
mod etcd_target;
mod report;
mod resp_target;
mod run;
mod stats;
mod workload;

pub use args::{BenchArgs, BenchConfig, Length, Target, Workload};
pub use report::Report;
pub use resp_target::{scan_reply, ScannedReply};
pub use stats::{Op, Recorder, Summary, PERCENTILES};

/// Runs `raftkv bench`: the report on stdout, progress and errors on stderr. Exit 1 when the flags are
/// wrong, the target cannot be reached, or a connection failed during the run (the report of the others
/// is still printed).
pub fn run(args: BenchArgs) -> ExitCode {
    let config = match args.validate() {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    if matches!(config.target, Target::Etcd(_)) && !cfg!(feature = "etcd") {
        return fail(etcd_target::NOT_BUILT);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("starting the runtime: {error}")),
    };
    let json = config.json;
    match runtime.block_on(run::run(config)) {
        Ok((report, Some(failure))) if report.rows.iter().all(|(_, row)| row.completed == 0) => {
            fail(&failure)
        }
        Ok((report, failure)) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            match failure {
                None => ExitCode::SUCCESS,
                Some(error) => fail(&error),
            }
        }
        Err(error) => fail(&error),
    }
}

fn fail(error: &str) -> ExitCode {
    eprintln!("raftkv bench: {error}");
    ExitCode::FAILURE
}
