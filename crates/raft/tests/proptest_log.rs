//! Property test of the log alone: random sequences of leaders, each keeping every committed entry
//! (Leader Completeness) and appending entries of its term, whose appends reach followers late,
//! duplicated and out of order. The followers' logs keep Log Matching with every leader and never lose
//! an entry they were told is committed.

use bytes::Bytes;
use proptest::prelude::*;
use raft::{Entry, EntryPayload, Index, Log, Term};

#[derive(Clone, Debug)]
enum Op {
    /// A new leader, one term up, keeps `keep` entries (at least the committed ones) and appends `added`.
    NewLeader { keep: usize, added: usize },
    /// The leader of `age` terms ago sends `follower` its entries after `start`, `count` of them.
    Append { age: usize, follower: usize, start: usize, count: usize },
    /// The current leader learns that its first `upto` entries are committed (at most its own log, and
    /// only entries of its term or before one of its term, as §5.4.2 demands).
    Commit { upto: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..20usize, 0..5usize).prop_map(|(keep, added)| Op::NewLeader { keep, added }),
        6 => (0..3usize, 0..3usize, 0..20usize, 0..6usize)
            .prop_map(|(age, follower, start, count)| Op::Append { age, follower, start, count }),
        2 => (0..20usize).prop_map(|upto| Op::Commit { upto }),
    ]
}

/// What one leader had: its term, its log, and its commit index when it sent.
#[derive(Clone)]
struct Leader {
    term: Term,
    log: Vec<Entry>,
    commit: Index,
}

struct Follower {
    term: Term,
    log: Log,
    commit: Index,
}

fn entry(index: usize, term: Term) -> Entry {
    Entry {
        index: index as Index,
        term,
        payload: EntryPayload::Command(Bytes::from(format!("{index}@{term}"))),
    }
}

fn check(leaders: &[Leader], followers: &[Follower], committed: &[Entry]) {
    for (f, follower) in followers.iter().enumerate() {
        // Never lose a committed entry: everything up to the follower's commit is the committed prefix.
        assert!(follower.commit as usize <= committed.len(), "follower {f} commits beyond the truth");
        for e in &committed[..follower.commit as usize] {
            assert_eq!(follower.log.entry(e.index), Some(e), "follower {f} lost committed {e}");
        }
        // Log Matching against every leader: a shared (index, term) means a shared prefix.
        for leader in leaders {
            let shared = (1..=follower.log.last_index().min(leader.log.len() as Index))
                .rev()
                .find(|&i| follower.log.term_at(i) == Some(leader.log[i as usize - 1].term));
            if let Some(shared) = shared {
                assert_eq!(follower.log.slice(1, shared), &leader.log[..shared as usize], "follower {f}");
            }
        }
    }
}

fn run(ops: &[Op]) {
    let mut leaders = vec![Leader { term: 1, log: vec![entry(1, 1)], commit: 0 }];
    let mut committed: Vec<Entry> = Vec::new();
    let mut followers: Vec<Follower> =
        (0..3).map(|_| Follower { term: 0, log: Log::restore(0, 0, vec![]), commit: 0 }).collect();
    for op in ops {
        let current = leaders.last().expect("there is always a leader").clone();
        match *op {
            Op::NewLeader { keep, added } => {
                let keep = keep.clamp(committed.len(), current.log.len());
                let term = current.term + 1;
                let mut log = current.log[..keep].to_vec();
                // §8: a new leader's first entry is of its term; then its clients' entries.
                for _ in 0..=added {
                    log.push(entry(log.len() + 1, term));
                }
                leaders.push(Leader { term, log, commit: committed.len() as Index });
            }
            Op::Commit { upto } => {
                let upto = upto.min(current.log.len());
                // §5.4.2: the leader commits by counting only up to an entry of its own term.
                let ok = upto > committed.len() && current.log[upto - 1].term == current.term;
                if ok {
                    committed = current.log[..upto].to_vec();
                    leaders.last_mut().unwrap().commit = upto as Index;
                }
            }
            Op::Append { age, follower, start, count } => {
                let leader = &leaders[leaders.len().saturating_sub(1 + age)];
                let follower = &mut followers[follower];
                if leader.term < follower.term {
                    continue; // a stale leader's message is refused by the term check
                }
                follower.term = leader.term;
                let start = start.min(leader.log.len());
                let end = (start + count).min(leader.log.len());
                let prev_term = if start == 0 { 0 } else { leader.log[start - 1].term };
                let entries = &leader.log[start..end];
                // The AppendEntries receiver as `Raft` drives it: skip what is committed here, append,
                // then commit = max(commit, min(leader commit, last new index)).
                let skip = (follower.commit as usize).saturating_sub(start).min(entries.len());
                let (prev, prev_term) = if skip > 0 {
                    let prev = start + skip;
                    (prev as Index, follower.log.term_at(prev as Index).unwrap())
                } else {
                    (start as Index, prev_term)
                };
                if skip == entries.len() && skip > 0 {
                    continue;
                }
                if let Ok(last_new) =
                    follower.log.try_append(prev, prev_term, &entries[skip..], follower.commit)
                {
                    follower.commit = follower.commit.max(leader.commit.min(last_new));
                }
            }
        }
        check(&leaders, &followers, &committed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_appends_and_conflicts_keep_log_matching_and_committed_entries(
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run(&ops);
    }
}
