//! The deterministic cluster simulator (being built): simulated network, disk and clock, seeded "swarm"
//! fault settings, invariant checks and traces. A run is a pure function of its `u64` seed.

pub mod checks;
pub mod nemesis;
pub mod network;
pub mod seed;
pub mod swarm;
pub mod trace;
pub mod workload;
