//! The deterministic cluster simulator: the real node glue (consensus core, WAL on a simulated disk, KV
//! state machine) for every node, a simulated network and clock, seeded "swarm" faults, safety checks after
//! every step, a liveness phase, and a linearizability check of every client history. A run is a pure
//! function of its `u64` seed; the trace's hash proves it.

mod boot;
pub mod checks;
pub mod history;
#[cfg(feature = "inject-bugs")]
pub mod inject;
pub mod membership;
pub mod nemesis;
pub mod network;
pub mod runner;
pub mod scenario;
pub mod seed;
mod sim_node;
pub mod swarm;
pub mod trace;
pub mod workload;
pub mod world;

pub use checks::{Check, Violation};
#[cfg(feature = "inject-bugs")]
pub use inject::InjectedBug;
pub use runner::{run_catching_panics, Campaign, Summary};
pub use swarm::FaultSettings;
pub use trace::Trace;
pub use world::{LeaseReads, RunConfig, RunReport, World};
