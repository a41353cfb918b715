//! Random operation sequences against a simple in-memory model of the log: appends, truncation by
//! overwrite, hard-state changes, segment rolls, snapshots with compaction, clean reopens, crashes between
//! operations (the state must match the model exactly) and crashes in the middle of a write (the state must
//! match the model with or without that write).

mod common;

use common::*;
use proptest::prelude::*;
use raft::{Configuration, Entry, HardState, SnapshotMeta};
use storage::{InitialState, SimDisk, Storage};

const SEGMENT_BYTES: u64 = 900;

#[derive(Clone, Debug)]
enum Op {
    Append { count: u64, new_term: bool },
    Overwrite { back: u64, count: u64 },
    HardState { vote: bool, commit_percent: u64 },
    Roll,
    Snapshot { percent: u64 },
    Reopen,
    Crash,
    CrashMidWrite { disk_ops: u64, count: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..20u64, any::<bool>()).prop_map(|(count, new_term)| Op::Append { count, new_term }),
        2 => (0..12u64, 1..8u64).prop_map(|(back, count)| Op::Overwrite { back, count }),
        2 => (any::<bool>(), 0..=100u64).prop_map(|(vote, commit_percent)| Op::HardState { vote, commit_percent }),
        1 => Just(Op::Roll),
        1 => (0..=100u64).prop_map(|percent| Op::Snapshot { percent }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        2 => (0..4u64, 1..10u64).prop_map(|(disk_ops, count)| Op::CrashMidWrite { disk_ops, count }),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct Model {
    hard_state: HardState,
    /// Every entry from index 1.
    log: Vec<Entry>,
    snapshot_index: u64,
}

impl Model {
    fn last_index(&self) -> u64 {
        self.log.len() as u64
    }

    fn check(&self, state: &InitialState) -> Result<(), String> {
        if state.hard_state != self.hard_state
            || state.snapshot.index != self.snapshot_index
            || state.entries[..] != self.log[self.snapshot_index as usize..]
        {
            return Err(format!(
                "recovered hs {:?} snap {} entries {:?}\nmodel hs {:?} snap {} last {}",
                state.hard_state,
                state.snapshot.index,
                state.entries.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                self.hard_state,
                self.snapshot_index,
                self.last_index()
            ));
        }
        Ok(())
    }

    /// The batch `write` would persist for appending `count` entries from `first` in term `term`.
    fn batch(&self, first: u64, count: u64, term: u64) -> (Option<HardState>, Vec<Entry>) {
        let hard_state =
            (term > self.hard_state.term).then_some(HardState { term, vote: None, ..self.hard_state });
        (hard_state, entries(first..=first + count - 1, term))
    }

    fn apply(&mut self, hard_state: Option<HardState>, new: &[Entry]) {
        if let Some(first) = new.first() {
            self.log.truncate(first.index as usize - 1);
            self.log.extend(new.iter().cloned());
        }
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state;
        }
    }
}

fn run(seed: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let disk = SimDisk::new(seed);
    let mut storage = bootstrap(disk.clone(), SEGMENT_BYTES);
    let mut model = Model { hard_state: HardState::default(), log: vec![], snapshot_index: 0 };
    for op in ops {
        match op {
            Op::Append { count, new_term } => {
                let term = model.hard_state.term.max(1) + u64::from(new_term);
                let (hard_state, new) = model.batch(model.last_index() + 1, count, term);
                storage.write(hard_state, &new).unwrap();
                model.apply(hard_state, &new);
            }
            Op::Overwrite { back, count } => {
                let first = model.last_index().saturating_sub(back).max(model.snapshot_index) + 1;
                let (hard_state, new) = model.batch(first, count, model.hard_state.term + 1);
                storage.write(hard_state, &new).unwrap();
                model.apply(hard_state, &new);
            }
            Op::HardState { vote, commit_percent } => {
                let commit = model.last_index() * commit_percent / 100;
                let hard_state = HardState {
                    term: model.hard_state.term + u64::from(vote),
                    vote: if vote { Some(2) } else { model.hard_state.vote },
                    commit: commit.max(model.hard_state.commit),
                };
                storage.write(Some(hard_state), &[]).unwrap();
                model.apply(Some(hard_state), &[]);
            }
            Op::Roll => storage.roll_segment(),
            Op::Snapshot { percent } => {
                let index =
                    model.snapshot_index + (model.last_index() - model.snapshot_index) * percent / 100;
                if index > model.snapshot_index {
                    let term = model.log[index as usize - 1].term;
                    let meta = SnapshotMeta { index, term, configuration: Configuration::with_voters([1]) };
                    let writer = storage.begin_snapshot(meta).unwrap();
                    storage.publish_snapshot(writer.finish().unwrap()).unwrap();
                    storage.compact().unwrap();
                    storage.remove_old_snapshots().unwrap();
                    model.snapshot_index = index;
                }
            }
            Op::Reopen | Op::Crash => {
                drop(storage);
                if matches!(op, Op::Crash) {
                    disk.crash();
                }
                let (reopened, state) = reopen(disk.clone(), SEGMENT_BYTES);
                model.check(&state).map_err(TestCaseError::fail)?;
                storage = reopened;
            }
            Op::CrashMidWrite { disk_ops, count } => {
                let term = model.hard_state.term.max(1);
                let (hard_state, new) = model.batch(model.last_index() + 1, count, term);
                disk.crash_after_ops(Some(disk.op_count() + disk_ops));
                let result = storage.write(hard_state, &new);
                drop(storage);
                disk.crash();
                let (reopened, state) = reopen(disk.clone(), SEGMENT_BYTES);
                let mut with_write = model.clone();
                with_write.apply(hard_state, &new);
                if result.is_ok() {
                    with_write.check(&state).map_err(TestCaseError::fail)?;
                    model = with_write;
                } else if with_write.check(&state).is_ok() {
                    model = with_write;
                } else {
                    model.check(&state).map_err(TestCaseError::fail)?;
                }
                storage = reopened;
            }
        }
    }
    drop(storage);
    disk.crash();
    let (_, state) = reopen(disk, SEGMENT_BYTES);
    model.check(&state).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..60)) {
        run(seed, ops)?;
    }
}
