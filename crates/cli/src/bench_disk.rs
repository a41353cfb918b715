//! `raftkv bench-disk`: how fast this disk makes data durable, raw and through the WAL.

use std::path::PathBuf;
use std::process::ExitCode;

/// Measure the raw fdatasync rate and WAL appends/s at batch sizes 1, 16 and 256 (100-byte entries).
#[derive(clap::Args)]
pub struct BenchDiskArgs {
    /// Directory on the disk to measure (a temporary subdirectory is created in it and removed after).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Seconds per measurement (four measurements run one after another).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

pub fn run(args: BenchDiskArgs) -> ExitCode {
    match storage::bench::bench_disk(&args.dir, args.seconds) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("raftkv bench-disk: {error}");
            ExitCode::FAILURE
        }
    }
}
