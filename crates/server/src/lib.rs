//! Real I/O around the node glue: what makes raftkv a program people run.
//!
//! - [`node_loop`]: one thread owns the [`node::Node`] (storage on real files, the system clock) and is fed
//!   by one bounded channel: ticks from a timer thread, peer messages, client requests, status queries.
//! - [`transport`] and [`frame`]: the TCP peer transport (hello handshake, checksummed postcard frames).
//! - [`client`] and [`info`]: the RESP client API with pipelining, and the INFO text.
//! - [`admin`] and [`metrics`]: the admin HTTP endpoint (`/status`, `/metrics`, `/health`) and the
//!   Prometheus metrics the other parts record into ([`node_metrics`], [`metered_disk`]).
//! - [`serve`]: `raftkv serve`, from a validated [`config::ServerConfig`] to a running node and back down.
//! - [`limits`]: every bound on what clients and peers can make a node hold.
//! - [`peer_faults`]: a test-only switch (feature `fault-injection`) that cuts this node off from listed
//!   peers, for the fault-injection test where network namespaces are not available.
//! - [`data_dir`]: the incarnation counter that keeps client ids unique across restarts.
//!
//! Tokio tasks own the sockets and talk to the node loop only through channels, so the node stays the
//! single-threaded, deterministic code the simulator tests.

pub mod address_book;
pub mod admin;
pub mod client;
pub mod client_writer;
pub mod cluster_admin;
pub mod config;
pub mod data_dir;
pub mod force_new_cluster;
pub mod frame;
pub mod info;
#[cfg(feature = "inject-bugs")]
pub mod injected_bug;
pub mod join;
pub mod latency_trace;
pub mod limits;
pub mod metered_disk;
pub mod metrics;
pub mod node_loop;
pub mod node_metrics;
pub mod outbox;
pub mod peer_faults;
pub mod peer_sync;
pub mod serve;
pub mod snapshot_thread;
pub mod system_clock;
pub mod transport;

pub use config::{Member, ServerConfig, Timing};
pub use limits::Limits;
pub use serve::{run, ServeError};
