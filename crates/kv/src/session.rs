//! Client sessions (dissertation §6.3): how a command that the servers propose more than once applies at
//! most once.
//!
//! # Rules
//! - A session is opened by a `RegisterSession` entry in the log, never implicitly, so every replica
//!   agrees on which sessions exist. Registering an open session only refreshes it.
//! - Each command of a session carries its sequence number and the client's acknowledgement watermark
//!   (`lowest_unacked`). The session keeps the reply of every applied sequence at or above the watermark,
//!   not just the last one, because a pipelining client has many commands in flight.
//! - A command whose sequence has a cached reply is not applied again: the cached reply is returned.
//! - A command whose sequence is below the watermark is refused (`SEQUENCE_DISCARDED`) and not applied:
//!   its reply was delivered, or evicted, and it may have applied already.
//! - A command for a session that does not exist — never registered, expired or evicted — is refused
//!   (`SESSION_EXPIRED`) and not applied, whatever its sequence.
//! - A session expires when no entry of it (registration or command) has been applied for
//!   `session_timeout_ms` of leader-stamped time. Time comes from the log, never from a local clock.
//! - Bounds: at most `max_sessions` sessions (registering one more evicts the least recently active,
//!   ties broken by client id), at most `max_replies_per_session` cached replies (one more evicts the
//!   lowest sequence and raises the watermark past it). A proposer should keep fewer commands in flight per
//!   session than that bound, or some of its retries will be refused rather than answered.
//!
//! # What sessions do not do
//! RESP has no request ids. A Redis client that times out and re-sends `INCR` itself sends a new command,
//! which gets a new sequence number and applies again. Sessions protect the servers' own retries
//! (re-proposal after a leader change, forwarding retries), not a client's.

use imbl::{OrdMap, OrdSet};

use crate::reply::{errors, Reply};
use crate::request::{ClientId, SessionRef};

/// One open session.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Session {
    /// Leader time of the last entry of this session that was applied.
    pub last_active_ms: u64,
    /// Replies below this sequence are forgotten; commands below it are refused.
    pub lowest_unacked: u64,
    /// sequence → reply. Invariant: every key is ≥ `lowest_unacked`.
    pub replies: OrdMap<u64, Reply>,
}

/// What to do with a session's command.
pub(crate) enum Admission {
    /// New sequence: apply it, then `record` the reply.
    Apply,
    /// Already applied: answer this, apply nothing.
    Answer(Reply),
}

/// Every open session, with an index by activity for expiry and eviction. Both maps are persistent, so a
/// snapshot is an O(1) clone.
#[derive(Clone, Default, Debug)]
pub(crate) struct Sessions {
    by_client: OrdMap<ClientId, Session>,
    /// (last_active_ms, client) for every session. Invariant: exactly one per entry of `by_client`.
    by_activity: OrdSet<(u64, ClientId)>,
}

impl Sessions {
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn contains(&self, client_id: &ClientId) -> bool {
        self.by_client.contains_key(client_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &Session)> {
        self.by_client.iter()
    }

    /// Adds a session as read from a snapshot.
    pub fn restore(&mut self, client_id: ClientId, session: Session) {
        self.by_activity.insert((session.last_active_ms, client_id));
        self.by_client.insert(client_id, session);
    }

    /// Drops every session idle for longer than `timeout_ms` at `now_ms`.
    pub fn expire(&mut self, now_ms: u64, timeout_ms: u64) {
        while let Some(&(last_active_ms, client_id)) = self.by_activity.get_min() {
            if last_active_ms.saturating_add(timeout_ms) >= now_ms {
                break;
            }
            self.close(&client_id);
        }
    }

    pub fn register(&mut self, client_id: ClientId, now_ms: u64, max_sessions: usize) -> Reply {
        if self.by_client.contains_key(&client_id) {
            self.touch(&client_id, now_ms);
            return Reply::Ok;
        }
        while self.by_client.len() >= max_sessions.max(1) {
            let Some(&(_, idlest)) = self.by_activity.get_min() else { break };
            self.close(&idlest);
        }
        self.by_activity.insert((now_ms, client_id));
        self.by_client
            .insert(client_id, Session { last_active_ms: now_ms, lowest_unacked: 0, replies: OrdMap::new() });
        Reply::Ok
    }

    pub fn close(&mut self, client_id: &ClientId) {
        if let Some(session) = self.by_client.remove(client_id) {
            self.by_activity.remove(&(session.last_active_ms, *client_id));
        }
    }

    fn touch(&mut self, client_id: &ClientId, now_ms: u64) {
        let Some(session) = self.by_client.get_mut(client_id) else { return };
        self.by_activity.remove(&(session.last_active_ms, *client_id));
        // The state machine's time never decreases, so neither does a session's activity.
        session.last_active_ms = session.last_active_ms.max(now_ms);
        self.by_activity.insert((session.last_active_ms, *client_id));
    }

    /// Decides whether a session's command applies; refreshes the session and applies its watermark.
    pub fn admit(&mut self, session_ref: &SessionRef, now_ms: u64) -> Admission {
        if !self.by_client.contains_key(&session_ref.client_id) {
            return Admission::Answer(Reply::error(errors::SESSION_EXPIRED));
        }
        self.touch(&session_ref.client_id, now_ms);
        let session = self.by_client.get_mut(&session_ref.client_id).expect("checked above");
        if session_ref.lowest_unacked > session.lowest_unacked {
            session.lowest_unacked = session_ref.lowest_unacked;
            while let Some(&(sequence, _)) = session.replies.get_min() {
                if sequence >= session.lowest_unacked {
                    break;
                }
                session.replies.remove(&sequence);
            }
        }
        if session_ref.sequence < session.lowest_unacked {
            return Admission::Answer(Reply::error(errors::SEQUENCE_DISCARDED));
        }
        match session.replies.get(&session_ref.sequence) {
            Some(reply) => Admission::Answer(reply.clone()),
            None => Admission::Apply,
        }
    }

    /// Caches the reply of a command that `admit` let through.
    pub fn record(&mut self, session_ref: &SessionRef, reply: Reply, max_replies: usize) {
        let Some(session) = self.by_client.get_mut(&session_ref.client_id) else { return };
        session.replies.insert(session_ref.sequence, reply);
        while session.replies.len() > max_replies.max(1) {
            let Some(&(oldest, _)) = session.replies.get_min() else { break };
            session.replies.remove(&oldest);
            session.lowest_unacked = oldest + 1;
        }
    }

    /// Checks the invariants that tie the maps together; for tests and restore.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.by_activity.len() != self.by_client.len() {
            return Err("activity index and sessions differ in size".into());
        }
        for (client_id, session) in &self.by_client {
            if !self.by_activity.contains(&(session.last_active_ms, *client_id)) {
                return Err(format!("activity index lacks session {client_id}"));
            }
            if session.replies.get_min().is_some_and(|(seq, _)| *seq < session.lowest_unacked) {
                return Err(format!("session {client_id} caches a reply below its watermark"));
            }
        }
        Ok(())
    }
}
