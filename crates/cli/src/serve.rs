//! `raftkv serve`: run one node from flags or a TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use server::{Member, ServerConfig, Timing};

use crate::limits::LimitArgs;

/// Run one node. Either `--config FILE` (TOML, same keys as the long flags with `_`) or the flags below.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// A TOML file with the whole configuration (then only --bootstrap, --log-level and limit flags may be
    /// added; a limit flag overrides the file).
    #[arg(long, conflicts_with_all = ["node_id", "data_dir", "member"])]
    config: Option<PathBuf>,
    /// This node's id (1, 2, ...).
    #[arg(long, required_unless_present = "config")]
    node_id: Option<u64>,
    /// The cluster's id; every node of one cluster must use the same one.
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    /// Where this node keeps its log and snapshots.
    #[arg(long, required_unless_present = "config")]
    data_dir: Option<PathBuf>,
    /// Address the RESP client API binds.
    #[arg(long, default_value = "127.0.0.1:7001")]
    client_listen: SocketAddr,
    /// Address clients are told to use (defaults to --client-listen).
    #[arg(long)]
    client_advertise: Option<String>,
    /// Address the peer transport binds.
    #[arg(long, default_value = "127.0.0.1:7101")]
    peer_listen: SocketAddr,
    /// Address peers are told to use (defaults to --peer-listen).
    #[arg(long)]
    peer_advertise: Option<String>,
    /// Address the admin HTTP endpoint (/status, /metrics, /health) binds; none without it.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Address the admin endpoint is advertised as (defaults to --admin-listen).
    #[arg(long, requires = "admin_listen")]
    admin_advertise: Option<String>,
    /// /health answers 503 when the applied index trails the commit index by more entries than this.
    #[arg(long, default_value_t = server::config::DEFAULT_HEALTH_MAX_LAG_ENTRIES)]
    health_max_lag_entries: u64,
    /// Every member, this node included, as `id=peer_addr[,client_addr[,admin_addr]]`; repeat the flag per
    /// member.
    #[arg(long)]
    member: Vec<String>,
    /// Create a brand-new cluster's initial state (voters = the members) if the data directory is empty.
    /// Without it, a node with an empty data directory waits to be added and never votes.
    #[arg(long)]
    bootstrap: bool,
    /// Join a running cluster: ask the member whose client address this is (any member) to add this
    /// node, under --node-id, as a learner. Needs no --member flags (the addresses come from the cluster).
    #[arg(long, conflicts_with = "bootstrap")]
    join: Option<String>,
    /// With --join: ask to be promoted to voter once added (the leader waits until this node caught up).
    #[arg(long, requires = "join")]
    promote: bool,
    /// Length of one tick of the consensus core's clock.
    #[arg(long, default_value_t = Timing::default().tick_ms)]
    tick_ms: u64,
    /// How often a leader sends heartbeats.
    #[arg(long, default_value_t = Timing::default().heartbeat_interval_ms)]
    heartbeat_interval_ms: u64,
    /// Minimum election timeout (each wait is drawn from [min, 2*min)).
    #[arg(long, default_value_t = Timing::default().election_timeout_ms)]
    election_timeout_ms: u64,
    /// A client request not answered in this time gets an error.
    #[arg(long, default_value_t = Timing::default().client_timeout_ms)]
    client_timeout_ms: u64,
    /// Writes that would grow the data past this many bytes fail with -OOM (0: no limit). Give every
    /// node of a cluster the same value: each replica decides from its own copy of the data.
    #[arg(long, default_value_t = 0)]
    maxmemory: u64,
    /// Snapshot the state machine and compact the log every this many applied entries (0: never).
    #[arg(long, default_value_t = server::config::DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES)]
    snapshot_threshold_entries: u64,
    /// How the leader confirms linearizable reads: read-index (a heartbeat round, safe whatever the
    /// clocks do) or lease (no round while a lease runs; safe only within --max-clock-drift). Give every
    /// node of a cluster the same.
    #[arg(long, value_enum, default_value = "read-index")]
    read_mode: ReadModeArg,
    /// With --read-mode lease: the largest rate error of any node's monotonic clock, as a fraction
    /// (0.01 = 1%), in [0, 0.5).
    #[arg(long, default_value_t = server::config::DEFAULT_MAX_CLOCK_DRIFT)]
    max_clock_drift: f64,
    /// Log level (trace, debug, info, warn, error) unless RUST_LOG is set.
    #[arg(long, default_value = "info")]
    log_level: String,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `--read-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadModeArg {
    ReadIndex,
    Lease,
}

impl ReadModeArg {
    /// The flag's value as typed.
    pub fn flag_value(self) -> &'static str {
        match self {
            ReadModeArg::ReadIndex => "read-index",
            ReadModeArg::Lease => "lease",
        }
    }
}

impl From<ReadModeArg> for server::config::ReadMode {
    fn from(mode: ReadModeArg) -> Self {
        match mode {
            ReadModeArg::ReadIndex => server::config::ReadMode::ReadIndex,
            ReadModeArg::Lease => server::config::ReadMode::Lease,
        }
    }
}

impl ServeArgs {
    fn into_config(self) -> Result<ServerConfig, String> {
        if let Some(path) = &self.config {
            let mut config = ServerConfig::from_toml_file(path).map_err(|e| e.to_string())?;
            config.bootstrap |= self.bootstrap;
            config.limits = self.limits.apply(config.limits);
            config.join = self.join.or(config.join);
            config.promote_on_join |= self.promote;
            return Ok(config);
        }
        let members = self.member.iter().map(|m| Member::parse(m)).collect::<Result<Vec<_>, _>>();
        Ok(ServerConfig {
            node_id: self.node_id.expect("clap requires it"),
            cluster_id: self.cluster_id,
            data_dir: self.data_dir.expect("clap requires it"),
            client_listen: self.client_listen,
            client_advertise: self.client_advertise,
            peer_listen: self.peer_listen,
            peer_advertise: self.peer_advertise,
            admin_listen: self.admin_listen,
            admin_advertise: self.admin_advertise,
            health_max_lag_entries: self.health_max_lag_entries,
            members: members.map_err(|e| e.to_string())?,
            timing: Timing {
                tick_ms: self.tick_ms,
                heartbeat_interval_ms: self.heartbeat_interval_ms,
                election_timeout_ms: self.election_timeout_ms,
                client_timeout_ms: self.client_timeout_ms,
            },
            bootstrap: self.bootstrap,
            join: self.join,
            promote_on_join: self.promote,
            limits: self.limits.apply(server::Limits::default()),
            maxmemory_bytes: self.maxmemory,
            snapshot_threshold_entries: self.snapshot_threshold_entries,
            read_mode: self.read_mode.into(),
            max_clock_drift: self.max_clock_drift,
        })
    }
}

pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Raises the open-file limit to its hard maximum: every client connection costs a descriptor, and the
/// usual soft limit of 1,024 is too low for a server.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

pub fn run(args: ServeArgs) -> ExitCode {
    init_logging(&args.log_level);
    raise_open_file_limit();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("raftkv serve: {error}");
            return ExitCode::from(2);
        }
    };
    match server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("raftkv serve: {error}");
            ExitCode::FAILURE
        }
    }
}
