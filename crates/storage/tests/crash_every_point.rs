//! Crash at every point: a scripted workload (appends, truncations, hard-state changes, segment rolls, a
//! snapshot with compaction) runs on the simulated disk with the power cut after its k-th disk operation,
//! for every k and several page-loss seeds. After recovery the state must be exactly what the acknowledged
//! operations produced, or that plus the one operation in flight (a batch is atomic): everything reported
//! durable is there, nothing truncated comes back, no entry that was never written appears.

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::*;
use raft::{Configuration, Entry, HardState, SnapshotMeta};
use storage::{InitialState, SimDisk, Storage};

const SEGMENT_BYTES: u64 = 700;

#[derive(Clone, Debug)]
enum Op {
    Write(Option<HardState>, Vec<Entry>),
    Roll,
    /// Snapshot at this index (term from the log), publish it, compact the WAL, delete older snapshots.
    Snapshot(u64),
}

fn workload() -> Vec<Op> {
    vec![
        Op::Write(Some(hard_state(1, Some(1), 0)), entries(1..=5, 1)),
        Op::Write(Some(hard_state(1, Some(1), 3)), entries(6..=20, 1)),
        Op::Roll,
        // A follower learns of term 2 and that its suffix 15..=20 conflicts with the new leader.
        Op::Write(Some(hard_state(2, None, 10)), entries(15..=18, 2)),
        Op::Write(None, entries(19..=40, 2)),
        Op::Write(Some(hard_state(3, Some(3), 20)), vec![]),
        Op::Write(None, entries(30..=32, 3)),
        Op::Snapshot(20),
        Op::Write(Some(hard_state(3, Some(3), 31)), entries(33..=45, 3)),
        Op::Roll,
        Op::Write(Some(hard_state(4, Some(1), 31)), entries(44..=44, 4)),
        Op::Write(None, entries(45..=50, 4)),
    ]
}

/// What the acknowledged operations imply: the whole log from index 1 (the snapshot only hides a prefix).
#[derive(Clone, Debug, PartialEq)]
struct Model {
    bootstrapped: bool,
    hard_state: HardState,
    log: Vec<Entry>,
    snapshot_index: u64,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(hard_state, new) => {
                if let Some(first) = new.first() {
                    self.log.truncate(first.index as usize - 1);
                    self.log.extend(new.iter().cloned());
                }
                if let Some(hard_state) = hard_state {
                    self.hard_state = *hard_state;
                }
            }
            Op::Roll => {}
            Op::Snapshot(index) => self.snapshot_index = *index,
        }
    }

    fn matches(&self, state: &Option<InitialState>) -> bool {
        let Some(state) = state else { return !self.bootstrapped };
        self.bootstrapped
            && state.hard_state == self.hard_state
            && state.snapshot.index == self.snapshot_index
            && state.entries[..] == self.log[self.snapshot_index as usize..]
    }
}

/// Runs the workload until the simulated power fails; returns how many steps (bootstrap is step 0) were
/// acknowledged.
fn run(disk: &SimDisk, ops: &[Op]) -> usize {
    let Ok((mut storage, _)) = Storage::open(disk.clone(), options(SEGMENT_BYTES)) else { return 0 };
    if storage.bootstrap(Configuration::with_voters([1, 2, 3])).is_err() {
        return 0;
    }
    for (i, op) in ops.iter().enumerate() {
        let result = match op {
            Op::Write(hard_state, entries) => storage.write(*hard_state, entries),
            Op::Roll => {
                storage.roll_segment();
                Ok(())
            }
            Op::Snapshot(index) => snapshot(&mut storage, *index),
        };
        if result.is_err() {
            return i + 1;
        }
    }
    ops.len() + 1
}

fn snapshot(storage: &mut Storage<SimDisk>, index: u64) -> storage::Result<()> {
    let meta = SnapshotMeta { index, term: 2, configuration: Configuration::with_voters([1, 2, 3]) };
    let mut writer = storage.begin_snapshot(meta)?;
    writer.write_all(&vec![7u8; 5000]).expect("simulated writes only fail at the power cut");
    let finished = writer.finish()?;
    storage.publish_snapshot(finished)?;
    storage.compact()?;
    storage.remove_old_snapshots()?;
    Ok(())
}

/// Model after bootstrap and `steps - 1` operations (steps == 0: nothing acknowledged, not even bootstrap).
fn model_after(ops: &[Op], steps: usize) -> Model {
    let mut model =
        Model { bootstrapped: steps > 0, hard_state: HardState::default(), log: vec![], snapshot_index: 0 };
    for op in &ops[..steps.saturating_sub(1)] {
        model.apply(op);
    }
    model
}

#[test]
fn crash_after_every_disk_operation_recovers_exactly_the_acknowledged_state() {
    let ops = workload();
    let total_ops = {
        let disk = SimDisk::new(0);
        assert_eq!(run(&disk, &ops), ops.len() + 1, "the workload runs cleanly without crashes");
        disk.op_count()
    };
    assert!(total_ops > 40, "the workload exercises many disk operations: {total_ops}");
    let started = Instant::now();
    let mut checked = 0;
    let mut torn_or_lost = 0;
    for crash_at in 0..=total_ops {
        for seed in 0..6u64 {
            assert!(started.elapsed() < Duration::from_secs(120), "time bound");
            let disk = SimDisk::new(seed * 1000 + crash_at);
            disk.crash_after_ops(Some(crash_at));
            let acked = run(&disk, &ops);
            disk.crash();
            let context = format!("crash after disk op {crash_at} (seed {seed}), {acked} steps acknowledged");
            let (storage, state) = Storage::open(disk.clone(), options(SEGMENT_BYTES))
                .unwrap_or_else(|e| panic!("{context}: recovery failed: {e}"));
            let before = model_after(&ops, acked);
            let after = model_after(&ops, (acked + 1).min(ops.len() + 1));
            assert!(
                before.matches(&state) || after.matches(&state),
                "{context}: recovered {state:#?}\nexpected {before:#?}\nor {after:#?}"
            );
            torn_or_lost += usize::from(!after.matches(&state));
            // The recovered log must accept writes and keep them across another crash.
            check_writable_after_recovery(storage, state, &disk, &context);
            checked += 1;
        }
    }
    eprintln!("{checked} crash points checked over {total_ops} disk operations; {torn_or_lost} lost the operation in flight");
    assert!(torn_or_lost > 0 && checked > torn_or_lost, "both outcomes occur: {torn_or_lost} of {checked}");
}

fn check_writable_after_recovery(
    mut storage: Storage<SimDisk>,
    state: Option<InitialState>,
    disk: &SimDisk,
    context: &str,
) {
    let Some(state) = state else { return };
    let next = storage.last_index() + 1;
    let term = state.hard_state.term.max(state.entries.last().map_or(0, |e| e.term)) + 1;
    let new_hard_state = hard_state(term, Some(2), state.hard_state.commit);
    storage.write(Some(new_hard_state), &entries(next..=next + 2, term)).expect("write after recovery");
    drop(storage);
    disk.crash();
    let (_storage, again) = reopen(disk.clone(), SEGMENT_BYTES);
    let mut expected = state.entries.clone();
    expected.extend(entries(next..=next + 2, term));
    assert_eq!(again.entries, expected, "{context}: second recovery");
    assert_eq!(again.hard_state, new_hard_state, "{context}: second recovery");
}

#[test]
fn crash_during_recovery_is_recoverable() {
    // Recovery itself writes (it cuts torn tails, removes torn segments and leftovers, fsyncs): cutting
    // the power during those writes must leave a directory that the next recovery still reads correctly.
    let ops = workload();
    let total_ops = {
        let disk = SimDisk::new(0);
        run(&disk, &ops);
        disk.op_count()
    };
    let started = Instant::now();
    for crash_at in (0..=total_ops).step_by(3) {
        for seed in 0..3u64 {
            assert!(started.elapsed() < Duration::from_secs(60), "time bound");
            let disk = SimDisk::new(seed * 7919 + crash_at);
            disk.crash_after_ops(Some(crash_at));
            let acked = run(&disk, &ops);
            disk.crash();
            for recovery_ops in 0..4 {
                disk.crash_after_ops(Some(disk.op_count() + recovery_ops));
                let _ = Storage::open(disk.clone(), options(SEGMENT_BYTES));
                disk.crash();
            }
            let (_storage, state) = Storage::open(disk.clone(), options(SEGMENT_BYTES)).unwrap();
            let before = model_after(&ops, acked);
            let after = model_after(&ops, (acked + 1).min(ops.len() + 1));
            assert!(
                before.matches(&state) || after.matches(&state),
                "crash at {crash_at} seed {seed}: {state:?}"
            );
        }
    }
}
