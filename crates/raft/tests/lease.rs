//! Lease reads (dissertation §6.4.1): a leader serves reads without a heartbeat round while a lease runs
//! from the *send* time of a round that a majority (of every half of the configuration) acknowledged; the
//! lease is off until the leader committed an entry of its term, and for the rest of a term in which a
//! leadership transfer started.
//!
//! Time is the leader's monotonic clock, set by hand here with `set_now`. With a 10 ms tick, an election
//! timeout of 10 ticks and a 1% drift bound, a lease lasts 9 × 10 ms × 0.99 / 1.01 = 88.217821 ms.

mod harness;

use harness::Cluster;
use raft::{Config, ConfigError, LeaseSettings, MessageBody, NodeId, ReadMode, Role};

const MS: u64 = 1_000_000;
const TICK_NANOS: u64 = 10 * MS;
const LEASE_NANOS: u64 = 88_217_821;

fn lease_mode(config: &mut Config) {
    config.read_mode = ReadMode::Lease(LeaseSettings { tick_nanos: TICK_NANOS, max_clock_drift_ppm: 10_000 });
}

/// A lease-mode cluster of `n` with a leader whose no-op committed. (In lease mode every node starts
/// sticky, so the cluster first sits out an election timeout, as a freshly started one would.)
fn lease_cluster(n: u64) -> (Cluster, NodeId) {
    let mut cluster = Cluster::with_config(n, lease_mode);
    for _ in 0..100 {
        cluster.run(1);
        if let Some(leader) = cluster.leader() {
            cluster.run(1);
            return (cluster, leader);
        }
    }
    panic!("no leader elected:\n{}", cluster.describe());
}

fn followers(cluster: &Cluster, leader: NodeId) -> Vec<NodeId> {
    cluster.ids().into_iter().filter(|&id| id != leader).collect()
}

fn heartbeats_sent(cluster: &Cluster) -> usize {
    cluster.sent.iter().filter(|m| matches!(m.body, MessageBody::Heartbeat(_))).count()
}

/// Asks for read `ctx` on `leader` at `now_nanos` and lets the leader produce its Ready (nothing
/// delivered). Returns whether the read was served at once by the lease.
fn read_at(cluster: &mut Cluster, leader: NodeId, ctx: u64, now_nanos: u64) -> bool {
    cluster.raft_mut(leader).set_now(now_nanos);
    cluster.raft_mut(leader).read_index(ctx).unwrap();
    cluster.process(leader);
    cluster.nodes[&leader].read_states.iter().any(|r| r.ctx == ctx && r.by_lease)
}

/// Starts a round at `now_nanos` (a read without a lease falls back to one) and delivers everything.
fn acknowledged_round_sent_at(cluster: &mut Cluster, leader: NodeId, ctx: u64, now_nanos: u64) {
    assert!(!read_at(cluster, leader, ctx, now_nanos), "expected no lease at {now_nanos}");
    cluster.deliver_all();
    let read = cluster.nodes[&leader].read_states.iter().find(|r| r.ctx == ctx).expect("confirmed by round");
    assert!(!read.by_lease);
}

#[test]
fn lease_a_read_inside_the_lease_is_served_at_once_without_a_round() {
    let (mut cluster, leader) = lease_cluster(3);
    acknowledged_round_sent_at(&mut cluster, leader, 1, 1_000 * MS);
    let before = heartbeats_sent(&cluster);
    assert!(read_at(&mut cluster, leader, 2, 1_050 * MS));
    assert_eq!(heartbeats_sent(&cluster), before, "no round for a lease read");
    let read = cluster.nodes[&leader].read_states.iter().find(|r| r.ctx == 2).unwrap();
    assert_eq!(read.index, cluster.raft(leader).commit_index());
}

#[test]
fn lease_an_expired_lease_falls_back_to_a_round() {
    let (mut cluster, leader) = lease_cluster(3);
    acknowledged_round_sent_at(&mut cluster, leader, 1, 1_000 * MS);
    let before = heartbeats_sent(&cluster);
    assert!(!read_at(&mut cluster, leader, 2, 1_000 * MS + LEASE_NANOS), "the lease ends exactly here");
    assert_eq!(heartbeats_sent(&cluster) - before, 2, "a round instead");
    cluster.deliver_all();
    assert!(cluster.nodes[&leader].read_states.iter().any(|r| r.ctx == 2 && !r.by_lease));
}

/// The followers heard the heartbeat when it was sent; their answers took 60 ms to come back. The lease
/// runs from the send time: counting from the answers would overrun the followers' stickiness by 60 ms.
#[test]
fn lease_runs_from_the_send_time_of_the_acknowledged_round_not_the_ack_time() {
    let (mut cluster, leader) = lease_cluster(3);
    assert!(!read_at(&mut cluster, leader, 1, 1_000 * MS));
    cluster.raft_mut(leader).set_now(1_060 * MS); // the answers arrive 60 ms later
    cluster.deliver_all();
    assert_eq!(
        cluster.raft(leader).lease_remaining_nanos(),
        Some(1_000 * MS + LEASE_NANOS - 1_060 * MS),
        "counted from the send time"
    );
    assert!(read_at(&mut cluster, leader, 2, 1_085 * MS));
    assert!(!read_at(&mut cluster, leader, 3, 1_089 * MS), "60 ms + 88 ms after the ack would still be in");
}

#[test]
fn lease_a_leadership_transfer_turns_leases_off_for_the_rest_of_the_term_even_if_it_is_abandoned() {
    let (mut cluster, leader) = lease_cluster(3);
    let target = followers(&cluster, leader)[0];
    acknowledged_round_sent_at(&mut cluster, leader, 1, 1_000 * MS);
    assert!(read_at(&mut cluster, leader, 2, 1_001 * MS));
    // The target is cut off: the TimeoutNow never arrives and the transfer is abandoned.
    cluster.isolate(target);
    cluster.raft_mut(leader).transfer_leadership(target).unwrap();
    assert!(!read_at(&mut cluster, leader, 3, 1_002 * MS), "no lease once a transfer started");
    for _ in 0..12 {
        cluster.tick(leader);
        cluster.deliver_all();
    }
    assert_eq!(cluster.raft(leader).leadership_transfer_target(), None, "transfer abandoned");
    assert_eq!(cluster.raft(leader).role(), Role::Leader);
    cluster.heal();
    acknowledged_round_sent_at(&mut cluster, leader, 4, 2_000 * MS);
    assert_eq!(cluster.raft(leader).lease_remaining_nanos(), None, "still off in this term");
    assert!(!read_at(&mut cluster, leader, 5, 2_001 * MS));
}

#[test]
fn lease_a_new_leader_has_none_until_its_no_op_commits_and_its_own_round_is_acknowledged() {
    let (mut cluster, old) = lease_cluster(3);
    acknowledged_round_sent_at(&mut cluster, old, 1, 1_000 * MS);
    assert!(cluster.raft(old).lease_remaining_nanos().is_some());
    // The old leader is cut off; after the followers' stickiness runs out one of them takes over, but its
    // no-op does not reach anyone yet.
    cluster.isolate(old);
    let is_append = |m: &raft::Message| matches!(m.body, MessageBody::AppendRequest(_));
    let mut new = None;
    for _ in 0..100 {
        for id in followers(&cluster, old) {
            cluster.tick(id);
        }
        cluster.deliver_all_except(is_append);
        new = followers(&cluster, old).into_iter().find(|&id| cluster.raft(id).role() == Role::Leader);
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("a follower took over");
    let term_start = cluster.raft(new).last_index();
    assert!(cluster.raft(new).commit_index() < term_start);
    // A round of its own term, acknowledged, but nothing of its term committed: no lease.
    cluster.raft_mut(new).set_now(5_000 * MS);
    cluster.raft_mut(new).read_index(10).unwrap();
    cluster.process(new);
    cluster.deliver_all_except(is_append);
    assert_eq!(cluster.raft(new).lease_remaining_nanos(), None);
    assert!(cluster.nodes[&new].read_states.is_empty());
    // The no-op commits; its round was acknowledged in its own term, so the lease runs from that send.
    for _ in 0..3 {
        cluster.tick(new);
        cluster.deliver_all();
    }
    assert!(cluster.raft(new).commit_index() >= term_start);
    assert!(cluster.raft(new).lease_remaining_nanos().is_some());
    assert!(read_at(&mut cluster, new, 11, 5_010 * MS));
}

/// Joint configuration C_old = all five, C_new = the leader and two followers (dissertation §4.3):
/// acknowledgements from the two being removed make a majority of C_old with the leader, but not of C_new,
/// so there is no lease.
#[test]
fn lease_in_a_joint_configuration_needs_a_majority_of_both_halves() {
    let (mut cluster, leader) = lease_cluster(5);
    let [staying_a, staying_b, leaving_a, leaving_b] = followers(&cluster, leader)[..] else { panic!() };
    acknowledged_round_sent_at(&mut cluster, leader, 1, 1_000 * MS);
    let is_append = |m: &raft::Message| matches!(m.body, MessageBody::AppendRequest(_));
    let voters = [leader, staying_a, staying_b].into();
    let change = raft::ConfChange::Target { voters, learners: Default::default() };
    cluster.raft_mut(leader).propose_conf_change(change).unwrap();
    cluster.process(leader);
    cluster.drop_in_flight(is_append);
    assert!(cluster.raft(leader).configuration().is_joint());
    cluster.partition(&[&[leader, leaving_a, leaving_b], &[staying_a, staying_b]]);
    // Long after the first lease ran out: only the two leaving nodes acknowledge the new round.
    assert!(!read_at(&mut cluster, leader, 2, 2_000 * MS));
    cluster.deliver_all_except(is_append);
    assert_eq!(cluster.raft(leader).lease_remaining_nanos(), None, "a majority of C_old only");
    cluster.heal();
    // The next heartbeat round reaches everyone (the read's round was lost to the partition).
    cluster.raft_mut(leader).set_now(2_010 * MS);
    cluster.tick(leader);
    cluster.tick(leader);
    cluster.deliver_all_except(is_append);
    assert!(cluster.raft(leader).configuration().is_joint());
    assert!(cluster.raft(leader).lease_remaining_nanos().is_some(), "majorities of both halves");
}

/// A follower may have acknowledged a heartbeat just before it crashed: in lease mode it restarts sticky,
/// refusing votes for an election timeout, as the leader's lease assumes.
#[test]
fn lease_a_restarted_node_keeps_ignoring_candidates_for_an_election_timeout() {
    let (mut cluster, leader) = lease_cluster(3);
    let [a, b] = followers(&cluster, leader)[..] else { panic!("two followers") };
    cluster.crash(a);
    cluster.restart(a);
    cluster.isolate(leader);
    // b has not heard from the leader for long enough to campaign, and only a's vote could elect it.
    for _ in 0..25 {
        cluster.tick(b);
    }
    cluster.deliver_all();
    assert_ne!(cluster.raft(b).role(), Role::Leader, "a ignored b: it restarted sticky");
    for _ in 0..40 {
        cluster.tick(a);
        cluster.tick(b);
        cluster.deliver_all();
    }
    assert!([a, b].iter().any(|&id| cluster.raft(id).role() == Role::Leader), "and later helps elect");
}

#[test]
fn lease_mode_without_check_quorum_is_refused() {
    let mut config = Config::new(1);
    lease_mode(&mut config);
    config.check_quorum = false;
    assert_eq!(config.validate(), Err(ConfigError::LeaseWithoutCheckQuorum));
    config.check_quorum = true;
    config.read_mode =
        ReadMode::Lease(LeaseSettings { tick_nanos: TICK_NANOS, max_clock_drift_ppm: 500_000 });
    assert_eq!(config.validate(), Err(ConfigError::ClockDriftTooLarge { ppm: 500_000 }));
}

#[test]
fn lease_the_default_read_mode_never_serves_from_a_lease() {
    let mut cluster = Cluster::new(3);
    cluster.elect(1);
    acknowledged_round_sent_at(&mut cluster, 1, 1, 1_000 * MS);
    assert_eq!(cluster.raft(1).lease_remaining_nanos(), None);
    assert!(!read_at(&mut cluster, 1, 2, 1_001 * MS));
}
