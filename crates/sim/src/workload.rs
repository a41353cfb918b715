//! Simulated clients and the history they record.
//!
//! Clients behave like Redis clients do: they carry no request ids of their own, send one command at a
//! time to some node, and wait with a timeout. A client that times out records the operation as
//! indeterminate (`:info` — it may have happened, or not, or may still happen) and carries on as a new
//! process, exactly as Jepsen's clients do, because it can no longer know the order of its own operations.
//!
//! Keys are assigned so that histories stay decidable: about five clients share a key, and keys rotate
//! (a group moves to a fresh key every `KEY_ROTATION_OPS` operations), so no single key's history grows
//! beyond what a linearizability search can decide quickly.

use raft::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::network::TimeUs;

/// Clients per key: Knossos-style searches are exponential in concurrency, so keep it modest.
pub const CLIENTS_PER_KEY: usize = 5;
/// Operations on one key before its group moves to a fresh key.
pub const KEY_ROTATION_OPS: u64 = 25;

/// What a client asks for. Values are unique per run, so a read names the write it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Get,
    Set(String),
    Append(String),
    Incr,
    /// Compare-and-set: `(expected, new)`, `None` expecting the key to be absent.
    Cas(Option<String>, String),
}

/// How an operation ended, in Jepsen's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect; reads carry what they read (`None` = absent), incr the new value.
    Ok(Option<String>),
    /// It certainly did not take effect (a cas that did not match, a write refused before proposing).
    Fail,
    /// Unknown: it may have taken effect, or may yet.
    Info,
}

/// One operation of the history: invoked by `process` at `invoked_at`, completed at `completed_at`.
#[derive(Clone, Debug)]
pub struct HistoryOp {
    pub process: u64,
    pub key: String,
    pub operation: Operation,
    pub invoked_at: TimeUs,
    /// The node the operation was sent to.
    pub node: NodeId,
    /// `None` while pending; a pending operation at the end of a run counts as `Info`.
    pub completion: Option<(TimeUs, Outcome)>,
    /// Positions of the invocation and completion among all client events of the run: the exact
    /// real-time order, even for events at the same simulated instant.
    pub invoke_sequence: u64,
    pub completion_sequence: Option<u64>,
}

/// A client's current state.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: usize,
    /// Jepsen process id: changes whenever the client gives up on an operation.
    pub process: u64,
    /// Index into `Workload::history` of the operation in flight.
    pub pending: Option<usize>,
    pub next_op_at: TimeUs,
    pub deadline: TimeUs,
}

/// All clients of a run, and their history.
pub struct Workload {
    rng: ChaCha8Rng,
    pub clients: Vec<Client>,
    pub history: Vec<HistoryOp>,
    ops_per_group: Vec<u64>,
    next_process: u64,
    next_value: u64,
    timeout_us: TimeUs,
    think_time_us: TimeUs,
    next_sequence: u64,
    /// Set at the end of a run: no operation starts any more.
    stopped: bool,
}

impl Workload {
    /// `client_count` clients that think up to `think_time_us` between operations and give up after
    /// `timeout_us`.
    pub fn new(rng: ChaCha8Rng, client_count: usize, timeout_us: TimeUs, think_time_us: TimeUs) -> Self {
        let clients = (0..client_count)
            .map(|id| Client { id, process: id as u64, pending: None, next_op_at: 0, deadline: 0 })
            .collect();
        Workload {
            rng,
            clients,
            history: Vec::new(),
            ops_per_group: vec![0; client_count.div_ceil(CLIENTS_PER_KEY)],
            next_process: client_count as u64,
            next_value: 0,
            timeout_us,
            think_time_us,
            stopped: false,
            next_sequence: 0,
        }
    }

    /// The next instant at which some client wants to act (invoke or give up).
    pub fn next_event_at(&self) -> Option<TimeUs> {
        self.clients
            .iter()
            .map(|c| if c.pending.is_some() { c.deadline } else { c.next_op_at })
            .filter(|&at| at != TimeUs::MAX)
            .min()
    }

    /// Starts a new operation for every idle client whose think time is over. Returns `(client, history
    /// index)` pairs; the caller picks a node, sends, and records the node in `Client::node`.
    pub fn invoke_due(&mut self, now: TimeUs) -> Vec<(usize, usize)> {
        let mut started = Vec::new();
        for client in 0..self.clients.len() {
            if self.clients[client].pending.is_some() || self.clients[client].next_op_at > now {
                continue;
            }
            let group = client / CLIENTS_PER_KEY;
            let key = format!("k{group}.{}", self.ops_per_group[group] / KEY_ROTATION_OPS);
            self.ops_per_group[group] += 1;
            let operation = self.draw_operation();
            let index = self.history.len();
            self.history.push(HistoryOp {
                process: self.clients[client].process,
                key,
                operation,
                invoked_at: now,
                node: 0,
                completion: None,
                invoke_sequence: self.next_sequence,
                completion_sequence: None,
            });
            self.next_sequence += 1;
            let state = &mut self.clients[client];
            state.pending = Some(index);
            state.deadline = now + self.timeout_us;
            started.push((client, index));
        }
        started
    }

    fn fresh_value(&mut self) -> String {
        self.next_value += 1;
        format!("v{}", self.next_value)
    }

    fn draw_operation(&mut self) -> Operation {
        match self.rng.gen_range(0..10) {
            0..=3 => Operation::Get,
            4 | 5 => Operation::Set(self.fresh_value()),
            6 | 7 => Operation::Append(self.fresh_value()),
            8 => Operation::Incr,
            _ => {
                let expected =
                    if self.rng.gen_bool(0.3) { None } else { Some(format!("v{}", self.next_value)) };
                Operation::Cas(expected, self.fresh_value())
            }
        }
    }

    /// Records the completion of the operation at `history_index`, if its client still waits for it (a
    /// reply that arrives after the client gave up is ignored: the client has become a new process).
    pub fn complete(&mut self, history_index: usize, now: TimeUs, outcome: Outcome) -> bool {
        let Some(client) = self.clients.iter_mut().find(|c| c.pending == Some(history_index)) else {
            return false;
        };
        client.pending = None;
        client.next_op_at =
            if self.stopped { TimeUs::MAX } else { now + self.rng.gen_range(0..=self.think_time_us) };
        self.history[history_index].completion = Some((now, outcome));
        self.history[history_index].completion_sequence = Some(self.next_sequence);
        self.next_sequence += 1;
        true
    }

    /// Gives up on every operation whose deadline passed: it is recorded as indeterminate and its client
    /// carries on as a new process. Returns the history indices given up on.
    pub fn time_out_due(&mut self, now: TimeUs) -> Vec<usize> {
        let mut timed_out = Vec::new();
        for client in &mut self.clients {
            let Some(index) = client.pending.filter(|_| client.deadline <= now) else { continue };
            self.history[index].completion = Some((now, Outcome::Info));
            self.history[index].completion_sequence = Some(self.next_sequence);
            self.next_sequence += 1;
            client.pending = None;
            client.process = self.next_process;
            self.next_process += 1;
            client.next_op_at = if self.stopped { TimeUs::MAX } else { now };
            timed_out.push(index);
        }
        timed_out
    }

    /// True when no client waits for a reply.
    pub fn is_quiet(&self) -> bool {
        self.clients.iter().all(|c| c.pending.is_none())
    }

    /// Stops new operations from starting (the end of a run): idle clients think forever.
    pub fn stop_invoking(&mut self) {
        self.stopped = true;
        for client in &mut self.clients {
            client.next_op_at = TimeUs::MAX;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::derive_rng;

    #[test]
    fn clients_share_keys_in_groups_of_five_and_rotate_keys() {
        let mut workload = Workload::new(derive_rng(1, "clients", 0), 10, 1_000, 0);
        let mut now = 0;
        for _ in 0..200 {
            for (_, index) in workload.invoke_due(now) {
                workload.complete(index, now + 1, Outcome::Ok(None));
            }
            now += 10;
        }
        let keys_of = |client: u64| -> std::collections::BTreeSet<String> {
            workload.history.iter().filter(|op| op.process == client).map(|op| op.key.clone()).collect()
        };
        assert!(keys_of(0).iter().all(|k| k.starts_with("k0.")));
        assert!(keys_of(7).iter().all(|k| k.starts_with("k1.")));
        assert!(keys_of(0).len() > 1, "keys rotate");
        let mut per_key = std::collections::BTreeMap::<&str, usize>::new();
        for op in &workload.history {
            *per_key.entry(&op.key).or_default() += 1;
        }
        assert!(per_key.values().all(|&n| n as u64 <= KEY_ROTATION_OPS));
    }

    #[test]
    fn a_client_that_times_out_records_info_and_becomes_a_new_process() {
        let mut workload = Workload::new(derive_rng(2, "clients", 0), 1, 1_000, 0);
        let (_, first) = workload.invoke_due(0)[0];
        assert_eq!(workload.time_out_due(999), Vec::<usize>::new());
        assert_eq!(workload.time_out_due(1_000), vec![first]);
        assert_eq!(workload.history[first].completion, Some((1_000, Outcome::Info)));
        assert!(!workload.complete(first, 1_001, Outcome::Ok(None)), "a late reply is ignored");
        let (_, second) = workload.invoke_due(1_000)[0];
        assert_ne!(workload.history[second].process, workload.history[first].process);
    }

    #[test]
    fn once_stopped_no_client_starts_another_operation() {
        let mut workload = Workload::new(derive_rng(4, "clients", 0), 3, 1_000, 0);
        let started = workload.invoke_due(0);
        workload.stop_invoking();
        workload.complete(started[0].1, 5, Outcome::Ok(None));
        workload.time_out_due(1_000);
        assert!(workload.invoke_due(10_000).is_empty());
        assert!(workload.is_quiet());
        assert_eq!(workload.next_event_at(), None);
    }

    #[test]
    fn values_written_are_unique() {
        let mut workload = Workload::new(derive_rng(3, "clients", 0), 5, 1_000, 0);
        let mut written = std::collections::BTreeSet::new();
        for step in 0..100 {
            for (_, index) in workload.invoke_due(step) {
                if let Operation::Set(v) | Operation::Append(v) | Operation::Cas(_, v) =
                    &workload.history[index].operation
                {
                    assert!(written.insert(v.clone()), "{v} written twice");
                }
                workload.complete(index, step, Outcome::Ok(None));
            }
        }
    }
}
