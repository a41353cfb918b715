//! `raftkv`: one thin binary. Parse flags into a validated config, build the pieces, run, and map errors to
//! an exit code and one clear line on stderr. Each subcommand lives in its own crate; this file only wires.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod sim;

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
    /// Run the deterministic cluster simulator over seeds, with faults and every safety check.
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("raftkv {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Sim(args) => sim::run(args),
    }
}
