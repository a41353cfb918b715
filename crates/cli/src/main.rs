//! `raftkv`: one thin binary. Parse flags into a validated config, build the pieces, run, and map errors to
//! an exit code and one clear line on stderr. Each subcommand lives in its own crate; this file only wires.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench_disk;

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
    /// Measure the disk: raw fdatasync rate and WAL appends/s at batch 1, 16 and 256.
    BenchDisk(bench_disk::BenchDiskArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("raftkv {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::BenchDisk(args) => bench_disk::run(args),
    }
}
