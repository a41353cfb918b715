//! "Swarm" fault settings: every seed draws its own fault rates (TigerBeetle's VOPR, and "Swarm Testing",
//! Groce et al. 2012). A fixed mix of faults tests one corner of the space over and over; drawing the mix
//! per seed makes some runs calm and some brutal, and turns whole fault classes off now and then, which is
//! what exposes bugs that one fault class would otherwise mask.
//!
//! Rule: each fault class is off in at least 10% of seeds and at its maximum in at least 10% of seeds
//! (`draw_level` gives 15% and 15%). The settings are printed first in every run, so a report can say
//! which faults a failing seed had.

use std::fmt;

use rand::Rng;
use serde::Serialize;

use crate::seed::derive_rng;

/// How intense one fault class is in one run: 0.0 is off, 1.0 is the class's maximum.
fn draw_level(rng: &mut impl Rng) -> f64 {
    let roll: f64 = rng.gen();
    if roll < 0.15 {
        0.0
    } else if roll >= 0.85 {
        1.0
    } else {
        rng.gen()
    }
}

/// The fault rates of one run. Probabilities are per message or per simulated millisecond, as named.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultSettings {
    /// Probability that a message is lost.
    pub message_loss: f64,
    /// Probability that a message is delivered twice.
    pub message_duplication: f64,
    /// Probability that a message is delayed far beyond the usual (very late delivery, deep reordering).
    pub message_late: f64,
    /// Mean one-way network delay, microseconds (exponential around a 100 µs floor; reorders messages).
    pub network_delay_mean_us: u64,
    /// Probability per simulated millisecond that a partition starts (symmetric, one-way or bridge).
    pub partition_per_ms: f64,
    /// Probability per simulated millisecond that a link gets clogged (extra latency for a while).
    pub clog_per_ms: f64,
    /// Probability per simulated millisecond that a running node crashes (unsynced disk data is lost or
    /// torn page by page).
    pub crash_per_ms: f64,
    /// Probability per simulated millisecond that a running node is paused (stops ticking and receiving).
    pub pause_per_ms: f64,
    /// Maximum relative clock-rate drift between nodes (0.05 = a node's clock may run 5% fast or slow).
    pub clock_drift: f64,
    /// On a crash, the chance that each unsynced 4 KiB page is lost (1.0: nothing unsynced survives).
    pub disk_page_loss: f64,
    /// On a crash, the chance that an unsynced page that does reach the disk is torn (a prefix of its
    /// sectors written).
    pub disk_torn_page: f64,
    /// At most this many entries in one AppendEntries (the core's `max_entries_per_message`). Not a fault
    /// but a setting drawn like one: with the default, a leader catches a follower up in one message
    /// that ends with its own term's entries; small batches make it count acknowledgements of earlier
    /// terms' entries alone, the path the commitment rule of §5.4.2 (Figure 8) guards.
    pub max_entries_per_message: usize,
    /// Probability that a node that wins an election fails within [`LEADER_CRASH_WITHIN_US`]: half of the
    /// time it crashes (half of those a power loss in the middle of a step), half of the time it is cut
    /// off from everyone, which also drops what it had in flight. Jepsen's "kill the primary": random
    /// faults rarely hit a leader in its first heartbeats, yet that is where Figure 8 (§5.4.2) lives, a
    /// leader that replicated an earlier term's entry to a majority and failed before its own term's
    /// entry got there.
    pub leader_crash: f64,
    /// Each node snapshots its state machine and compacts its log every this many applied entries (0:
    /// never). Not a fault but drawn like one: low thresholds put snapshots, compaction and
    /// InstallSnapshot at random points under every other fault (a crash mid-write or mid-install too).
    pub snapshot_threshold_entries: u64,
    /// The largest InstallSnapshot chunk. Not drawn (every seed keeps the core's default, larger than any
    /// simulated snapshot, so one chunk carries it); scenarios lower it to stream a snapshot in many
    /// chunks and stop a transfer in the middle.
    pub snapshot_chunk_bytes: usize,
    /// How often the cluster's membership changes (0: never; 1: a new target configuration or a
    /// leadership transfer every [`crate::membership::MIN_MEAN_CHANGE_GAP_US`] on average). With it on,
    /// the cluster may start smaller than the simulated nodes, and the liveness phase must end in a
    /// configuration drawn for it.
    pub membership_changes: f64,
}

/// A crashed new leader dies at most this long after taking office: three ticks, a few heartbeats.
pub const LEADER_CRASH_WITHIN_US: u64 = 30_000;

impl FaultSettings {
    /// The maxima: chosen so that the worst seeds are brutal but a majority still makes progress often
    /// enough for the liveness phase to mean something.
    const MAX_MESSAGE_LOSS: f64 = 0.30;
    /// The core's own default chunk size.
    pub const DEFAULT_SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
    const MAX_MESSAGE_DUPLICATION: f64 = 0.10;
    const MAX_MESSAGE_LATE: f64 = 0.05;
    const MAX_NETWORK_DELAY_MEAN_US: f64 = 20_000.0;
    const MAX_PARTITION_PER_MS: f64 = 0.002;
    const MAX_CLOG_PER_MS: f64 = 0.002;
    const MAX_CRASH_PER_MS: f64 = 0.000_5;
    const MAX_PAUSE_PER_MS: f64 = 0.000_5;
    const MAX_CLOCK_DRIFT: f64 = 0.10;
    const MAX_DISK_PAGE_LOSS: f64 = 1.0;
    const MAX_DISK_TORN_PAGE: f64 = 0.5;
    /// The core's default batch; "off" for the batch-limit class, whose maximum is one entry per message.
    const DEFAULT_MAX_ENTRIES_PER_MESSAGE: usize = 256;
    const MAX_LEADER_CRASH: f64 = 0.9;
    /// The snapshot class: at its maximum a snapshot every this many entries, the highest threshold is
    /// `SNAPSHOT_THRESHOLD_RANGE` times that (log-uniform in between); off means never.
    const MIN_SNAPSHOT_THRESHOLD_ENTRIES: f64 = 5.0;
    const SNAPSHOT_THRESHOLD_RANGE: f64 = 200.0;

    /// Draws the settings of run `seed` from their own random stream.
    pub fn draw(seed: u64) -> Self {
        let mut rng = derive_rng(seed, "swarm", 0);
        FaultSettings {
            message_loss: draw_level(&mut rng) * Self::MAX_MESSAGE_LOSS,
            message_duplication: draw_level(&mut rng) * Self::MAX_MESSAGE_DUPLICATION,
            message_late: draw_level(&mut rng) * Self::MAX_MESSAGE_LATE,
            network_delay_mean_us: (draw_level(&mut rng) * Self::MAX_NETWORK_DELAY_MEAN_US) as u64,
            partition_per_ms: draw_level(&mut rng) * Self::MAX_PARTITION_PER_MS,
            clog_per_ms: draw_level(&mut rng) * Self::MAX_CLOG_PER_MS,
            crash_per_ms: draw_level(&mut rng) * Self::MAX_CRASH_PER_MS,
            pause_per_ms: draw_level(&mut rng) * Self::MAX_PAUSE_PER_MS,
            clock_drift: draw_level(&mut rng) * Self::MAX_CLOCK_DRIFT,
            disk_page_loss: draw_level(&mut rng) * Self::MAX_DISK_PAGE_LOSS,
            disk_torn_page: draw_level(&mut rng) * Self::MAX_DISK_TORN_PAGE,
            // Log-uniform from the default (level 0) down to one entry per message (level 1).
            max_entries_per_message: (Self::DEFAULT_MAX_ENTRIES_PER_MESSAGE as f64)
                .powf(1.0 - draw_level(&mut rng))
                .round() as usize,
            // Drawn last, so that adding it left every other class's draw of every seed as it was.
            leader_crash: draw_level(&mut rng) * Self::MAX_LEADER_CRASH,
            // Drawn last for the same reason.
            snapshot_threshold_entries: Self::snapshot_threshold(draw_level(&mut rng)),
            snapshot_chunk_bytes: Self::DEFAULT_SNAPSHOT_CHUNK_BYTES,
            // Drawn last for the same reason: with it off, a seed runs exactly as before it existed.
            membership_changes: draw_level(&mut rng),
        }
    }

    /// Level 0 is off; above it, log-uniform from 1,000 entries down to 5 at level 1.
    fn snapshot_threshold(level: f64) -> u64 {
        if level == 0.0 {
            return 0;
        }
        (Self::MIN_SNAPSHOT_THRESHOLD_ENTRIES * Self::SNAPSHOT_THRESHOLD_RANGE.powf(1.0 - level)).round()
            as u64
    }

    /// No faults at all: a perfect network, no crashes. Named scenarios start here and add what they test.
    pub fn calm() -> Self {
        FaultSettings {
            message_loss: 0.0,
            message_duplication: 0.0,
            message_late: 0.0,
            network_delay_mean_us: 500,
            partition_per_ms: 0.0,
            clog_per_ms: 0.0,
            crash_per_ms: 0.0,
            pause_per_ms: 0.0,
            clock_drift: 0.0,
            disk_page_loss: 0.5,
            disk_torn_page: 0.25,
            max_entries_per_message: Self::DEFAULT_MAX_ENTRIES_PER_MESSAGE,
            leader_crash: 0.0,
            snapshot_threshold_entries: 0,
            snapshot_chunk_bytes: Self::DEFAULT_SNAPSHOT_CHUNK_BYTES,
            membership_changes: 0.0,
        }
    }
}

impl fmt::Display for FaultSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss={:.3} dup={:.3} late={:.3} delay_mean={}us partition/ms={:.5} clog/ms={:.5} \
             crash/ms={:.5} pause/ms={:.5} drift={:.3} disk_loss={:.2} disk_torn={:.2} batch={} \
             leader_crash={:.2} snapshot_every={} membership={:.2}",
            self.message_loss,
            self.message_duplication,
            self.message_late,
            self.network_delay_mean_us,
            self.partition_per_ms,
            self.clog_per_ms,
            self.crash_per_ms,
            self.pause_per_ms,
            self.clock_drift,
            self.disk_page_loss,
            self.disk_torn_page,
            self.max_entries_per_message,
            self.leader_crash,
            self.snapshot_threshold_entries,
            self.membership_changes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The swarm rule itself: over many seeds, every class is off in ≥ 10% and at its maximum in ≥ 10%.
    #[test]
    fn every_fault_class_is_off_and_at_maximum_in_at_least_ten_percent_of_seeds() {
        const SEEDS: u64 = 2_000;
        let all: Vec<FaultSettings> = (0..SEEDS).map(FaultSettings::draw).collect();
        type FaultClass = (&'static str, fn(&FaultSettings) -> f64, f64);
        let classes: [FaultClass; 13] = [
            ("loss", |s| s.message_loss, FaultSettings::MAX_MESSAGE_LOSS),
            ("dup", |s| s.message_duplication, FaultSettings::MAX_MESSAGE_DUPLICATION),
            ("late", |s| s.message_late, FaultSettings::MAX_MESSAGE_LATE),
            ("delay", |s| s.network_delay_mean_us as f64, FaultSettings::MAX_NETWORK_DELAY_MEAN_US),
            ("partition", |s| s.partition_per_ms, FaultSettings::MAX_PARTITION_PER_MS),
            ("clog", |s| s.clog_per_ms, FaultSettings::MAX_CLOG_PER_MS),
            ("crash", |s| s.crash_per_ms, FaultSettings::MAX_CRASH_PER_MS),
            ("pause", |s| s.pause_per_ms, FaultSettings::MAX_PAUSE_PER_MS),
            ("drift", |s| s.clock_drift, FaultSettings::MAX_CLOCK_DRIFT),
            ("disk_loss", |s| s.disk_page_loss, FaultSettings::MAX_DISK_PAGE_LOSS),
            ("disk_torn", |s| s.disk_torn_page, FaultSettings::MAX_DISK_TORN_PAGE),
            ("leader_crash", |s| s.leader_crash, FaultSettings::MAX_LEADER_CRASH),
            ("membership", |s| s.membership_changes, 1.0),
        ];
        for (name, level, max) in classes {
            let off = all.iter().filter(|s| level(s) == 0.0).count() as u64;
            let at_max = all.iter().filter(|s| level(s) >= max).count() as u64;
            assert!(off * 10 >= SEEDS, "{name} off in only {off} of {SEEDS} seeds");
            assert!(at_max * 10 >= SEEDS, "{name} at maximum in only {at_max} of {SEEDS} seeds");
        }
        let batches: Vec<usize> = all.iter().map(|s| s.max_entries_per_message).collect();
        let default = FaultSettings::DEFAULT_MAX_ENTRIES_PER_MESSAGE;
        assert!(batches.iter().all(|&b| (1..=default).contains(&b)));
        let off = batches.iter().filter(|&&b| b == default).count() as u64;
        let at_max = batches.iter().filter(|&&b| b == 1).count() as u64;
        assert!(off * 10 >= SEEDS, "batch limit off in only {off} of {SEEDS} seeds");
        assert!(at_max * 10 >= SEEDS, "one entry per message in only {at_max} of {SEEDS} seeds");
        let thresholds: Vec<u64> = all.iter().map(|s| s.snapshot_threshold_entries).collect();
        let off = thresholds.iter().filter(|&&t| t == 0).count() as u64;
        let at_max = thresholds.iter().filter(|&&t| t == 5).count() as u64;
        assert!(thresholds.iter().all(|&t| t == 0 || (5..=1_000).contains(&t)));
        assert!(off * 10 >= SEEDS, "snapshots off in only {off} of {SEEDS} seeds");
        assert!(at_max * 10 >= SEEDS, "a snapshot every 5 entries in only {at_max} of {SEEDS} seeds");
    }

    #[test]
    fn the_same_seed_draws_the_same_settings() {
        assert_eq!(FaultSettings::draw(42), FaultSettings::draw(42));
        assert_ne!(FaultSettings::draw(42), FaultSettings::draw(43));
    }
}
