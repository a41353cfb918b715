//! A node's settings: identity, timing (in ticks), limits, optional protocol extensions, and the seed of
//! its random number generator.

use crate::error::ConfigError;
use crate::types::NodeId;

/// A test-only switch that breaks one safety rule, so the simulator can prove it notices (issue 4,
/// "Teeth"). Exists only with the `inject-bugs` feature, which no release build enables.
#[cfg(feature = "inject-bugs")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InjectedBug {
    /// Grant a vote to a second candidate in a term that already has this node's vote (breaks §5.2).
    DoubleVote,
    /// Commit the highest majority-replicated index even if its entry is from an earlier term (the
    /// mistake of Figure 8, §5.4.2).
    CommitOldTermByCounting,
    /// Acknowledge appended entries before they are durable (breaks the durability rule).
    AckBeforePersist,
    /// Answer `read_index` at once from the local commit index, without a confirmation round (§6.4).
    StaleLeaderRead,
    /// Change the voters in one step, C_old straight to C_new, without the joint phase (breaks
    /// dissertation §4.3: a majority of C_old and a majority of C_new may then decide apart).
    SkipJointConsensus,
}

/// How a leader makes sure it is still the leader before serving a linearizable read (dissertation §6.4).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadMode {
    /// A heartbeat round acknowledged by a majority after the read arrived (§6.4): safe whatever the
    /// clocks do.
    ReadIndex,
    /// Serve at once while a lease runs (§6.4.1); fall back to ReadIndex when it does not. Safe only if
    /// every node's monotonic clock runs within `max_clock_drift_ppm` of true time. Needs check-quorum.
    Lease(LeaseSettings),
}

/// What a lease needs to turn ticks into time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LeaseSettings {
    /// The length of one tick on the caller's monotonic clock, in nanoseconds: the caller promises to
    /// deliver ticks no faster than one per `tick_nanos` of its clock (late is fine, early is not).
    pub tick_nanos: u64,
    /// The largest rate error of any node's monotonic clock against true time, in parts per million
    /// (10_000 = 1%): a clock may run anywhere between `1 - drift` and `1 + drift` times true time.
    pub max_clock_drift_ppm: u64,
}

/// Drift must stay below 50%: beyond that the formula leaves too little lease to be worth it, and a
/// number that large is a mistake, not a measurement.
pub const MAX_CLOCK_DRIFT_PPM_LIMIT: u64 = 500_000;

/// Settings of one node. Times are in ticks of the caller's logical clock.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Config {
    /// This node's id; never 0.
    pub id: NodeId,
    /// Minimum election timeout. The actual timeout is drawn anew from `[min, 2 * min)` each time the
    /// timer resets (§5.2), from the node's own RNG. Also the leader-stickiness window and the
    /// check-quorum period.
    pub election_timeout_ticks: u64,
    /// How often a leader sends heartbeats. Must be below the election timeout.
    pub heartbeat_interval_ticks: u64,
    /// At most this many entries in one AppendEntries.
    pub max_entries_per_message: usize,
    /// At most this many entry bytes in one AppendEntries (a single larger entry still goes alone).
    pub max_bytes_per_message: usize,
    /// At most this many unacknowledged AppendEntries per follower (pipelining window).
    pub max_inflight_messages: usize,
    /// A leader refuses new proposals while this many bytes of its own proposals are uncommitted (a
    /// single proposal is always accepted when nothing is uncommitted).
    pub max_uncommitted_bytes: usize,
    /// At most this many ReadIndex reads wait for confirmation at once.
    pub max_pending_reads: usize,
    /// At most this many committed entries in one `Ready` (a restarted node replaying a long log gets
    /// them over several).
    pub max_committed_entries_per_ready: usize,
    /// A leader asks the application for snapshot chunks of at most this many bytes (InstallSnapshot,
    /// §7): with one chunk in flight per follower, this bounds the snapshot bytes in memory per follower.
    pub max_snapshot_chunk_bytes: usize,
    /// A leader asks for a snapshot chunk again when the current one has been neither read by the
    /// application nor answered by the follower for this many ticks (a lost chunk or answer). It also
    /// resends the last chunk at this pace while the follower installs the snapshot.
    pub snapshot_chunk_timeout_ticks: u64,
    /// A learner is promoted to voter only while its log is within this many entries of the leader's
    /// last index (dissertation §4.2.1): a voter far behind would hold up commitment while it catches up.
    pub max_promotion_lag_entries: u64,
    /// Run a pre-vote round before a real election (dissertation §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down (§6.2). Leader
    /// stickiness (ignoring vote requests while a leader was heard recently) is on only with this: it
    /// needs a cut-off leader to fall silent.
    pub check_quorum: bool,
    /// How a leader confirms linearizable reads: ReadIndex rounds (the default), or leases (dissertation
    /// §6.4.1), which trust a bound on clock drift. See [`ReadMode`].
    pub read_mode: ReadMode,
    /// Seed of the node's RNG; mixed with `id`, so equal seeds on different nodes still give different
    /// timeouts.
    pub rng_seed: u64,
    /// Test-only: break one safety rule on purpose.
    #[cfg(feature = "inject-bugs")]
    pub injected_bug: Option<InjectedBug>,
}

impl Config {
    /// Defaults that suit a simulator and a LAN alike with a 10 ms tick: election after 100–200 ms,
    /// heartbeats every 20 ms.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            max_entries_per_message: 256,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 64,
            max_uncommitted_bytes: 64 << 20,
            max_pending_reads: 4096,
            max_committed_entries_per_ready: 4096,
            max_snapshot_chunk_bytes: 1 << 20,
            snapshot_chunk_timeout_ticks: 20,
            max_promotion_lag_entries: 1_000,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::ReadIndex,
            rng_seed: 0,
            #[cfg(feature = "inject-bugs")]
            injected_bug: None,
        }
    }

    /// Checks that these settings can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err(ConfigError::ZeroHeartbeatInterval);
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return Err(ConfigError::ElectionTimeoutTooShort {
                election: self.election_timeout_ticks,
                heartbeat: self.heartbeat_interval_ticks,
            });
        }
        let limits = [
            ("max_entries_per_message", self.max_entries_per_message),
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("max_inflight_messages", self.max_inflight_messages),
            ("max_uncommitted_bytes", self.max_uncommitted_bytes),
            ("max_pending_reads", self.max_pending_reads),
            ("max_committed_entries_per_ready", self.max_committed_entries_per_ready),
            ("max_snapshot_chunk_bytes", self.max_snapshot_chunk_bytes),
            // (only zero matters here, so any positive count maps to 1)
            ("snapshot_chunk_timeout_ticks", self.snapshot_chunk_timeout_ticks.min(1) as usize),
        ];
        for (field, value) in limits {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { field });
            }
        }
        if let ReadMode::Lease(lease) = self.read_mode {
            // A lease is only as good as the followers' promise not to elect anyone else while it runs,
            // and that promise (leader stickiness) exists only with check-quorum (see `in_leader_lease`).
            if !self.check_quorum {
                return Err(ConfigError::LeaseWithoutCheckQuorum);
            }
            if lease.max_clock_drift_ppm >= MAX_CLOCK_DRIFT_PPM_LIMIT {
                return Err(ConfigError::ClockDriftTooLarge { ppm: lease.max_clock_drift_ppm });
            }
            if lease.tick_nanos == 0 {
                return Err(ConfigError::ZeroLimit { field: "lease tick_nanos" });
            }
            if crate::lease::lease_duration_nanos(self.election_timeout_ticks, lease) == 0 {
                return Err(ConfigError::LeaseTooShort { election: self.election_timeout_ticks });
            }
        }
        Ok(())
    }

    /// True if the given bug is switched on (always false without the `inject-bugs` feature).
    #[cfg(feature = "inject-bugs")]
    pub(crate) fn has_bug(&self, bug: InjectedBug) -> bool {
        self.injected_bug == Some(bug)
    }
}
