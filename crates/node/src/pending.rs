//! Client commands the node has accepted and not yet answered.
//!
//! A command's life: it waits for the node's session to open, gets a sequence number, is proposed (on the
//! leader) or forwarded (to the leader the node believes in), and is answered when the node's *own* state
//! machine applies the entry carrying (this node's session, that sequence) — the same whether the node led
//! or forwarded. Until then the node resends it, with the same sequence, every `retry_ticks`, so a lost
//! forward or a proposal swallowed by a leader change costs a retry, never a second application.
//!
//! The deadline decides between two errors, and the difference matters to clients: a command that was
//! certainly never proposed gets `-TRYAGAIN` (safe to retry blindly), one that may have been proposed
//! gets an error saying the outcome is unknown (a retried INCR might then apply twice).

use std::collections::BTreeMap;

use kv::Command;
use raft::NodeId;

/// The caller's handle for a client request (a connection and its position in the pipeline, or a
/// simulated client's operation). Opaque to the node.
pub type ClientToken = u64;

/// Where a command stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the node's session to open; no sequence number yet.
    AwaitingSession,
    /// Has a sequence number; `last_sent_tick` is when it was last proposed or forwarded, `None` if it
    /// could not be sent yet (no leader known).
    Numbered { sequence: u64, last_sent_tick: Option<u64>, sent_to: Option<NodeId> },
}

/// One accepted client command.
#[derive(Clone, Debug)]
pub struct PendingCommand {
    pub token: ClientToken,
    pub command: Command,
    pub stage: Stage,
    /// Once true, stays true: some leader may have appended it, so a timeout cannot claim it never ran.
    pub may_have_been_proposed: bool,
    pub deadline_tick: u64,
}

/// All commands in flight, by token, with an index from sequence number to token.
#[derive(Default, Debug)]
pub struct PendingCommands {
    by_token: BTreeMap<ClientToken, PendingCommand>,
    token_by_sequence: BTreeMap<u64, ClientToken>,
}

impl PendingCommands {
    pub fn insert(&mut self, token: ClientToken, command: Command, deadline_tick: u64) {
        let pending = PendingCommand {
            token,
            command,
            stage: Stage::AwaitingSession,
            may_have_been_proposed: false,
            deadline_tick,
        };
        let previous = self.by_token.insert(token, pending);
        debug_assert!(previous.is_none(), "client token {token} was already pending");
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// Gives `token` its sequence number.
    pub fn number(&mut self, token: ClientToken, sequence: u64) {
        let pending = self.by_token.get_mut(&token).expect("numbering a command that is not pending");
        debug_assert_eq!(pending.stage, Stage::AwaitingSession, "command {token} numbered twice");
        pending.stage = Stage::Numbered { sequence, last_sent_tick: None, sent_to: None };
        self.token_by_sequence.insert(sequence, token);
    }

    /// Records that `token` was just proposed here or forwarded to `to` at `tick`.
    pub fn mark_sent(&mut self, token: ClientToken, tick: u64, to: NodeId) {
        if let Some(pending) = self.by_token.get_mut(&token) {
            if let Stage::Numbered { last_sent_tick, sent_to, .. } = &mut pending.stage {
                *last_sent_tick = Some(tick);
                *sent_to = Some(to);
                pending.may_have_been_proposed = true;
            }
        }
    }

    /// Makes `token` due again at the next tick (its last attempt was refused), keeping whether it may
    /// have been proposed before. Never at once: a node with a stale idea of the leader would otherwise
    /// ping-pong with it, and duplicated rejections would multiply the resends.
    pub fn mark_due_next_tick(&mut self, token: ClientToken, now_tick: u64, retry_ticks: u64) {
        if let Some(PendingCommand { stage: Stage::Numbered { last_sent_tick, .. }, .. }) =
            self.by_token.get_mut(&token)
        {
            *last_sent_tick = Some((now_tick + 1).saturating_sub(retry_ticks));
        }
    }

    pub fn get(&self, token: ClientToken) -> Option<&PendingCommand> {
        self.by_token.get(&token)
    }

    pub fn token_of_sequence(&self, sequence: u64) -> Option<ClientToken> {
        self.token_by_sequence.get(&sequence).copied()
    }

    /// Removes and returns the command, whatever its stage.
    pub fn remove(&mut self, token: ClientToken) -> Option<PendingCommand> {
        let pending = self.by_token.remove(&token)?;
        if let Stage::Numbered { sequence, .. } = pending.stage {
            self.token_by_sequence.remove(&sequence);
        }
        Some(pending)
    }

    /// Commands waiting for the session, in arrival order.
    pub fn awaiting_session(&self) -> Vec<ClientToken> {
        self.by_token.values().filter(|p| p.stage == Stage::AwaitingSession).map(|p| p.token).collect()
    }

    /// Numbered commands never sent, or last sent at least `retry_ticks` before `now_tick`.
    pub fn due_for_send(&self, now_tick: u64, retry_ticks: u64) -> Vec<(ClientToken, u64)> {
        self.by_token
            .values()
            .filter_map(|p| match p.stage {
                Stage::Numbered { sequence, last_sent_tick, .. }
                    if last_sent_tick.is_none_or(|sent| sent + retry_ticks <= now_tick) =>
                {
                    Some((p.token, sequence))
                }
                _ => None,
            })
            .collect()
    }

    /// Commands whose deadline has passed.
    pub fn expired(&self, now_tick: u64) -> Vec<ClientToken> {
        self.by_token.values().filter(|p| p.deadline_tick <= now_tick).map(|p| p.token).collect()
    }

    /// Forgets every sequence number (the session was renewed): every numbered command waits for the new
    /// session again, keeping whether it may have been proposed.
    pub fn unnumber_all(&mut self) {
        self.token_by_sequence.clear();
        for pending in self.by_token.values_mut() {
            pending.stage = Stage::AwaitingSession;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn get() -> Command {
        Command::Get { key: Bytes::from_static(b"k") }
    }

    #[test]
    fn a_command_is_resent_only_after_the_retry_interval() {
        let mut pending = PendingCommands::default();
        pending.insert(7, get(), 100);
        assert_eq!(pending.due_for_send(0, 10), vec![], "no sequence number yet");
        pending.number(7, 1);
        assert_eq!(pending.due_for_send(0, 10), vec![(7, 1)], "never sent");
        pending.mark_sent(7, 0, 2);
        assert_eq!(pending.due_for_send(9, 10), vec![]);
        assert_eq!(pending.due_for_send(10, 10), vec![(7, 1)]);
    }

    #[test]
    fn a_refused_command_is_due_at_the_next_tick_not_at_once() {
        let mut pending = PendingCommands::default();
        pending.insert(7, get(), 100);
        pending.number(7, 1);
        pending.mark_sent(7, 50, 2);
        pending.mark_due_next_tick(7, 50, 10);
        assert_eq!(pending.due_for_send(50, 10), vec![]);
        assert_eq!(pending.due_for_send(51, 10), vec![(7, 1)]);
    }

    #[test]
    fn having_been_sent_once_is_remembered_across_session_renewal() {
        let mut pending = PendingCommands::default();
        pending.insert(7, get(), 100);
        pending.number(7, 1);
        assert!(!pending.get(7).unwrap().may_have_been_proposed);
        pending.mark_sent(7, 3, 2);
        pending.unnumber_all();
        assert_eq!(pending.get(7).unwrap().stage, Stage::AwaitingSession);
        assert!(pending.get(7).unwrap().may_have_been_proposed);
        assert_eq!(pending.token_of_sequence(1), None);
    }

    #[test]
    fn expired_and_removed_commands() {
        let mut pending = PendingCommands::default();
        pending.insert(1, get(), 5);
        pending.insert(2, get(), 9);
        pending.number(2, 4);
        assert_eq!(pending.expired(5), vec![1]);
        assert_eq!(pending.remove(2).unwrap().token, 2);
        assert_eq!(pending.token_of_sequence(4), None);
        assert_eq!(pending.len(), 1);
    }
}
