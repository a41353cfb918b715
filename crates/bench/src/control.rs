//! What every connection shares with the runner: the phase of the run (warm-up, measuring, stopping),
//! the request budget of a `--requests` run, and counters for the progress line.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

const WARMING_UP: u8 = 0;
const MEASURING: u8 = 1;
const STOPPING: u8 = 2;

#[derive(Debug)]
pub struct Control {
    phase: AtomicU8,
    /// Measured requests allowed in all (`--requests`), or none for a timed run.
    budget: Option<u64>,
    claimed: AtomicU64,
    /// Answers received, warm-up included: only for the progress line.
    pub answered: AtomicU64,
    pub errors: AtomicU64,
    /// Connections that returned (failed, or done after the stop): a run whose every connection failed
    /// at once (a wrong port) ends then instead of sitting out its duration.
    ended: AtomicUsize,
}

/// Permission to send one request, and whether its answer counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ticket {
    WarmUp,
    Measured,
}

impl Control {
    pub fn new(budget: Option<u64>) -> Control {
        Control {
            phase: AtomicU8::new(WARMING_UP),
            budget,
            claimed: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ended: AtomicUsize::new(0),
        }
    }

    /// May a connection send one more request? `None` once the run is stopping or the budget is spent.
    /// Whether a request is measured is decided when it is sent, so a request sent in the warm-up never
    /// counts, however late its answer comes.
    pub fn ticket(&self) -> Option<Ticket> {
        match self.phase.load(Ordering::Acquire) {
            WARMING_UP => Some(Ticket::WarmUp),
            MEASURING => match self.budget {
                None => Some(Ticket::Measured),
                Some(budget) if self.claimed.fetch_add(1, Ordering::AcqRel) < budget => {
                    Some(Ticket::Measured)
                }
                Some(_) => {
                    self.stop();
                    None
                }
            },
            _ => None,
        }
    }

    pub fn start_measuring(&self) {
        let _ = self.phase.compare_exchange(WARMING_UP, MEASURING, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn stop(&self) {
        self.phase.store(STOPPING, Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.phase.load(Ordering::Acquire) == STOPPING
    }

    pub fn is_measuring(&self) -> bool {
        self.phase.load(Ordering::Acquire) == MEASURING
    }

    pub fn connection_ended(&self) {
        self.ended.fetch_add(1, Ordering::AcqRel);
    }

    pub fn ended_connections(&self) -> usize {
        self.ended.load(Ordering::Acquire)
    }

    pub fn answered(&self, is_error: bool) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if is_error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_requests_are_free_then_the_budget_counts_measured_ones() {
        let control = Control::new(Some(2));
        assert_eq!(control.ticket(), Some(Ticket::WarmUp));
        assert_eq!(control.ticket(), Some(Ticket::WarmUp));
        control.start_measuring();
        assert_eq!(control.ticket(), Some(Ticket::Measured));
        assert_eq!(control.ticket(), Some(Ticket::Measured));
        assert_eq!(control.ticket(), None);
        assert!(control.is_stopping(), "a spent budget stops the run");
    }

    #[test]
    fn a_timed_run_sends_until_stopped() {
        let control = Control::new(None);
        control.start_measuring();
        assert!((0..1000).all(|_| control.ticket() == Some(Ticket::Measured)));
        control.stop();
        control.start_measuring(); // too late: stopping is final
        assert_eq!(control.ticket(), None);
    }
}
