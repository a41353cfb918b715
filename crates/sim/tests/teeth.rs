//! The simulator's teeth (issue 4, item 6): with one rule broken on purpose in the real code, a campaign of
//! at most 1,000 seeds must catch it, on the check that guards that rule. Each test stops at the first
//! seed that catches its bug; a seed catches it when it fails with the bug and, replayed as a control
//! with the rule intact, passes, so the failure is the bug's doing and not the seed's.
//!
//! `cargo test -p sim --features inject-bugs --test teeth -- --nocapture` prints the catching seeds; the
//! same campaign from the command line is
//! `cargo run --release -p raftkv --features inject-bugs -- sim --seeds 1..1000 --inject-bug NAME
//! --stop-at-first-failure`.
#![cfg(feature = "inject-bugs")]

use sim::{run_catching_panics, Campaign, Check, InjectedBug, RunConfig, RunReport};

/// Runs seeds 1..=1000 with `bug` until one catches it: fails with the bug and passes without it (the
/// control replays the seed with the rule intact). Asserts that one did, and that it broke one of
/// `expected`. A seed that fails without the bug too is not a catch: it is printed and skipped, so the
/// search goes on from the next seed (it is a problem of its own, for the seed campaigns to report).
fn assert_caught(bug: InjectedBug, nodes: usize, expected: &[Check]) -> RunReport {
    assert_caught_skipping(bug, nodes, DEFAULT_TICKS, expected, &[])
}

/// The safety phase of `raftkv sim` by default: 15 s of simulated time.
const DEFAULT_TICKS: u64 = 1_500;

/// [`assert_caught`], except that a failure on one of `skipped` is printed and passed over (the search
/// goes on from the next seed): for a bug whose consequences include a failure that is real but is not
/// the property the test is about.
fn assert_caught_skipping(
    bug: InjectedBug,
    nodes: usize,
    ticks: u64,
    expected: &[Check],
    skipped: &[Check],
) -> RunReport {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut first_seed = 1;
    loop {
        let campaign = Campaign {
            seeds: first_seed..=1_000,
            nodes,
            ticks,
            clients: 10,
            threads,
            stop_at_first_failure: true,
            lease_reads: None,
            injected_bug: Some(bug),
        };
        let summary = campaign.run(|_, _| {});
        // Every seed below a failing one was handed out before it and ran to the end, so the lowest
        // failure is the first failing seed whatever the thread count.
        let Some(failed) = summary.failures.first().cloned() else {
            panic!(
                "{bug}: no seed of 1..={} caught it ({nodes} nodes): the simulator has lost its teeth",
                campaign.seeds.end()
            );
        };
        let violation = failed.violation.clone().expect("a failure has a violation");
        if skipped.contains(&violation.check) {
            println!(
                "{bug}: seed {} failed {}, which this test passes over; going on",
                failed.seed, violation.check
            );
            first_seed = failed.seed + 1;
            continue;
        }
        let control =
            run_catching_panics(RunConfig { injected_bug: None, ..campaign.run_config(failed.seed) });
        if let Some(without_bug) = control.violation {
            println!(
                "{bug}: seed {} fails even without the bug, so it proves nothing about it; going on \
                 ({without_bug}; replay with `raftkv sim --seed {} --nodes {nodes}`)",
                failed.seed, failed.seed
            );
            first_seed = failed.seed + 1;
            continue;
        }
        println!(
            "{bug}: caught by seed {} after {} seeds ({nodes} nodes): {violation}\n  faults: {}\n  replay: {}",
            failed.seed,
            failed.seed,
            failed.settings,
            campaign.replay_command(failed.seed)
        );
        assert!(
            expected.contains(&violation.check),
            "{bug}: seed {} failed {} but the bug breaks one of {expected:?}: {violation}\n  replay: {}",
            failed.seed,
            violation.check,
            campaign.replay_command(failed.seed)
        );
        return failed;
    }
}

/// Granting two votes in one term lets two candidates win the same term. The checker records every
/// leader of every term, so the second leader breaks Election Safety the moment it takes office.
#[test]
fn double_vote_is_caught() {
    assert_caught(InjectedBug::DoubleVote, 5, &[Check::ElectionSafety]);
}

/// Figure 8 (§5.4.2): counting replicas of an earlier term's entry commits an entry that a node whose last
/// entry has a newer term can still overwrite once it wins an election.
///
/// Leader Completeness, and only it: an entry is overwritten only by a leader whose log lacks it, and the
/// checker compares every new leader's log with every entry known committed in an earlier term at the
/// moment it takes office, before it can send a single append. So the lost entry is reported there,
/// before any node could commit or apply another entry at its index (State Machine Safety) or a client
/// could see the difference (Linearizability).
///
/// Three nodes: a majority of two needs fewer coincidences for the Figure 8 schedule (an old-term entry
/// on a bare majority, and a rival holding a newer term's entry there, a leader change in between). The
/// simulator draws small batches (`batch=` in the fault settings) for this: with a whole backlog in one
/// append, the new leader's acknowledgements always cover its own term's first entry too, which masks
/// the bug. The schedule also needs leaders that fail within their first heartbeats, twice in a row: the
/// swarm's `leader_crash` class crashes or isolates new leaders (isolation also drops what the leader had
/// in flight, so a follower can hold the old-term entry without the new leader's own). Several such
/// leader changes take time, so this campaign runs 30 s of simulated time per seed instead of 15 s
/// (`--ticks 3000`; with the default, 4 of 1,000 seeds catch the bug, with 3,000 ticks 12 do).
#[test]
fn committing_an_old_term_entry_by_counting_is_caught() {
    assert_caught_skipping(InjectedBug::CommitOldTermByCounting, 3, 3_000, &[Check::LeaderCompleteness], &[]);
}

/// An append acknowledged before it is durable: the node glue sends what the core releases before its own
/// write (safe for correct code, and what lets a leader replicate while it fsyncs), and half of the
/// simulator's crashes are a power loss at one of the node's next disk operations, in the middle of a
/// step. So a follower can acknowledge entries, lose them, and have them counted toward a commit that a
/// majority no longer holds: the entry is then missing from a later leader's log (Leader Completeness),
/// applied differently (State Machine Safety), or a client reads around it (Linearizability).
///
/// The same bug also leaves the leader's match index for that follower ahead of the follower's real log,
/// which stalls replication to it: a real failure, but a liveness one, so this test passes over it and
/// looks for the safety violation.
#[test]
fn acknowledging_an_append_before_it_is_persisted_is_caught() {
    assert_caught_skipping(
        InjectedBug::AckBeforePersist,
        3,
        DEFAULT_TICKS,
        &[Check::LeaderCompleteness, Check::StateMachineSafety, Check::Linearizability],
        &[Check::Liveness],
    );
}

/// A leader that answers reads from its own commit index without confirming it still leads serves stale
/// values once a newer leader has committed writes it has not heard of.
#[test]
fn serving_a_read_on_a_deposed_leader_is_caught() {
    assert_caught(InjectedBug::StaleLeaderRead, 5, &[Check::Linearizability]);
}

/// A retried command applied twice (an append or an incr) shows up in the clients' history only: every
/// replica applies the duplicate alike, so the logs and applies agree and only Linearizability can see it.
#[test]
fn applying_a_retried_command_twice_is_caught() {
    assert_caught(InjectedBug::ApplyRetriesTwice, 5, &[Check::Linearizability]);
}

/// A change of voters applied in one step, C_old straight to C_new (dissertation §4.3): for a while some
/// servers decide by C_old and others by C_new, and a majority of each can be disjoint (three voters
/// {1, 2, 3} replaced by {1, 4, 5}: {2, 3} and {4, 5}), so two leaders win the same term or a commit of
/// one side is lost to the other. The swarm's membership class draws such changes (replacing a majority,
/// growing 3→5, shrinking 5→3) under every other fault. Seeds whose settings have the class off cannot
/// catch it and simply pass.
#[test]
fn changing_voters_without_the_joint_phase_is_caught() {
    assert_caught_skipping(
        InjectedBug::SkipJointConsensus,
        5,
        DEFAULT_TICKS,
        &[
            Check::ElectionSafety,
            Check::LeaderCompleteness,
            Check::StateMachineSafety,
            Check::LogMatching,
            Check::Linearizability,
        ],
        &[Check::Liveness],
    );
}
