//! Lease reads (dissertation §6.4.1): a leader that a majority heard from recently serves linearizable
//! reads at once, without a heartbeat round per read, trusting that no other leader can exist yet.
//!
//! **Why a lease holds.** A follower that heard from a leader within the minimum election timeout ignores
//! vote requests (leader stickiness, §4.2.3, `in_leader_lease`). So once a majority acknowledged a
//! heartbeat that the leader sent at time `t`, each of them heard from the leader after `t` and refuses
//! to help elect anyone else for a while after that; every election needs a majority, which shares a
//! member with the acknowledging one, so no other leader can be elected — and no write can be committed
//! behind this leader's back — until that while is over. The lease therefore runs from the *send* time of
//! the acknowledged round, never from the time the acknowledgement came back (the follower may have
//! heard the heartbeat long before its answer arrived).
//!
//! **Time, not ticks.** Time here is the caller's monotonic clock, given to the core with
//! [`Raft::set_now`]; the core never reads a clock. Counting ticks instead would be wrong: a leader whose
//! loop stalls (a long fsync, a paused process) delivers its ticks late and would think less time had
//! passed than really did — exactly when the others may have elected a successor.
//!
//! **How long.** Let `T` be the tick length, `ET` the minimum election timeout in ticks and `ρ` the
//! drift bound (every clock runs between `1 − ρ` and `1 + ρ` times true time).
//! - A follower's stickiness ends on its `ET`-th tick after the contact. Its first tick may come right
//!   after the contact, so it is sticky for at least `(ET − 1)·T` on its own clock; if that clock runs
//!   fast by `ρ`, that is `(ET − 1)·T / (1 + ρ)` of true time. (Ticks delivered late only lengthen this;
//!   the driver promises never to deliver them early. A follower that restarts in lease mode starts
//!   sticky, see `Raft::new`, so a crash does not end its promise early.)
//! - The leader measures on its own clock, which may run slow by `ρ`: `L` on its clock may be
//!   `L / (1 − ρ)` of true time.
//! - Safe if `L / (1 − ρ) ≤ (ET − 1)·T / (1 + ρ)`, so `L = (ET − 1)·T·(1 − ρ)/(1 + ρ)`, rounded down.
//!
//! What it does not cover: clocks that drift beyond `ρ`, a clock that jumps (use a monotonic one), and a
//! driver that delivers ticks faster than its clock says. A leadership transfer lets the target campaign
//! through followers' stickiness (the transfer mark), so once a transfer starts, leases stay off for the
//! rest of that term, even if it is abandoned (the TimeoutNow may still be in flight).

use std::collections::{BTreeMap, VecDeque};

use crate::config::{LeaseSettings, ReadMode};
use crate::quorum;
use crate::raft::{Raft, Role};
use crate::types::{Index, NodeId};

/// At most this many recent rounds keep their send time. Older rounds only matter if a follower answers
/// very late, and then their lease has long run out anyway; forgetting them only shortens a lease.
const MAX_TRACKED_ROUNDS: usize = 256;

/// The longest lease, in nanoseconds of the leader's clock, that stays inside every follower's
/// stickiness (see the module docs for the derivation): `(ET − 1)·T·(1 − ρ)/(1 + ρ)`.
pub(crate) fn lease_duration_nanos(election_timeout_ticks: u64, lease: LeaseSettings) -> u64 {
    const PPM: u128 = 1_000_000;
    let drift = u128::from(lease.max_clock_drift_ppm).min(PPM);
    let sticky = u128::from(election_timeout_ticks.saturating_sub(1)) * u128::from(lease.tick_nanos);
    let lease = sticky * (PPM - drift) / (PPM + drift);
    u64::try_from(lease).unwrap_or(u64::MAX)
}

/// The leader's lease bookkeeping for its current term.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lease {
    /// Send times of recent heartbeat rounds, `(round, sent_at_nanos)`, rounds ascending.
    sent: VecDeque<(u64, u64)>,
    /// For each follower, the send time of the newest round it acknowledged in this term.
    acked_sent_at: BTreeMap<NodeId, u64>,
    /// A leadership transfer began in this term: no leases until the next.
    transfer_started: bool,
}

impl Lease {
    /// A new term: nothing acknowledged in an earlier one counts, and a new leader may lease again.
    pub fn reset_for_new_term(&mut self) {
        self.sent.clear();
        self.acked_sent_at.clear();
        self.transfer_started = false;
    }

    pub fn round_sent(&mut self, round: u64, now_nanos: u64) {
        debug_assert!(self.sent.back().is_none_or(|&(last, _)| last < round), "rounds go up");
        if self.sent.len() == MAX_TRACKED_ROUNDS {
            self.sent.pop_front();
        }
        self.sent.push_back((round, now_nanos));
    }

    pub fn record_ack(&mut self, from: NodeId, round: u64) {
        let Ok(position) = self.sent.binary_search_by_key(&round, |&(r, _)| r) else { return };
        let sent_at = self.sent[position].1;
        let acked = self.acked_sent_at.entry(from).or_insert(sent_at);
        *acked = (*acked).max(sent_at);
    }

    pub fn transfer_started(&mut self) {
        self.transfer_started = true;
    }
}

impl Raft {
    /// Whether this node serves reads from leases (`ReadMode::Lease`). Only then does it need the time
    /// ([`Raft::set_now`]) and keep the send times of its rounds.
    pub fn leases_enabled(&self) -> bool {
        matches!(self.config.read_mode, ReadMode::Lease(_))
    }

    /// Tells the core the time on the caller's monotonic clock, in nanoseconds since any fixed origin.
    /// Only lease reads use it: the caller sets it before each input that may send heartbeats or serve a
    /// read (`tick`, `ready`, `read_index`), so that a round is stamped no later than it really leaves
    /// and a lease is checked against the time the read really arrived. A time earlier than the last one
    /// is ignored (a monotonic clock does not go back).
    pub fn set_now(&mut self, now_nanos: u64) {
        self.now_nanos = self.now_nanos.max(now_nanos);
    }

    /// Leader in lease mode: how much longer its lease runs, in nanoseconds of its clock, if it holds one
    /// that may serve reads now. `None` when reads need a ReadIndex round.
    pub fn lease_remaining_nanos(&self) -> Option<u64> {
        let ReadMode::Lease(settings) = self.config.read_mode else { return None };
        if self.role != Role::Leader || self.lease.transfer_started || self.transfer.is_some() {
            return None;
        }
        // Until an entry of its term commits, a new leader may not know the latest commit index (§6.4).
        if self.commit < self.term_start_index {
            return None;
        }
        // The newest send time that a majority of every half of the configuration acknowledged (the
        // leader itself counts as acknowledging now: it votes for nobody while it leads). Times are
        // shifted by one so that "no acknowledgement" (counted as 0) differs from a round sent at 0.
        let shifted = quorum::committed_index(&self.configuration, |id| {
            if id == self.id {
                Some(self.now_nanos.saturating_add(1))
            } else {
                self.lease.acked_sent_at.get(&id).map(|at| at.saturating_add(1))
            }
        });
        if shifted == 0 || shifted == Index::MAX {
            return None;
        }
        let lease_start = shifted - 1;
        let lease_end =
            lease_start.saturating_add(lease_duration_nanos(self.config.election_timeout_ticks, settings));
        lease_end.checked_sub(self.now_nanos).filter(|&remaining| remaining > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_is_the_stickiness_window_shrunk_by_drift_both_ways() {
        let tick_nanos = 10_000_000;
        let exact = LeaseSettings { tick_nanos, max_clock_drift_ppm: 0 };
        assert_eq!(lease_duration_nanos(10, exact), 9 * tick_nanos, "one tick lost to tick granularity");
        let one_percent = LeaseSettings { tick_nanos, max_clock_drift_ppm: 10_000 };
        // 90 ms × 0.99 / 1.01 = 88.217… ms.
        assert_eq!(lease_duration_nanos(10, one_percent), 88_217_821);
        assert_eq!(lease_duration_nanos(1, one_percent), 0, "one tick of stickiness may be no time at all");
    }
}
