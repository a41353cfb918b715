//! Figure 6 of the Raft paper (log structure) and the election restriction of §5.4.1.

mod harness;

use std::collections::BTreeMap;

use bytes::Bytes;
use harness::Cluster;
use raft::{quorum, Configuration, Entry, EntryPayload, Log, NodeId, Role, Term};

/// The leader's log of Figure 6: (term, command) for indices 1–8.
const LEADER_LOG: [(Term, &str); 8] =
    [(1, "x=3"), (1, "y=1"), (1, "y=9"), (2, "x=2"), (3, "x=0"), (3, "y=7"), (3, "x=5"), (3, "x=4")];

/// Servers 1 (leader) and 2–5 (followers f1–f4) hold prefixes of the leader's log of these lengths.
const LENGTHS: [(NodeId, usize); 5] = [(1, 8), (2, 5), (3, 8), (4, 2), (5, 7)];

fn figure6_log(length: usize) -> Vec<Entry> {
    LEADER_LOG[..length]
        .iter()
        .enumerate()
        .map(|(i, &(term, command))| Entry {
            index: i as u64 + 1,
            term,
            payload: EntryPayload::Command(Bytes::from_static(command.as_bytes())),
        })
        .collect()
}

#[test]
fn figure6_entries_stored_on_a_majority_from_the_current_term_are_committed() {
    let config = Configuration::with_voters(LENGTHS.iter().map(|&(id, _)| id));
    let match_index: BTreeMap<NodeId, u64> = LENGTHS.iter().map(|&(id, len)| (id, len as u64)).collect();
    let majority = quorum::committed_index(&config, |id| match_index.get(&id).copied());
    assert_eq!(majority, 7, "index 7 is on the leader, f2 and f4; index 8 only on the leader and f2");
    let leader = Log::restore(0, 0, figure6_log(8));
    assert_eq!(leader.term_at(majority), Some(3), "and it is from the leader's current term 3");

    // Applying entries 1–7 in order leaves x = 5, y = 7.
    let mut state = BTreeMap::new();
    for entry in leader.slice(1, majority) {
        let EntryPayload::Command(command) = &entry.payload else { unreachable!() };
        let (key, value) = std::str::from_utf8(command).unwrap().split_once('=').unwrap();
        state.insert(key.to_string(), value.to_string());
    }
    assert_eq!((state["x"].as_str(), state["y"].as_str()), ("5", "7"));
}

#[test]
fn section_5_4_1_a_candidate_with_a_stale_log_cannot_win() {
    let mut winners = Vec::new();
    for (candidate, _) in LENGTHS {
        let logs: Vec<_> = LENGTHS
            .iter()
            .map(|&(id, len)| (id, figure6_log(len).iter().map(|e| e.term).collect(), 3))
            .collect();
        let mut cluster = Cluster::with_logs(&logs, |_| {});
        if cluster.campaign(candidate) == Role::Leader {
            winners.push(candidate);
        }
    }
    // f1 (ends 3@5) and f3 (ends 1@2) lack committed entries, so a majority refuses them; f4 (ends 3@7)
    // is as up-to-date as f1 and f3, which suffices for a majority.
    assert_eq!(winners, [1, 3, 5]);
}
