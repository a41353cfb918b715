//! A small driver for tests: parse argv like a client would send it, apply writes as log entries stamped
//! with a test-controlled leader time, serve reads through `read`.
#![allow(dead_code)]

use bytes::Bytes;
use kv::{parse, Command, KvConfig, KvStateMachine, Reply, Request};

pub fn argv(words: &[&str]) -> Vec<Bytes> {
    words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
}

pub fn bulk(text: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

pub fn err(text: &str) -> Reply {
    Reply::Error(text.to_string())
}

pub struct Harness {
    pub machine: KvStateMachine,
    pub index: u64,
    /// The leader time stamped into the next entry.
    pub leader_time_ms: u64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(KvConfig::default())
    }

    pub fn with_config(config: KvConfig) -> Harness {
        Harness { machine: KvStateMachine::new(config), index: 0, leader_time_ms: 1_700_000_000_000 }
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.leader_time_ms += ms;
    }

    /// Applies a request as the next log entry, through its encoded bytes.
    pub fn apply(&mut self, request: &Request) -> Reply {
        self.index += 1;
        self.machine.apply(self.index, &request.encode())
    }

    /// Applies a command as a log entry (whatever its kind), without a session.
    pub fn apply_command(&mut self, command: Command) -> Reply {
        let request = Request::command(self.leader_time_ms, command);
        self.apply(&request)
    }

    /// What a server would do: parse; reads go through `read` at the latest leader time, writes through
    /// the log.
    pub fn run(&mut self, words: &[&str]) -> Reply {
        let command = match parse(&argv(words)) {
            Ok(command) => command,
            Err(error) => return error.to_reply(),
        };
        if command.is_read() {
            // A read must see the same state as the same command applied through the log would.
            let read = self.machine.read(&command, self.leader_time_ms);
            let mut copy = self.machine.clone();
            let through_log =
                copy.apply(self.index + 1, &Request::command(self.leader_time_ms, command).encode());
            assert_eq!(read, through_log, "read and applied answers differ for {words:?}");
            read
        } else {
            self.apply_command(command)
        }
    }
}
