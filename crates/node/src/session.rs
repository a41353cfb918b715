//! The node's own client session (dissertation §6.3).
//!
//! RESP clients carry no request ids, so the node itself is the "client" of the replicated state machine:
//! it opens one session per life (client id = node id, persisted incarnation, counter) and numbers every
//! command it proposes or forwards. A retry the node makes — re-proposing after a leader change, or
//! forwarding again after a timeout — reuses the command's sequence number, so the state machine applies it
//! at most once and answers the retry from its reply cache.
//!
//! `lowest_unacked` tells the state machine which cached replies it may forget: every sequence number
//! below it has been answered to the node.

use std::collections::BTreeSet;

use kv::{ClientId, SessionRef};

/// Whether the state machine knows the session yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Nothing proposed yet; commands wait.
    Unregistered,
    /// A registration entry was sent at `sent_tick`; commands wait until it applies. If it is lost, it is
    /// sent again after the retry interval (registering twice is harmless: it only refreshes the session).
    Registering { sent_tick: u64 },
    /// The state machine applied the registration: commands may flow.
    Open,
}

/// The node's session and its sequence numbers.
#[derive(Debug)]
pub struct OwnSession {
    client_id: ClientId,
    state: SessionState,
    next_sequence: u64,
    /// Sequence numbers handed out and not yet answered.
    outstanding: BTreeSet<u64>,
}

impl OwnSession {
    pub fn new(node_id: u64, incarnation: u64) -> Self {
        OwnSession {
            client_id: ClientId { node_id, incarnation, counter: 1 },
            state: SessionState::Unregistered,
            next_sequence: 1,
            outstanding: BTreeSet::new(),
        }
    }

    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn set_state(&mut self, state: SessionState) {
        self.state = state;
    }

    /// True when a registration should be sent now: none was sent, or the last one is `retry_ticks` old.
    pub fn registration_due(&self, now_tick: u64, retry_ticks: u64) -> bool {
        match self.state {
            SessionState::Unregistered => true,
            SessionState::Registering { sent_tick } => sent_tick + retry_ticks <= now_tick,
            SessionState::Open => false,
        }
    }

    /// Allocates the next sequence number.
    pub fn allocate(&mut self) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.outstanding.insert(sequence);
        sequence
    }

    /// The session reference for (re)sending `sequence`, with the current acknowledgement watermark.
    pub fn reference(&self, sequence: u64) -> SessionRef {
        let lowest_unacked = self.outstanding.first().copied().unwrap_or(self.next_sequence);
        SessionRef { client_id: self.client_id, sequence, lowest_unacked }
    }

    /// The reply for `sequence` reached the node; the state machine may forget it from now on.
    pub fn answered(&mut self, sequence: u64) {
        self.outstanding.remove(&sequence);
    }

    /// The state machine no longer knows the session (it expired while the node was quiet). A command it
    /// rejected for that reason was certainly not applied, so the node opens a fresh session — a new
    /// counter, so the id was never used before — and resends those commands under new numbers.
    pub fn renew(&mut self) {
        self.client_id.counter += 1;
        self.state = SessionState::Unregistered;
        self.next_sequence = 1;
        self.outstanding.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_the_lowest_unanswered_sequence() {
        let mut session = OwnSession::new(3, 7);
        let (a, b, c) = (session.allocate(), session.allocate(), session.allocate());
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(session.reference(c).lowest_unacked, 1);
        session.answered(a);
        session.answered(c);
        assert_eq!(session.reference(b).lowest_unacked, 2, "2 is still unanswered");
        session.answered(b);
        assert_eq!(session.reference(4).lowest_unacked, 4);
    }

    #[test]
    fn renewal_never_reuses_a_client_id() {
        let mut session = OwnSession::new(3, 7);
        let first = session.client_id();
        session.allocate();
        session.renew();
        assert_ne!(session.client_id(), first);
        assert_eq!(session.allocate(), 1);
        assert_eq!(session.state(), SessionState::Unregistered);
    }

    #[test]
    fn a_registration_is_due_again_after_the_retry_interval() {
        let mut session = OwnSession::new(1, 1);
        assert!(session.registration_due(0, 10));
        session.set_state(SessionState::Registering { sent_tick: 5 });
        assert!(!session.registration_due(14, 10));
        assert!(session.registration_due(15, 10));
        session.set_state(SessionState::Open);
        assert!(!session.registration_due(100, 10));
    }
}
