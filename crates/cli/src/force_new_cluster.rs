//! `raftkv force-new-cluster`: the last resort for a cluster that lost its majority for good (see the
//! README, "Changing the cluster"). Thin: checks the confirmation flag, then calls the server crate.

use std::path::PathBuf;
use std::process::ExitCode;

/// DANGEROUS: make one stopped survivor a one-node cluster of itself. May lose acknowledged writes.
#[derive(clap::Args, Debug)]
pub struct ForceNewClusterArgs {
    /// The survivor's data directory (the node must be stopped).
    #[arg(long)]
    data_dir: PathBuf,
    /// The survivor's node id, as in its IDENTITY file.
    #[arg(long)]
    node_id: u64,
    /// The cluster's id, as in its IDENTITY file.
    #[arg(long)]
    cluster_id: u64,
    /// Required: says you know that writes only the lost members held are gone for good, and that
    /// entries this node never knew committed become committed.
    #[arg(long)]
    i_understand_this_may_lose_acknowledged_writes: bool,
}

pub fn run(args: ForceNewClusterArgs) -> ExitCode {
    crate::serve::init_logging("info");
    if !args.i_understand_this_may_lose_acknowledged_writes {
        eprintln!(
            "raftkv force-new-cluster: refusing without --i-understand-this-may-lose-acknowledged-writes: this \
             rewrites node {}'s configuration to a one-node cluster, and acknowledged writes that only the \
             lost members held are gone for good",
            args.node_id
        );
        return ExitCode::from(2);
    }
    match server::force_new_cluster::force_new_cluster(&args.data_dir, args.cluster_id, args.node_id) {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("raftkv force-new-cluster: {error}");
            ExitCode::FAILURE
        }
    }
}
