//! The simulated network: every message between nodes passes through here, and every fault a real network
//! can cause is applied by one seeded RNG — delay (so reordering), loss, duplication, very late delivery,
//! symmetric and one-way partitions, a "bridge" node that sees both sides, and clogged links.
//!
//! Raft must tolerate all of these (§5.1: "RPCs ... may be lost, delayed, duplicated, or reordered"), so the
//! network never guarantees anything except that a message is delivered at most as often as it was
//! duplicated, and never before it was sent.

use std::collections::{BTreeMap, BTreeSet};

use raft::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::swarm::FaultSettings;

/// Microseconds of simulated time since the run began.
pub type TimeUs = u64;

/// The shortest one-way delay: even loopback is not instantaneous, and zero delay would let a reply
/// arrive in the same instant as its request.
const MIN_DELAY_US: TimeUs = 100;
/// A late message arrives up to this long after it was sent: several election timeouts, so that a
/// message from a long-gone term can still arrive.
const MAX_LATE_DELAY_US: TimeUs = 5_000_000;

/// One message on the wire.
#[derive(Clone, Debug)]
pub struct Envelope<M> {
    /// Unique per run, in send order; duplicates carry the id of the original.
    pub id: u64,
    pub from: NodeId,
    pub to: NodeId,
    pub sent_at: TimeUs,
    pub deliver_at: TimeUs,
    pub message: M,
}

/// What became of a message handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// On its way; `copies` is 2 when it was duplicated.
    Queued { id: u64, copies: u8 },
    /// Lost at random.
    Lost { id: u64 },
    /// The link was cut by a partition when it was sent.
    Partitioned { id: u64 },
}

/// Why a queued message was not delivered after all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A partition started while it was in flight.
    Partitioned,
    /// Its receiver was down (crashed) when it arrived.
    ReceiverDown,
}

/// A message taken off the wire: delivered, or dropped on the way.
#[derive(Clone, Debug)]
pub enum Delivery<M> {
    Delivered(Envelope<M>),
    Dropped(Envelope<M>, DropReason),
}

/// The simulated network of one run.
pub struct Network<M> {
    rng: ChaCha8Rng,
    loss: f64,
    duplication: f64,
    late: f64,
    delay_mean_us: u64,
    /// Messages in flight, ordered by delivery time and then by id, so delivery order is a pure function
    /// of the seed.
    in_flight: BTreeMap<(TimeUs, u64), Envelope<M>>,
    /// Directed links that are cut: `(from, to)` in here means nothing from `from` reaches `to`.
    cut_links: BTreeSet<(NodeId, NodeId)>,
    /// Directed links with extra latency until the given time: `(from, to) -> (extra_us, until)`.
    clogged_links: BTreeMap<(NodeId, NodeId), (TimeUs, TimeUs)>,
    next_id: u64,
}

impl<M: Clone> Network<M> {
    pub fn new(settings: &FaultSettings, rng: ChaCha8Rng) -> Self {
        Network {
            rng,
            loss: settings.message_loss,
            duplication: settings.message_duplication,
            late: settings.message_late,
            delay_mean_us: settings.network_delay_mean_us,
            in_flight: BTreeMap::new(),
            cut_links: BTreeSet::new(),
            clogged_links: BTreeMap::new(),
            next_id: 0,
        }
    }

    /// Turns random message faults off (the liveness phase: partitions and clogs are healed separately).
    pub fn stop_message_faults(&mut self) {
        self.loss = 0.0;
        self.duplication = 0.0;
        self.late = 0.0;
    }

    /// Hands a message to the network at time `now`.
    pub fn send(&mut self, now: TimeUs, from: NodeId, to: NodeId, message: M) -> SendOutcome {
        let id = self.next_id;
        self.next_id += 1;
        if self.cut_links.contains(&(from, to)) {
            return SendOutcome::Partitioned { id };
        }
        if self.rng.gen_bool(self.loss) {
            return SendOutcome::Lost { id };
        }
        let copies = if self.rng.gen_bool(self.duplication) { 2 } else { 1 };
        for _ in 0..copies {
            let deliver_at = now + self.draw_delay(now, from, to);
            let envelope = Envelope { id, from, to, sent_at: now, deliver_at, message: message.clone() };
            // The id breaks ties between messages due at the same instant; a duplicate gets a distinct
            // key by taking the next free instant.
            let mut key = (deliver_at, id);
            while self.in_flight.contains_key(&key) {
                key.0 += 1;
            }
            self.in_flight.insert(key, envelope);
        }
        SendOutcome::Queued { id, copies }
    }

    fn draw_delay(&mut self, now: TimeUs, from: NodeId, to: NodeId) -> TimeUs {
        if self.rng.gen_bool(self.late) {
            return self.rng.gen_range(MIN_DELAY_US..=MAX_LATE_DELAY_US);
        }
        // Exponential around the mean: most messages are quick, a few are slow, and so they reorder.
        let uniform: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let exponential = (-uniform.ln() * self.delay_mean_us as f64) as TimeUs;
        let clog = match self.clogged_links.get(&(from, to)) {
            Some(&(extra_us, until)) if until > now => extra_us,
            _ => 0,
        };
        MIN_DELAY_US + exponential.min(MAX_LATE_DELAY_US) + clog
    }

    /// The time of the next message due, if any.
    pub fn next_delivery_at(&self) -> Option<TimeUs> {
        self.in_flight.keys().next().map(|&(at, _)| at)
    }

    /// Takes the next message due at or before `now`. A message whose link was cut while it was in flight
    /// comes back as `Dropped`, so the caller can record the drop.
    pub fn take_due(&mut self, now: TimeUs) -> Option<Delivery<M>> {
        let (&key, _) = self.in_flight.iter().next().filter(|(&(at, _), _)| at <= now)?;
        let envelope = self.in_flight.remove(&key).expect("key was just read");
        if self.cut_links.contains(&(envelope.from, envelope.to)) {
            return Some(Delivery::Dropped(envelope, DropReason::Partitioned));
        }
        Some(Delivery::Delivered(envelope))
    }

    /// Number of messages in flight.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, side_a: &[NodeId], side_b: &[NodeId]) {
        for &a in side_a {
            for &b in side_b {
                self.cut_links.insert((a, b));
                self.cut_links.insert((b, a));
            }
        }
    }

    /// Cuts one direction only: `from` can no longer reach `to`, but `to` still reaches `from`.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut_links.insert((from, to));
    }

    /// Splits `nodes` into two sides that cannot talk, except through `bridge`, which reaches both
    /// (the partition that made several Raft implementations elect two leaders in one term in Jepsen).
    pub fn bridge(&mut self, side_a: &[NodeId], bridge: NodeId, side_b: &[NodeId]) {
        let side_a: Vec<NodeId> = side_a.iter().copied().filter(|&n| n != bridge).collect();
        let side_b: Vec<NodeId> = side_b.iter().copied().filter(|&n| n != bridge).collect();
        self.partition(&side_a, &side_b);
    }

    /// Adds `extra_us` latency to the link `from → to` until `until`.
    pub fn clog(&mut self, from: NodeId, to: NodeId, extra_us: TimeUs, until: TimeUs) {
        self.clogged_links.insert((from, to), (extra_us, until));
    }

    /// Restores every link: no cuts, no clogs.
    pub fn heal(&mut self) {
        self.cut_links.clear();
        self.clogged_links.clear();
    }

    /// True if no link is cut.
    pub fn is_healed(&self) -> bool {
        self.cut_links.is_empty()
    }

    /// The directed links that are cut, for the trace.
    pub fn cut_links(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.cut_links.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::derive_rng;

    fn network(settings: FaultSettings) -> Network<u32> {
        Network::new(&settings, derive_rng(1, "network", 0))
    }

    fn drain(net: &mut Network<u32>) -> Vec<Envelope<u32>> {
        let mut delivered = Vec::new();
        for _ in 0..100_000 {
            let Some(at) = net.next_delivery_at() else { break };
            if let Some(Delivery::Delivered(envelope)) = net.take_due(at) {
                delivered.push(envelope);
            }
        }
        delivered
    }

    #[test]
    fn calm_network_delivers_everything_once_never_before_it_was_sent() {
        let mut net = network(FaultSettings::calm());
        for i in 0..100 {
            net.send(i * 10, 1, 2, i as u32);
        }
        let delivered = drain(&mut net);
        assert_eq!(delivered.len(), 100);
        assert!(delivered.iter().all(|e| e.deliver_at > e.sent_at));
        let mut payloads: Vec<u32> = delivered.iter().map(|e| e.message).collect();
        payloads.sort();
        assert_eq!(payloads, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn random_delays_reorder_messages() {
        let mut net = network(FaultSettings { network_delay_mean_us: 10_000, ..FaultSettings::calm() });
        for i in 0..100 {
            net.send(0, 1, 2, i);
        }
        let order: Vec<u32> = drain(&mut net).iter().map(|e| e.message).collect();
        assert_ne!(order, (0..100).collect::<Vec<_>>(), "a mean delay of 10 ms must reorder something");
    }

    #[test]
    fn partition_cuts_both_ways_and_drops_messages_in_flight() {
        let mut net = network(FaultSettings::calm());
        net.send(0, 1, 3, 1);
        net.partition(&[1, 2], &[3]);
        assert!(matches!(net.send(0, 3, 1, 2), SendOutcome::Partitioned { .. }));
        assert!(matches!(net.send(0, 1, 2, 3), SendOutcome::Queued { .. }));
        let at = net.next_delivery_at().unwrap();
        let results: Vec<_> = std::iter::from_fn(|| net.take_due(at + 10_000_000)).collect();
        assert_eq!(
            results.iter().filter(|r| matches!(r, Delivery::Dropped(..))).count(),
            1,
            "the in-flight 1→3 is dropped"
        );
        assert_eq!(
            results.iter().filter(|r| matches!(r, Delivery::Delivered(_))).count(),
            1,
            "1→2 is delivered"
        );
        net.heal();
        assert!(matches!(net.send(0, 3, 1, 4), SendOutcome::Queued { .. }));
    }

    #[test]
    fn one_way_cut_blocks_only_one_direction() {
        let mut net = network(FaultSettings::calm());
        net.cut_one_way(1, 2);
        assert!(matches!(net.send(0, 1, 2, 0), SendOutcome::Partitioned { .. }));
        assert!(matches!(net.send(0, 2, 1, 0), SendOutcome::Queued { .. }));
    }

    #[test]
    fn bridge_node_reaches_both_sides_which_cannot_reach_each_other() {
        let mut net = network(FaultSettings::calm());
        net.bridge(&[1, 2, 3], 3, &[3, 4, 5]);
        assert!(matches!(net.send(0, 1, 4, 0), SendOutcome::Partitioned { .. }));
        for (from, to) in [(3, 1), (1, 3), (3, 5), (5, 3)] {
            assert!(matches!(net.send(0, from, to, 0), SendOutcome::Queued { .. }));
        }
    }

    #[test]
    fn loss_and_duplication_happen_at_roughly_their_rates() {
        let mut net =
            network(FaultSettings { message_loss: 0.2, message_duplication: 0.1, ..FaultSettings::calm() });
        let outcomes: Vec<SendOutcome> = (0..10_000).map(|i| net.send(0, 1, 2, i)).collect();
        let lost = outcomes.iter().filter(|o| matches!(o, SendOutcome::Lost { .. })).count();
        let duplicated =
            outcomes.iter().filter(|o| matches!(o, SendOutcome::Queued { copies: 2, .. })).count();
        assert!((1_500..2_500).contains(&lost), "lost {lost} of 10000 at rate 0.2");
        assert!((500..1_100).contains(&duplicated), "duplicated {duplicated} of ~8000 at rate 0.1");
        assert_eq!(drain(&mut net).len(), 10_000 - lost + duplicated);
    }

    #[test]
    fn clogged_link_adds_latency_until_it_clears() {
        let mut net = network(FaultSettings::calm());
        net.clog(1, 2, 1_000_000, 500);
        net.send(0, 1, 2, 0);
        assert!(net.next_delivery_at().unwrap() >= 1_000_000);
        let mut later = network(FaultSettings::calm());
        later.clog(1, 2, 1_000_000, 500);
        later.send(600, 1, 2, 0);
        assert!(later.next_delivery_at().unwrap() < 1_000_000, "the clog cleared at 500 µs");
    }
}
