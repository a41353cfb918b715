//! One node's settings, from flags or a TOML file, validated before anything starts.
//!
//! Every address comes as a pair: where to bind (`*_listen`) and what to tell others (`*_advertise`),
//! so nodes on different machines (or behind NAT) work. Times are milliseconds here; the node loop turns
//! them into the core's ticks.

use std::net::SocketAddr;
use std::path::PathBuf;

use raft::NodeId;
use serde::Deserialize;

pub use crate::limits::Limits;

/// One member of the cluster as the configuration names it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// Where its peer transport listens (advertised address).
    pub peer_addr: String,
    /// Where its clients connect (advertised), shown in INFO so clients can find the leader.
    #[serde(default)]
    pub client_addr: Option<String>,
    /// Where its admin HTTP endpoint listens (advertised), shown in `/status` so an operator (and later
    /// the live view) can reach every member from any one of them.
    #[serde(default)]
    pub admin_addr: Option<String>,
}

impl Member {
    /// Parses `id=peer_addr[,client_addr[,admin_addr]]`, e.g. `2=127.0.0.1:7102,127.0.0.1:7002,127.0.0.1:8002`.
    pub fn parse(text: &str) -> Result<Member, ConfigError> {
        let bad = |why: &str| {
            ConfigError::Invalid(format!(
                "member {text:?}: {why} (want id=peer_addr[,client_addr[,admin_addr]])"
            ))
        };
        let (id, addrs) = text.split_once('=').ok_or_else(|| bad("no '='"))?;
        let id: NodeId = id.trim().parse().map_err(|_| bad("the id is not a number"))?;
        let mut parts = addrs.split(',').map(str::trim);
        let peer_addr = parts.next().filter(|a| !a.is_empty()).ok_or_else(|| bad("no peer address"))?;
        let client_addr = parts.next().filter(|a| !a.is_empty()).map(str::to_string);
        let admin_addr = parts.next().filter(|a| !a.is_empty()).map(str::to_string);
        if parts.next().is_some() {
            return Err(bad("more than three addresses"));
        }
        Ok(Member { id, peer_addr: peer_addr.to_string(), client_addr, admin_addr })
    }
}

/// Timing, in milliseconds (the tick is the core's unit of time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// Length of one tick of the core's logical clock.
    pub tick_ms: u64,
    /// Leader heartbeats (etcd's default: 100 ms).
    pub heartbeat_interval_ms: u64,
    /// Minimum election timeout; each wait is drawn from `[min, 2 * min)` (etcd's default: 1 s).
    pub election_timeout_ms: u64,
    /// A client request not answered in this time gets an error (`-TRYAGAIN` if it was certainly never
    /// proposed, otherwise an "outcome unknown" timeout).
    pub client_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            tick_ms: 10,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1_000,
            client_timeout_ms: 2_000,
        }
    }
}

impl Timing {
    pub fn ticks(&self, ms: u64) -> u64 {
        ms.div_ceil(self.tick_ms).max(1)
    }
    pub fn election_timeout_ticks(&self) -> u64 {
        self.ticks(self.election_timeout_ms)
    }
    pub fn heartbeat_interval_ticks(&self) -> u64 {
        self.ticks(self.heartbeat_interval_ms)
    }
}

/// Everything `raftkv serve` needs. Field names are the TOML keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub node_id: NodeId,
    pub cluster_id: u64,
    pub data_dir: PathBuf,
    pub client_listen: SocketAddr,
    /// Defaults to `client_listen`.
    #[serde(default)]
    pub client_advertise: Option<String>,
    pub peer_listen: SocketAddr,
    /// Defaults to `peer_listen`.
    #[serde(default)]
    pub peer_advertise: Option<String>,
    /// Where the admin HTTP endpoint (`/status`, `/metrics`, `/health`) binds; none if absent.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Defaults to `admin_listen`.
    #[serde(default)]
    pub admin_advertise: Option<String>,
    /// `/health` answers 503 when the applied index is more than this many entries behind the commit
    /// index this node knows (a node that far behind serves stale reads slowly and should not get traffic).
    #[serde(default = "default_health_max_lag_entries")]
    pub health_max_lag_entries: u64,
    /// Every member, this node included.
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub timing: Timing,
    /// Create the initial state of a brand-new cluster (voters = `members`) if the data directory is
    /// empty. Never touches a directory that already holds state.
    #[serde(default)]
    pub bootstrap: bool,
    /// Join a running cluster through this member's client address: ask it to add this node (under
    /// `node_id`) as a learner, after learning every member's addresses from it. Never bootstraps.
    #[serde(default)]
    pub join: Option<String>,
    /// With `join`: once added, ask to be promoted to voter (the leader waits until this node caught up).
    #[serde(default)]
    pub promote_on_join: bool,
    /// Every bound on what clients and peers can make this node hold (the `[limits]` table).
    #[serde(default)]
    pub limits: Limits,
    /// Writes that would grow the data past this many bytes fail with `-OOM` (0: no limit). Decided by
    /// the state machine from its own byte count, so it must be the same on every node of a cluster.
    #[serde(default)]
    pub maxmemory_bytes: u64,
    /// Take a snapshot of the state machine (and compact the log) once this many entries were applied
    /// since the last one; 0: never.
    #[serde(default = "default_snapshot_threshold_entries")]
    pub snapshot_threshold_entries: u64,
    /// How the leader confirms linearizable reads: `read-index` (a heartbeat round per batch of reads,
    /// the default) or `lease` (dissertation §6.4.1: no round while a lease runs; safe only while every
    /// node's monotonic clock stays within `max_clock_drift`). Give every node of a cluster the same.
    #[serde(default)]
    pub read_mode: ReadMode,
    /// With `read_mode = "lease"`: the largest rate error of any node's monotonic clock, as a fraction
    /// (0.01 = 1%), in [0, 0.5).
    #[serde(default = "default_max_clock_drift")]
    pub max_clock_drift: f64,
}

/// `read_mode` of [`ServerConfig`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    #[default]
    ReadIndex,
    Lease,
}

/// `--max-clock-drift` unless given: 1%, far above what quartz or NTP-disciplined clocks drift (tens of
/// ppm), and still leaving a lease of 98% of the stickiness window.
pub const DEFAULT_MAX_CLOCK_DRIFT: f64 = 0.01;

fn default_max_clock_drift() -> f64 {
    DEFAULT_MAX_CLOCK_DRIFT
}

/// `--snapshot-threshold-entries` unless given.
pub const DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES: u64 = node::SnapshotPolicy::DEFAULT_THRESHOLD_ENTRIES;

fn default_snapshot_threshold_entries() -> u64 {
    DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES
}

/// The default bound of `/health` on how far applying may trail the commit index.
pub const DEFAULT_HEALTH_MAX_LAG_ENTRIES: u64 = 1_000;

fn default_health_max_lag_entries() -> u64 {
    DEFAULT_HEALTH_MAX_LAG_ENTRIES
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: String,
        #[source]
        source: toml::de::Error,
    },
}

impl ServerConfig {
    /// The core's read mode: a lease counts ticks of `tick_ms` on the node loop's monotonic clock.
    pub fn raft_read_mode(&self) -> raft::ReadMode {
        match self.read_mode {
            ReadMode::ReadIndex => raft::ReadMode::ReadIndex,
            ReadMode::Lease => raft::ReadMode::Lease(raft::LeaseSettings {
                tick_nanos: self.timing.tick_ms.saturating_mul(1_000_000),
                max_clock_drift_ppm: (self.max_clock_drift * 1e6).ceil() as u64,
            }),
        }
    }

    /// Reads a TOML file (then call [`ServerConfig::validate`]).
    pub fn from_toml_file(path: &std::path::Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Toml { path: path.display().to_string(), source })
    }

    pub fn client_advertise(&self) -> String {
        self.client_advertise.clone().unwrap_or_else(|| self.client_listen.to_string())
    }

    pub fn peer_advertise(&self) -> String {
        self.peer_advertise.clone().unwrap_or_else(|| self.peer_listen.to_string())
    }

    /// The admin address others are told to use, if this node serves one.
    pub fn admin_advertise(&self) -> Option<String> {
        self.admin_advertise.clone().or_else(|| self.admin_listen.map(|a| a.to_string()))
    }

    /// Every member as the configuration names it, with this node's own entry replaced by the addresses
    /// it advertises (its flags are the authority on itself).
    pub fn members_as_advertised(&self) -> Vec<Member> {
        let mut members = self.members.clone();
        match members.iter_mut().find(|m| m.id == self.node_id) {
            Some(own) => {
                own.peer_addr = self.peer_advertise();
                own.client_addr = Some(self.client_advertise());
                own.admin_addr = self.admin_advertise().or(own.admin_addr.take());
            }
            None => members.push(Member {
                id: self.node_id,
                peer_addr: self.peer_advertise(),
                client_addr: Some(self.client_advertise()),
                admin_addr: self.admin_advertise(),
            }),
        }
        members.sort_by_key(|m| m.id);
        members
    }

    /// The other members (peers this node sends to).
    pub fn peers(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.id != self.node_id)
    }

    /// Checks everything that can be checked before starting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |why: String| Err(ConfigError::Invalid(why));
        if self.node_id == 0 {
            return invalid("node id 0 means nobody; ids start at 1".into());
        }
        let mut ids: Vec<NodeId> = self.members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return invalid("a member id is listed twice".into());
        }
        if ids.contains(&0) {
            return invalid("member id 0 means nobody".into());
        }
        if self.bootstrap && self.join.is_some() {
            return invalid(
                "--bootstrap creates a new cluster and --join joins one: give one of them".into(),
            );
        }
        if self.promote_on_join && self.join.is_none() {
            return invalid("--promote needs --join".into());
        }
        if self.bootstrap && !ids.contains(&self.node_id) {
            return invalid(format!(
                "--bootstrap needs this node ({}) among the members, which become the first voters",
                self.node_id
            ));
        }
        let t = &self.timing;
        if t.tick_ms == 0 {
            return invalid("tick_ms must be at least 1".into());
        }
        if t.election_timeout_ticks() <= t.heartbeat_interval_ticks() {
            return invalid(format!(
                "the election timeout ({} ms) must be longer than the heartbeat interval ({} ms)",
                t.election_timeout_ms, t.heartbeat_interval_ms
            ));
        }
        if t.client_timeout_ms < t.tick_ms {
            return invalid("client_timeout_ms must be at least one tick".into());
        }
        if !(0.0..0.5).contains(&self.max_clock_drift) {
            return invalid(format!(
                "max_clock_drift must be a fraction in [0, 0.5) (0.01 = 1%), not {}",
                self.max_clock_drift
            ));
        }
        if self.read_mode == ReadMode::Lease && t.election_timeout_ticks() < 2 {
            return invalid("read_mode lease needs an election timeout of at least two ticks".into());
        }
        self.limits.validate()?;
        if self.admin_advertise.is_some() && self.admin_listen.is_none() {
            return invalid(
                "admin_advertise needs admin_listen: there is no admin endpoint to advertise".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_parses_with_and_without_client_address() {
        let m = Member::parse("2=127.0.0.1:7102,127.0.0.1:7002").unwrap();
        assert_eq!(m.id, 2);
        assert_eq!(m.peer_addr, "127.0.0.1:7102");
        assert_eq!(m.client_addr.as_deref(), Some("127.0.0.1:7002"));
        assert_eq!(m.admin_addr, None);
        assert_eq!(Member::parse("3=h:1").unwrap().client_addr, None);
        assert!(Member::parse("x=h:1").is_err());
        assert!(Member::parse("3").is_err());
        assert!(Member::parse("3=a,b,c,d").is_err());
    }

    #[test]
    fn member_parses_with_an_admin_address() {
        let m = Member::parse("2=127.0.0.1:7102,127.0.0.1:7002,127.0.0.1:8002").unwrap();
        assert_eq!(m.admin_addr.as_deref(), Some("127.0.0.1:8002"));
        // An admin address without a client address leaves the client slot empty.
        let m = Member::parse("2=127.0.0.1:7102,,127.0.0.1:8002").unwrap();
        assert_eq!(m.client_addr, None);
        assert_eq!(m.admin_addr.as_deref(), Some("127.0.0.1:8002"));
    }

    #[test]
    fn toml_config_parses_and_validates() {
        let text = r#"
            node_id = 1
            cluster_id = 7
            data_dir = "/tmp/x"
            client_listen = "127.0.0.1:7001"
            peer_listen = "127.0.0.1:7101"
            bootstrap = true
            [limits]
            max_pipelined_commands = 16
            [timing]
            election_timeout_ms = 300
            heartbeat_interval_ms = 50
            [[members]]
            id = 1
            peer_addr = "127.0.0.1:7101"
            client_addr = "127.0.0.1:7001"
            [[members]]
            id = 2
            peer_addr = "127.0.0.1:7102"
            admin_addr = "127.0.0.1:8002"
        "#;
        let config: ServerConfig = toml::from_str(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.health_max_lag_entries, DEFAULT_HEALTH_MAX_LAG_ENTRIES);
        assert_eq!(config.admin_advertise(), None);
        assert_eq!(config.members[1].admin_addr.as_deref(), Some("127.0.0.1:8002"));
        assert_eq!(config.timing.election_timeout_ticks(), 30);
        assert_eq!(config.timing.tick_ms, 10);
        assert_eq!(config.peers().count(), 1);
        assert_eq!(config.limits.max_pipelined_commands, 16);
        assert_eq!(config.limits.max_client_connections, Limits::default().max_client_connections);
    }
}
