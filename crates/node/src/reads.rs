//! Linearizable reads in flight (ReadIndex, Raft paper §8 and dissertation §6.4).
//!
//! A read is safe once (1) some leader has confirmed, after the read arrived, that it was still leader,
//! yielding a *read index* — its commit index at that moment — and (2) this node's state machine has
//! applied up to that index. The leader does (1) for its own reads and for followers that ask; a follower
//! then does (2) itself and serves the read from its own state machine, which spreads read load.
//!
//! Reads batch: every read that arrives before the node next talks to the core shares one `ctx`, and so
//! one confirmation round (the core batches rounds further).

use std::collections::BTreeMap;

use kv::Command;
use raft::{Index, NodeId};

use crate::pending::ClientToken;

/// One client read.
#[derive(Clone, Debug)]
pub struct Read {
    pub token: ClientToken,
    pub command: Command,
    pub deadline_tick: u64,
}

/// A batch of reads that asked for a read index under one `ctx`.
#[derive(Clone, Debug)]
struct Batch {
    reads: Vec<Read>,
    asked_tick: u64,
    /// Only this node's answer counts: a late answer from anyone else is about another question.
    asked: NodeId,
}

/// Reads by stage: not yet asked, asked (by ctx), confirmed (waiting for apply, by read index).
///
/// A `ctx` is never reused, not even by a later life of the node: an answer can arrive arbitrarily late
/// (the network may delay it for seconds), and an old answer matched to a new question would serve a read
/// at an index from before the read arrived — a stale read. The simulator found exactly that (seed 141).
#[derive(Debug)]
pub struct PendingReads {
    unasked: Vec<Read>,
    /// Reads whose batch failed: asked again at the next tick, not at once (a node with a stale idea of
    /// the leader would otherwise ping-pong with it).
    retry_next_tick: Vec<Read>,
    asked: BTreeMap<u64, Batch>,
    confirmed: BTreeMap<Index, Vec<Read>>,
    next_ctx: u64,
}

impl PendingReads {
    /// Reads of one life of a node: `incarnation` makes its ctx numbers distinct from every other life's.
    pub fn new(incarnation: u64) -> Self {
        PendingReads {
            unasked: Vec::new(),
            retry_next_tick: Vec::new(),
            asked: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            next_ctx: incarnation << 32,
        }
    }

    pub fn push(&mut self, read: Read) {
        self.unasked.push(read);
    }

    pub fn is_empty(&self) -> bool {
        self.unasked.is_empty()
            && self.retry_next_tick.is_empty()
            && self.asked.is_empty()
            && self.confirmed.is_empty()
    }

    /// A tick passed: failed reads may be asked for again.
    pub fn on_tick(&mut self) {
        self.unasked.append(&mut self.retry_next_tick);
    }

    /// If reads wait to be asked for, groups them under a fresh ctx, to be asked of `leader`, and returns
    /// the ctx.
    pub fn start_batch(&mut self, now_tick: u64, leader: NodeId) -> Option<u64> {
        if self.unasked.is_empty() {
            return None;
        }
        self.next_ctx += 1;
        let ctx = self.next_ctx;
        let batch = Batch { reads: std::mem::take(&mut self.unasked), asked_tick: now_tick, asked: leader };
        self.asked.insert(ctx, batch);
        Some(ctx)
    }

    /// `from` confirmed `ctx` at `index`. Ignored unless `from` is the node that was asked. Returns how
    /// many reads that confirmed.
    pub fn confirm(&mut self, ctx: u64, index: Index, from: NodeId) -> usize {
        if self.asked.get(&ctx).is_none_or(|batch| batch.asked != from) {
            return 0;
        }
        let batch = self.asked.remove(&ctx).expect("just looked up");
        let count = batch.reads.len();
        self.confirmed.entry(index).or_default().extend(batch.reads);
        count
    }

    /// `from` could not confirm `ctx` (not leader, stepped down): its reads are asked again at the next
    /// tick. Ignored unless `from` is the node that was asked.
    pub fn retry(&mut self, ctx: u64, from: NodeId) {
        if self.asked.get(&ctx).is_some_and(|batch| batch.asked == from) {
            self.give_up_on(ctx);
        }
    }

    /// Asks again, at the next tick, for the reads of `ctx` (no answer came in time).
    pub fn give_up_on(&mut self, ctx: u64) {
        if let Some(batch) = self.asked.remove(&ctx) {
            self.retry_next_tick.extend(batch.reads);
        }
    }

    /// Batches asked at least `retry_ticks` ago with no answer (the request or its answer was lost).
    pub fn stale_batches(&self, now_tick: u64, retry_ticks: u64) -> Vec<u64> {
        self.asked
            .iter()
            .filter(|(_, b)| b.asked_tick + retry_ticks <= now_tick)
            .map(|(&ctx, _)| ctx)
            .collect()
    }

    /// Reads whose read index the state machine has reached.
    pub fn take_servable(&mut self, applied_index: Index) -> Vec<Read> {
        let later = self.confirmed.split_off(&(applied_index + 1));
        let servable = std::mem::replace(&mut self.confirmed, later);
        servable.into_values().flatten().collect()
    }

    /// Removes and returns every read whose deadline passed, wherever it stands.
    pub fn take_expired(&mut self, now_tick: u64) -> Vec<Read> {
        let mut expired = Vec::new();
        let mut split = |reads: &mut Vec<Read>| {
            let (gone, kept): (Vec<Read>, Vec<Read>) =
                std::mem::take(reads).into_iter().partition(|r| r.deadline_tick <= now_tick);
            *reads = kept;
            expired.extend(gone);
        };
        split(&mut self.unasked);
        split(&mut self.retry_next_tick);
        self.asked.values_mut().for_each(|b| split(&mut b.reads));
        self.confirmed.values_mut().for_each(&mut split);
        self.asked.retain(|_, b| !b.reads.is_empty());
        self.confirmed.retain(|_, reads| !reads.is_empty());
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn read(token: ClientToken, deadline_tick: u64) -> Read {
        Read { token, command: Command::Get { key: Bytes::from_static(b"k") }, deadline_tick }
    }

    fn tokens(reads: &[Read]) -> Vec<ClientToken> {
        reads.iter().map(|r| r.token).collect()
    }

    const LEADER: NodeId = 3;

    #[test]
    fn reads_arriving_together_share_one_ctx_and_wait_for_apply() {
        let mut reads = PendingReads::new(1);
        reads.push(read(1, 100));
        reads.push(read(2, 100));
        let ctx = reads.start_batch(0, LEADER).unwrap();
        assert_eq!(reads.start_batch(0, LEADER), None, "nothing new to ask for");
        reads.push(read(3, 100));
        let second = reads.start_batch(1, LEADER).unwrap();
        assert_ne!(ctx, second);
        reads.confirm(ctx, 5, LEADER);
        reads.confirm(second, 7, LEADER);
        assert!(tokens(&reads.take_servable(4)).is_empty());
        assert_eq!(tokens(&reads.take_servable(6)), vec![1, 2]);
        assert_eq!(tokens(&reads.take_servable(7)), vec![3]);
        assert!(reads.is_empty());
    }

    #[test]
    fn a_failed_or_unanswered_batch_is_asked_again_under_a_new_ctx() {
        let mut reads = PendingReads::new(1);
        reads.push(read(1, 100));
        let ctx = reads.start_batch(0, LEADER).unwrap();
        assert_eq!(reads.stale_batches(9, 10), Vec::<u64>::new());
        assert_eq!(reads.stale_batches(10, 10), vec![ctx]);
        reads.retry(ctx, LEADER);
        reads.confirm(ctx, 3, LEADER);
        assert!(reads.take_servable(100).is_empty(), "a retried ctx is forgotten");
        assert_eq!(reads.start_batch(10, LEADER), None, "not asked again before the next tick");
        reads.on_tick();
        let again = reads.start_batch(10, LEADER).unwrap();
        assert_ne!(again, ctx);
    }

    /// Seed 141's bug: an answer sent seconds earlier, to a previous life of the node or by a node that was
    /// not asked, must never confirm a new batch.
    #[test]
    fn late_answers_from_another_life_or_another_node_confirm_nothing() {
        let mut first_life = PendingReads::new(1);
        first_life.push(read(1, 100));
        let old_ctx = first_life.start_batch(0, 2).unwrap();
        let mut second_life = PendingReads::new(2);
        second_life.push(read(2, 100));
        let new_ctx = second_life.start_batch(0, LEADER).unwrap();
        assert_ne!(old_ctx, new_ctx, "ctx numbers are never reused across lives");
        second_life.confirm(new_ctx, 1, 2);
        assert!(second_life.take_servable(100).is_empty(), "node 2 was not asked");
        second_life.retry(new_ctx, 2);
        assert!(second_life.stale_batches(0, 0).contains(&new_ctx), "a retry from node 2 is ignored too");
        second_life.confirm(new_ctx, 9, LEADER);
        assert_eq!(tokens(&second_life.take_servable(9)), vec![2]);
    }

    #[test]
    fn expired_reads_are_taken_from_every_stage() {
        let mut reads = PendingReads::new(1);
        reads.push(read(1, 5));
        reads.start_batch(0, LEADER);
        reads.push(read(2, 5));
        reads.push(read(3, 50));
        assert_eq!(tokens(&reads.take_expired(5)), vec![2, 1]);
        assert!(!reads.is_empty());
    }
}
