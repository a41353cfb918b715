//! The simulator's teeth (issue 4, item 6): with one rule broken on purpose in the real code, a campaign of
//! at most 1,000 seeds must fail, and fail on the check that guards that rule. Each test stops at the first
//! seed that catches its bug, then replays that seed without the bug as a control: it must pass, so the
//! failure is the bug's doing and not the seed's.
//!
//! `cargo test -p sim --features inject-bugs --test teeth -- --nocapture` prints the catching seeds; the
//! same campaign from the command line is
//! `cargo run --release -p raftkv --features inject-bugs -- sim --seeds 1..1000 --inject-bug NAME
//! --stop-at-first-failure`.
#![cfg(feature = "inject-bugs")]

use sim::{run_catching_panics, Campaign, Check, InjectedBug, RunConfig, RunReport};

/// Runs seeds 1..=1000 with `bug` until one fails; asserts that one did and that it broke one of
/// `expected`; replays that seed without the bug and asserts it passes. Returns the catching report.
fn assert_caught(bug: InjectedBug, nodes: usize, expected: &[Check]) -> RunReport {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let campaign = Campaign {
        seeds: 1..=1_000,
        nodes,
        ticks: 1_500,
        clients: 10,
        threads,
        stop_at_first_failure: true,
        injected_bug: Some(bug),
    };
    let summary = campaign.run(|_, _| {});
    // Every seed below a failing one was handed out before it and ran to the end, so the lowest failure
    // is the first catching seed whatever the thread count.
    let Some(caught) = summary.failures.first().cloned() else {
        panic!(
            "{bug}: no seed of {}..={} caught it ({} seeds run): the simulator has lost its teeth",
            campaign.seeds.start(),
            campaign.seeds.end(),
            summary.seeds_run
        );
    };
    let violation = caught.violation.clone().expect("a failure has a violation");
    let seeds_needed = caught.seed - campaign.seeds.start() + 1;
    println!(
        "{bug}: caught by seed {} after {seeds_needed} seeds ({} nodes): {violation}\n  faults: {}\n  replay: {}",
        caught.seed,
        nodes,
        caught.settings,
        campaign.replay_command(caught.seed)
    );
    assert!(
        expected.contains(&violation.check),
        "{bug}: seed {} failed {} but the bug breaks one of {expected:?}: {violation}\n  replay: {}",
        caught.seed,
        violation.check,
        campaign.replay_command(caught.seed)
    );
    // The control: the same seed with the rule intact passes.
    let control = run_catching_panics(RunConfig { injected_bug: None, ..campaign.run_config(caught.seed) });
    assert_eq!(
        control.violation, None,
        "seed {} fails even without {bug}: replay with `raftkv sim --seed {} --nodes {nodes}`",
        caught.seed, caught.seed
    );
    caught
}

/// Granting two votes in one term lets two candidates win the same term. The checker records every
/// leader of every term, so the second leader breaks Election Safety the moment it takes office.
#[test]
fn double_vote_is_caught() {
    assert_caught(InjectedBug::DoubleVote, 5, &[Check::ElectionSafety]);
}

/// Figure 8: counting replicas of an earlier term's entry can commit an entry that a later leader, whose
/// last entry has a newer term, may still overwrite.
#[test]
fn committing_an_old_term_entry_by_counting_is_caught() {
    assert_caught(
        InjectedBug::CommitOldTermByCounting,
        5,
        &[Check::LeaderCompleteness, Check::StateMachineSafety, Check::Linearizability],
    );
}

#[test]
fn acknowledging_an_append_before_it_is_persisted_is_caught() {
    assert_caught(
        InjectedBug::AckBeforePersist,
        5,
        &[
            Check::LeaderCompleteness,
            Check::StateMachineSafety,
            Check::Linearizability,
            Check::DurableHardState,
        ],
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
