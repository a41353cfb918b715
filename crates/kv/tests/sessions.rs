//! Client sessions (dissertation §6.3): duplicates answered from the cache, the acknowledgement
//! watermark, expiry by leader time, refusal of unknown sessions, and bounded memory.

mod common;

use common::{argv, err, Harness};
use kv::{errors, parse, ClientId, KvConfig, Reply, Request, RequestBody, SessionRef};

const CLIENT: ClientId = ClientId { node_id: 1, incarnation: 3, counter: 7 };

fn register(h: &mut Harness, client_id: ClientId) -> Reply {
    let request = Request {
        session: None,
        leader_time_ms: h.leader_time_ms,
        body: RequestBody::RegisterSession { client_id },
    };
    h.apply(&request)
}

fn session_command(
    h: &Harness,
    client_id: ClientId,
    sequence: u64,
    lowest_unacked: u64,
    words: &[&str],
) -> Request {
    let session = SessionRef { client_id, sequence, lowest_unacked };
    Request::session_command(h.leader_time_ms, session, parse(&argv(words)).unwrap())
}

#[test]
fn a_duplicate_returns_the_cached_reply_and_applies_once() {
    let mut h = Harness::new();
    assert_eq!(register(&mut h, CLIENT), Reply::Ok);
    let incr = session_command(&h, CLIENT, 1, 1, &["INCR", "n"]);
    assert_eq!(h.apply(&incr), Reply::Integer(1));
    assert_eq!(h.apply(&session_command(&h, CLIENT, 2, 1, &["INCR", "n"])), Reply::Integer(2));
    // The first one again (a re-proposal after a leader change): its own reply, not applied again.
    assert_eq!(h.apply(&incr), Reply::Integer(1));
    assert_eq!(h.run(&["GET", "n"]), common::bulk("2"));
}

#[test]
fn pipelined_commands_keep_every_reply_above_the_watermark() {
    let mut h = Harness::new();
    register(&mut h, CLIENT);
    let requests: Vec<Request> =
        (1..=5).map(|seq| session_command(&h, CLIENT, seq, 1, &["APPEND", "log", "x"])).collect();
    // Applied out of order, as re-proposals can be.
    for &i in &[0, 2, 1, 4, 3] {
        assert_eq!(
            h.apply(&requests[i]),
            Reply::Integer(1 + [0, 2, 1, 4, 3].iter().position(|&j| j == i).unwrap() as i64)
        );
    }
    for (i, request) in requests.iter().enumerate() {
        let expected = 1 + [0, 2, 1, 4, 3].iter().position(|&j| j == i).unwrap() as i64;
        assert_eq!(h.apply(request), Reply::Integer(expected), "duplicate of sequence {}", i + 1);
    }
    assert_eq!(h.run(&["STRLEN", "log"]), Reply::Integer(5));
}

#[test]
fn the_watermark_drops_acknowledged_replies_and_refuses_their_duplicates() {
    let mut h = Harness::new();
    register(&mut h, CLIENT);
    let first = session_command(&h, CLIENT, 1, 1, &["INCR", "n"]);
    h.apply(&first);
    h.apply(&session_command(&h, CLIENT, 2, 1, &["INCR", "n"]));
    // Sequence 3 acknowledges everything below 3.
    assert_eq!(h.apply(&session_command(&h, CLIENT, 3, 3, &["INCR", "n"])), Reply::Integer(3));
    assert_eq!(h.apply(&first), err(errors::SEQUENCE_DISCARDED));
    assert_eq!(h.run(&["GET", "n"]), common::bulk("3"));
    // A late request carrying an older watermark does not lower it.
    assert_eq!(h.apply(&session_command(&h, CLIENT, 4, 1, &["INCR", "n"])), Reply::Integer(4));
    assert_eq!(h.apply(&session_command(&h, CLIENT, 2, 1, &["INCR", "n"])), err(errors::SEQUENCE_DISCARDED));
}

#[test]
fn unknown_sessions_are_refused_whatever_the_sequence() {
    let mut h = Harness::new();
    for sequence in [0, 1, 100] {
        let reply = h.apply(&session_command(&h, CLIENT, sequence, 0, &["SET", "k", "v"]));
        assert_eq!(reply, err(errors::SESSION_EXPIRED));
        assert!(reply.is_session_expired());
    }
    assert_eq!(h.run(&["EXISTS", "k"]), Reply::Integer(0));
}

#[test]
fn sessions_expire_by_leader_time() {
    let mut h = Harness::with_config(KvConfig { session_timeout_ms: 1_000, ..KvConfig::default() });
    register(&mut h, CLIENT);
    let other = ClientId { counter: 8, ..CLIENT };
    register(&mut h, other);
    h.advance_ms(800);
    assert_eq!(h.apply(&session_command(&h, CLIENT, 1, 1, &["INCR", "n"])), Reply::Integer(1));
    h.advance_ms(800);
    // Any entry moves time: `other` has been idle 1,600 ms, CLIENT only 800 ms.
    h.run(&["SET", "tick", "1"]);
    assert!(h.machine.has_session(&CLIENT));
    assert!(!h.machine.has_session(&other));
    assert_eq!(h.apply(&session_command(&h, other, 1, 1, &["INCR", "n"])), err(errors::SESSION_EXPIRED));
    h.advance_ms(1_001);
    let retry = session_command(&h, CLIENT, 1, 1, &["INCR", "n"]);
    assert_eq!(h.apply(&retry), err(errors::SESSION_EXPIRED), "expired: refused, not applied again");
    assert_eq!(h.run(&["GET", "n"]), common::bulk("1"));
    // Registering again opens a fresh session.
    assert_eq!(register(&mut h, CLIENT), Reply::Ok);
    assert_eq!(h.machine.session_count(), 1);
}

#[test]
fn registration_is_idempotent_and_keeps_the_cache() {
    let mut h = Harness::new();
    register(&mut h, CLIENT);
    let incr = session_command(&h, CLIENT, 1, 1, &["INCR", "n"]);
    h.apply(&incr);
    assert_eq!(register(&mut h, CLIENT), Reply::Ok);
    assert_eq!(h.apply(&incr), Reply::Integer(1));
    assert_eq!(h.machine.session_count(), 1);
}

#[test]
fn closing_a_session_forgets_it() {
    let mut h = Harness::new();
    register(&mut h, CLIENT);
    let close = Request {
        session: None,
        leader_time_ms: h.leader_time_ms,
        body: RequestBody::CloseSession { client_id: CLIENT },
    };
    assert_eq!(h.apply(&close), Reply::Ok);
    assert_eq!(h.apply(&close), Reply::Ok);
    assert_eq!(h.apply(&session_command(&h, CLIENT, 1, 1, &["INCR", "n"])), err(errors::SESSION_EXPIRED));
}

#[test]
fn the_number_of_sessions_is_bounded_evicting_the_least_recently_active() {
    let mut h = Harness::with_config(KvConfig { max_sessions: 2, ..KvConfig::default() });
    let ids: Vec<ClientId> = (0..3).map(|counter| ClientId { counter, ..CLIENT }).collect();
    register(&mut h, ids[0]);
    h.advance_ms(1);
    register(&mut h, ids[1]);
    h.advance_ms(1);
    // ids[0] becomes the most recently active.
    h.apply(&session_command(&h, ids[0], 1, 1, &["INCR", "n"]));
    h.advance_ms(1);
    register(&mut h, ids[2]);
    assert!(h.machine.has_session(&ids[0]));
    assert!(!h.machine.has_session(&ids[1]));
    assert!(h.machine.has_session(&ids[2]));
}

#[test]
fn cached_replies_are_bounded_and_eviction_raises_the_watermark() {
    let mut h = Harness::with_config(KvConfig { max_replies_per_session: 3, ..KvConfig::default() });
    register(&mut h, CLIENT);
    let requests: Vec<Request> =
        (1..=4).map(|seq| session_command(&h, CLIENT, seq, 1, &["INCR", "n"])).collect();
    for request in &requests {
        h.apply(request);
    }
    // Sequence 1's reply was evicted: its duplicate is refused rather than applied again.
    assert_eq!(h.apply(&requests[0]), err(errors::SEQUENCE_DISCARDED));
    assert_eq!(h.apply(&requests[3]), Reply::Integer(4));
    assert_eq!(h.run(&["GET", "n"]), common::bulk("4"));
    assert_eq!(h.machine.check_invariants(), Ok(()));
}

#[test]
fn a_multi_is_one_sequence() {
    let mut h = Harness::new();
    register(&mut h, CLIENT);
    let mut transaction = kv::Transaction::new();
    transaction.queue(&argv(&["INCR", "a"])).unwrap();
    transaction.queue(&argv(&["INCR", "b"])).unwrap();
    let session = SessionRef { client_id: CLIENT, sequence: 1, lowest_unacked: 1 };
    let request = Request::session_command(h.leader_time_ms, session, transaction.exec().unwrap());
    let expected = Reply::Array(vec![Reply::Integer(1), Reply::Integer(1)]);
    assert_eq!(h.apply(&request), expected);
    assert_eq!(h.apply(&request), expected);
    assert_eq!(h.run(&["MGET", "a", "b"]), Reply::Array(vec![common::bulk("1"), common::bulk("1")]));
}

#[test]
fn an_oom_reply_is_cached_too() {
    let mut h = Harness::with_config(KvConfig { maxmemory_bytes: 100, ..KvConfig::default() });
    register(&mut h, CLIENT);
    let big = "x".repeat(200);
    let set = session_command(&h, CLIENT, 1, 1, &["SET", "k", &big]);
    assert_eq!(h.apply(&set), err(errors::OOM));
    h.run(&["SET", "tiny", "1"]);
    assert_eq!(h.apply(&set), err(errors::OOM), "the retry gets the first outcome");
}
