//! The simulator's "teeth": with the test-only switch on, a retried command applies twice.
#![cfg(feature = "inject-bugs")]

mod common;

use common::{argv, Harness};
use kv::{parse, ClientId, Reply, Request, RequestBody, SessionRef};

#[test]
fn the_switch_makes_a_retried_command_apply_twice() {
    let client_id = ClientId { node_id: 1, incarnation: 1, counter: 1 };
    let run = |bug: bool| {
        let mut h = Harness::new();
        h.machine.set_bug_apply_retries_twice(bug);
        let register = Request {
            session: None,
            leader_time_ms: h.leader_time_ms,
            body: RequestBody::RegisterSession { client_id },
        };
        h.apply(&register);
        let session = SessionRef { client_id, sequence: 1, lowest_unacked: 1 };
        let incr = Request::session_command(h.leader_time_ms, session, parse(&argv(&["INCR", "n"])).unwrap());
        h.apply(&incr);
        h.apply(&incr);
        h.run(&["GET", "n"])
    };
    assert_eq!(run(false), common::bulk("1"));
    assert_eq!(run(true), common::bulk("2"));
}

#[test]
fn the_switch_does_not_resurrect_refused_commands() {
    let mut h = Harness::new();
    h.machine.set_bug_apply_retries_twice(true);
    let session = SessionRef {
        client_id: ClientId { node_id: 1, incarnation: 1, counter: 1 },
        sequence: 1,
        lowest_unacked: 1,
    };
    let incr = Request::session_command(h.leader_time_ms, session, parse(&argv(&["INCR", "n"])).unwrap());
    assert!(h.apply(&incr).is_session_expired());
    assert_eq!(h.run(&["GET", "n"]), Reply::Nil);
}
