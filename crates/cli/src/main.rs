//! `raftkv`: one thin binary. Parse flags into a validated config, build the pieces, run, and map errors to
//! an exit code and one clear line on stderr. Each subcommand lives in its own crate; this file only wires.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backup;
mod backup_file;
mod bench_disk;
mod check;
mod force_new_cluster;
mod limits;
mod local;
mod local_file;
mod local_ops;
mod member;
mod restore;
mod serve;
mod sim;
mod status;
mod trace;

#[derive(Parser)]
#[command(
    name = "raftkv",
    version,
    about = "A replicated key-value store built on Raft, written from scratch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and what this build contains.
    Version,
    /// Run one node of a cluster (flags or a TOML file).
    Serve(Box<serve::ServeArgs>),
    /// Start a whole local cluster (3 or 5 processes on 127.0.0.1) and keep it running until Ctrl-C;
    /// `raftkv local add` / `raftkv local remove ID` grow or shrink the running one.
    Local(Box<local::LocalArgs>),
    /// Print a table of every node: id, address, role, term, commit, applied, lag.
    Status(status::StatusArgs),
    /// Save a consistent snapshot of a running cluster to a file (from any node's admin endpoint).
    Backup(backup::BackupArgs),
    /// Seed one node's data directory of a brand-new cluster from a backup file.
    Restore(restore::RestoreArgs),
    /// Load a RESP endpoint (raftkv, Redis) or etcd in a closed loop; print throughput and latency
    /// percentiles per operation.
    Bench(bench::BenchArgs),
    /// Show or change the cluster's members: list, add ID ADDRS [--learner], promote ID, remove ID
    /// (against any node; followers forward to the leader).
    Member(member::MemberArgs),
    /// Hand leadership to another voter (against any node).
    TransferLeader(member::TransferArgs),
    /// DANGEROUS last resort after losing a majority for good: rewrite one stopped survivor's
    /// configuration to a one-node cluster of itself. May lose acknowledged writes; never automatic.
    ForceNewCluster(force_new_cluster::ForceNewClusterArgs),
    /// Measure the disk: raw fdatasync rate and WAL appends/s at batch 1, 16 and 256.
    BenchDisk(bench_disk::BenchDiskArgs),
    /// Run the deterministic cluster simulator over seeds, with faults and every safety check.
    Sim(sim::SimArgs),
    /// Turn a simulator trace (`raftkv sim --seed N --trace FILE`) into a page that replays the run:
    /// written as one self-contained HTML file, or served with --listen.
    Trace(trace::TraceArgs),
    /// Check a Jepsen-style EDN history for linearizability: exit 0 linearizable, 1 not, 2 undecided
    /// within the search budget, 3 unreadable input or bad arguments. See `raftkv check --help`.
    // The flags are parsed in check.rs so that a usage error exits 3, never clap's 2 ("undecided").
    #[command(disable_help_flag = true)]
    Check {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("raftkv {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve::run(*args),
        Command::Local(args) => local::run(*args),
        Command::Status(args) => status::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Member(args) => member::run_member(args),
        Command::TransferLeader(args) => member::run_transfer(args),
        Command::ForceNewCluster(args) => force_new_cluster::run(args),
        Command::BenchDisk(args) => bench_disk::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Check { args } => check::run(args),
    }
}
