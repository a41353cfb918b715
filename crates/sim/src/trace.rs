//! The trace of one run: every event, as JSON lines a person (and the trace viewer) can follow.
//!
//! Each event is one line `{"t":<µs>,"kind":"...",...}`. The trace is also hashed as it is written (FNV-1a
//! over the exact bytes of every line), whether or not it is kept: replaying a seed must give the same hash,
//! which is how `raftkv sim` proves a run is a pure function of its seed.

use std::hash::Hasher;
use std::io::{self, Write};

use fnv::FnvHasher;
use raft::{Index, NodeId, Term};
use serde::Serialize;

use crate::network::TimeUs;

/// One thing that happened. Messages are described by the core's compact `Display` form, so the trace
/// stays readable without tying its schema to the wire format.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceEvent {
    /// The run's parameters, first line of every trace.
    Run {
        seed: u64,
        nodes: u64,
        settings: String,
    },
    Send {
        id: u64,
        from: NodeId,
        to: NodeId,
        message: String,
    },
    Deliver {
        id: u64,
        from: NodeId,
        to: NodeId,
    },
    /// A message that will not arrive: refused by the network when sent (reason `Lost` or `Partitioned`,
    /// recorded right after its `send`), or dropped while in flight. Every `send` ends in a `deliver` or a
    /// `drop` unless the run ends first.
    Drop {
        id: u64,
        from: NodeId,
        to: NodeId,
        reason: String,
    },
    Role {
        node: NodeId,
        role: String,
        term: Term,
        leader: Option<NodeId>,
    },
    Persist {
        node: NodeId,
        term: Term,
        vote: Option<NodeId>,
        last_index: Index,
    },
    /// Entries made durable in a node's log: `terms[i]` is the term of entry `first_index + i`. Entries
    /// from `first_index` on replace whatever the log held there (a conflicting suffix is cut first), so
    /// the trace viewer can redraw every node's log from these alone.
    Append {
        node: NodeId,
        first_index: Index,
        terms: Vec<Term>,
    },
    /// A node restarted from its disk with this log (entry `first_index + i` has term `terms[i]`; the log
    /// before `first_index` is in a snapshot) and this hard state and commit index.
    Recover {
        node: NodeId,
        term: Term,
        vote: Option<NodeId>,
        commit_index: Index,
        first_index: Index,
        terms: Vec<Term>,
    },
    /// A node's own snapshot at `index` (entry term `term`) is durable and its log compacted up to it:
    /// the entries up to `index` are now only in the snapshot.
    SnapshotTaken {
        node: NodeId,
        index: Index,
        term: Term,
    },
    /// A node installed its leader's snapshot (InstallSnapshot, §7): its log now starts after `index`,
    /// and holds the entries after it only if `keep_entries_after` (it held the snapshot's entry with its
    /// term); its state machine is the snapshot's.
    SnapshotInstall {
        node: NodeId,
        index: Index,
        term: Term,
        keep_entries_after: bool,
    },
    Commit {
        node: NodeId,
        index: Index,
    },
    Apply {
        node: NodeId,
        index: Index,
        term: Term,
    },
    Invoke {
        client: u64,
        node: NodeId,
        op: String,
    },
    Complete {
        client: u64,
        node: NodeId,
        result: String,
    },
    Fault {
        fault: String,
    },
    Phase {
        phase: String,
    },
    Violation {
        check: String,
        detail: String,
    },
}

/// Where trace lines go: always into the hash, and into a writer if one was given.
pub struct Trace {
    hasher: FnvHasher,
    writer: Option<Box<dyn Write>>,
    lines: u64,
    line_buffer: Vec<u8>,
    write_error: Option<io::Error>,
}

#[derive(Serialize)]
struct Line<'a> {
    t: TimeUs,
    #[serde(flatten)]
    event: &'a TraceEvent,
}

impl Trace {
    /// A trace that is only hashed.
    pub fn hash_only() -> Self {
        Trace {
            hasher: FnvHasher::default(),
            writer: None,
            lines: 0,
            line_buffer: Vec::new(),
            write_error: None,
        }
    }

    /// A trace that is hashed and written to `writer`.
    pub fn to_writer(writer: Box<dyn Write>) -> Self {
        Trace { writer: Some(writer), ..Trace::hash_only() }
    }

    pub fn record(&mut self, time: TimeUs, event: TraceEvent) {
        self.line_buffer.clear();
        serde_json::to_writer(&mut self.line_buffer, &Line { t: time, event: &event })
            .expect("trace events are plain data and always serialise");
        self.line_buffer.push(b'\n');
        self.hasher.write(&self.line_buffer);
        self.lines += 1;
        if let (Some(writer), None) = (&mut self.writer, &self.write_error) {
            if let Err(error) = writer.write_all(&self.line_buffer) {
                // A full disk must not change the run itself; the error is reported at the end.
                self.write_error = Some(error);
            }
        }
    }

    /// The hash of every line so far.
    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes the writer and reports the first write error, if any.
    pub fn finish(mut self) -> io::Result<u64> {
        if let Some(error) = self.write_error.take() {
            return Err(error);
        }
        if let Some(writer) = &mut self.writer {
            writer.flush()?;
        }
        Ok(self.hash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sample(trace: &mut Trace) {
        trace.record(0, TraceEvent::Run { seed: 7, nodes: 3, settings: "calm".into() });
        trace.record(10, TraceEvent::Role { node: 1, role: "leader".into(), term: 2, leader: Some(1) });
    }

    #[test]
    fn trace_lines_are_json_with_time_and_kind() {
        let buffer = SharedBuffer::default();
        let mut trace = Trace::to_writer(Box::new(buffer.clone()));
        sample(&mut trace);
        trace.finish().unwrap();
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], r#"{"t":10,"kind":"role","node":1,"role":"leader","term":2,"leader":1}"#);
    }

    #[test]
    fn hash_depends_on_every_line_and_not_on_whether_it_is_written() {
        let mut hashed = Trace::hash_only();
        sample(&mut hashed);
        let mut written = Trace::to_writer(Box::new(SharedBuffer::default()));
        sample(&mut written);
        assert_eq!(hashed.hash(), written.hash());
        hashed.record(11, TraceEvent::Commit { node: 1, index: 1 });
        assert_ne!(hashed.hash(), written.hash());
    }
}
