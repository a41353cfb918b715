//! Snapshot round trips, determinism, the O(1) frozen view, and refusal of bad input.

mod common;

use bytes::Bytes;
use common::{argv, Harness};
use kv::{
    parse, ClientId, Command, KvConfig, KvStateMachine, Reply, Request, RequestBody, SessionRef, Snapshot,
    SnapshotError,
};
use proptest::prelude::*;

/// A state with a bit of everything: plain keys, keys with deadlines, an expired key not yet removed,
/// binary keys, and sessions with cached replies of every shape.
fn populated() -> Harness {
    let mut h =
        Harness::with_config(KvConfig { max_expired_keys_removed_per_entry: 0, ..KvConfig::default() });
    h.run(&["MSET", "a", "1", "b", "two", "c", ""]);
    h.run(&["SET", "ttl", "v", "EX", "100"]);
    h.run(&["SET", "gone", "v", "PX", "1"]);
    h.apply_command(Command::MSet {
        pairs: vec![(Bytes::from_static(b"\x00\xff"), Bytes::from_static(b"\r\n"))],
    });
    for counter in 0..3 {
        let client_id = ClientId { node_id: 2, incarnation: 5, counter };
        h.apply(&Request {
            session: None,
            leader_time_ms: h.leader_time_ms,
            body: RequestBody::RegisterSession { client_id },
        });
        for sequence in 1..=3 {
            let session = SessionRef { client_id, sequence, lowest_unacked: 2 };
            let words: &[&str] = match sequence {
                1 => &["INCR", "a"],
                2 => &["MGET", "a", "zz"],
                _ => &["INCR", "b"],
            };
            h.apply(&Request::session_command(h.leader_time_ms, session, parse(&argv(words)).unwrap()));
        }
    }
    h.advance_ms(10);
    h.run(&["SET", "last", "x"]);
    h
}

fn restore(bytes: &[u8]) -> Result<KvStateMachine, SnapshotError> {
    KvStateMachine::restore(KvConfig::default(), bytes)
}

#[test]
fn round_trip_keeps_data_sessions_and_time() {
    let mut h = populated();
    let snapshot = h.machine.snapshot();
    assert_eq!(snapshot.applied_index(), h.index);
    let bytes = snapshot.to_bytes();
    let mut restored = KvStateMachine::restore(h.machine.config().clone(), bytes.as_slice()).unwrap();
    assert_eq!(restored.check_invariants(), Ok(()));
    assert_eq!(restored.applied_index(), h.machine.applied_index());
    assert_eq!(restored.time_ms(), h.machine.time_ms());
    assert_eq!(restored.used_bytes(), h.machine.used_bytes());
    assert_eq!(restored.session_count(), 3);
    assert_eq!(restored.snapshot().to_bytes(), bytes);
    // The same future replies, including a duplicate answered from a restored session cache.
    let client_id = ClientId { node_id: 2, incarnation: 5, counter: 1 };
    let duplicate = Request::session_command(
        h.leader_time_ms,
        SessionRef { client_id, sequence: 2, lowest_unacked: 2 },
        parse(&argv(&["MGET", "a"])).unwrap(),
    );
    let entry = duplicate.encode();
    h.index += 1;
    let original = h.machine.apply(h.index, &entry);
    assert_eq!(restored.apply(h.index, &entry), original);
    assert!(
        matches!(original, Reply::Array(ref items) if items.len() == 2),
        "cached MGET reply: {original:?}"
    );
}

#[test]
fn equal_states_give_equal_bytes_whatever_the_history() {
    let build = |order: &[usize]| {
        let mut h = Harness::new();
        for &i in order {
            h.run(&["SET", &format!("key{i}"), &format!("value{i}")]);
        }
        // Same index and time for both histories.
        h.run(&["DEL", "nothing"]);
        h.machine.snapshot().to_bytes()
    };
    let forward: Vec<usize> = (0..200).collect();
    let backward: Vec<usize> = (0..200).rev().collect();
    assert_eq!(build(&forward), build(&backward));
}

#[test]
fn two_machines_fed_the_same_entries_have_identical_snapshots() {
    let a = populated();
    let b = populated();
    assert_eq!(a.machine.snapshot().to_bytes(), b.machine.snapshot().to_bytes());
}

#[test]
fn a_snapshot_is_a_frozen_view_that_can_be_written_from_another_thread() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Snapshot>();
    let mut h = populated();
    let snapshot = h.machine.snapshot();
    let before = snapshot.to_bytes();
    let writer = std::thread::spawn(move || snapshot.to_bytes());
    for i in 0..1_000 {
        h.run(&["SET", &format!("more{i}"), "x"]);
        h.run(&["DEL", "a"]);
    }
    assert_eq!(writer.join().unwrap(), before);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = populated().machine.snapshot().to_bytes();
    for length in 0..bytes.len() {
        match restore(&bytes[..length]) {
            Err(SnapshotError::Truncated { offset, .. }) => assert!(offset <= length as u64),
            other => panic!("a prefix of {length} bytes gave {other:?}"),
        }
    }
}

#[test]
fn a_truncated_stream_names_what_was_expected() {
    let bytes = populated().machine.snapshot().to_bytes();
    let expected_at = |length: usize| match restore(&bytes[..length]) {
        Err(error @ SnapshotError::Truncated { .. }) => error.to_string(),
        other => panic!("a prefix of {length} bytes gave {other:?}"),
    };
    assert_eq!(expected_at(3), "snapshot ends early at byte 0: expected the magic \"RAFTKVSM\"");
    assert_eq!(expected_at(10), "snapshot ends early at byte 8: expected the format version");
    assert_eq!(expected_at(12), "snapshot ends early at byte 12: expected the length of the header record");
    assert!(expected_at(17).contains("more bytes of the header record"), "{}", expected_at(17));
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let first_key = 16 + header_len;
    assert_eq!(
        expected_at(first_key),
        format!("snapshot ends early at byte {first_key}: expected the length of key record 1 of 7")
    );
    assert!(expected_at(bytes.len() - 1).contains("the end record"), "{}", expected_at(bytes.len() - 1));
}

#[test]
fn wrong_magic_unknown_version_and_absurd_length_are_clear_errors() {
    let bytes = populated().machine.snapshot().to_bytes();
    let mut bad_magic = bytes.clone();
    bad_magic[0] ^= 1;
    assert!(matches!(restore(&bad_magic), Err(SnapshotError::BadMagic)));
    let mut bad_version = bytes.clone();
    bad_version[8] = 9;
    let error = restore(&bad_version).unwrap_err();
    assert!(matches!(error, SnapshotError::UnsupportedVersion(9)));
    assert_eq!(error.to_string(), "snapshot format version 9 is not supported (this build reads 2)");
    // Version 1 lacked the byte count; it is refused, not misread.
    let mut version_1 = bytes.clone();
    version_1[8..12].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(restore(&version_1), Err(SnapshotError::UnsupportedVersion(1))));
    // A length of 4 GiB with nothing behind it: refused before reading, nothing allocated.
    let mut huge = bytes[..12].to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        restore(&huge),
        Err(SnapshotError::RecordTooLarge { offset: 12, length }) if length == u64::from(u32::MAX)
    ));
    // A length under the limit but beyond the stream: an early end, after reading only what is there.
    let mut long = bytes[..12].to_vec();
    long.extend_from_slice(&(1u32 << 30).to_le_bytes());
    long.extend_from_slice(&[0; 100]);
    assert!(matches!(restore(&long), Err(SnapshotError::Truncated { offset: 116, .. })));
    let mut trailing = bytes.clone();
    trailing.push(0);
    let error = restore(&trailing).unwrap_err();
    assert!(
        matches!(error, SnapshotError::Malformed { offset, ref what }
            if offset == bytes.len() as u64 && what.contains("after the end record")),
        "{error}"
    );
}

#[test]
fn corrupted_input_is_an_error_never_a_panic() {
    let bytes = populated().machine.snapshot().to_bytes();
    // Flip every bit of every byte after the magic: restore must return, whatever it decides.
    for position in 12..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[position] ^= 1 << bit;
            if let Ok(machine) = restore(&flipped) {
                assert_eq!(machine.check_invariants(), Ok(()));
            }
        }
    }
}

#[test]
fn a_retried_command_after_restore_applies_once() {
    // Dissertation §6.3: the session table travels in the snapshot, so a command the old leader applied
    // and the new one re-proposes after a restart from a snapshot is answered from the cache.
    let mut h = Harness::new();
    let client_id = ClientId { node_id: 1, incarnation: 3, counter: 9 };
    h.apply(&Request {
        session: None,
        leader_time_ms: h.leader_time_ms,
        body: RequestBody::RegisterSession { client_id },
    });
    let incr = |sequence| {
        Request::session_command(
            1_700_000_000_000,
            SessionRef { client_id, sequence, lowest_unacked: 1 },
            parse(&argv(&["INCR", "counter"])).unwrap(),
        )
        .encode()
    };
    assert_eq!(h.machine.apply(2, &incr(1)), Reply::Integer(1));
    let bytes = h.machine.snapshot().to_bytes();
    let mut restored = restore(&bytes).unwrap();
    assert!(restored.has_session(&client_id));
    assert_eq!(restored.apply(3, &incr(1)), Reply::Integer(1), "the retry is answered from the cache");
    let get = parse(&argv(&["GET", "counter"])).unwrap();
    assert_eq!(restored.read(&get, restored.time_ms()), common::bulk("1"), "and did not apply again");
    assert_eq!(restored.apply(4, &incr(2)), Reply::Integer(2), "a new sequence applies");
}

#[test]
fn keys_out_of_order_are_refused() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    h.run(&["SET", "b", "2"]);
    let bytes = h.machine.snapshot().to_bytes();
    // Swap the two equally long key records.
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let first = 16 + header_len;
    let record = 4 + u32::from_le_bytes(bytes[first..first + 4].try_into().unwrap()) as usize;
    let mut swapped = bytes.clone();
    swapped[first..first + record].copy_from_slice(&bytes[first + record..first + 2 * record]);
    swapped[first + record..first + 2 * record].copy_from_slice(&bytes[first..first + record]);
    let error = restore(&swapped).unwrap_err();
    assert!(
        matches!(error, SnapshotError::Malformed { offset, ref what }
            if offset == (first + record) as u64 && what == "key record 2 of 2: keys out of order"),
        "{error}"
    );
}

/// One step of a random history: a client command (maybe through a session), a registration, or time.
#[derive(Clone, Debug)]
enum Step {
    Command(Vec<String>),
    SessionCommand { client: u64, sequence: u64, ack: u64, words: Vec<String> },
    Register(u64),
    Close(u64),
    Multi(Vec<Vec<String>>),
    Advance(u64),
}

fn words() -> impl Strategy<Value = Vec<String>> {
    let key = prop::sample::select(vec!["a", "b", "c", "n", "\u{0}k"]).prop_map(String::from);
    let value =
        prop::sample::select(vec!["", "1", "-7", "x", "hello", "9223372036854775807"]).prop_map(String::from);
    let ms = 1u64..5_000;
    prop_oneof![
        (key.clone(), value.clone()).prop_map(|(k, v)| vec!["SET".into(), k, v]),
        (key.clone(), value.clone(), prop::sample::select(vec!["NX", "XX", "GET", "KEEPTTL"]))
            .prop_map(|(k, v, o)| vec!["SET".into(), k, v, o.into()]),
        (key.clone(), value.clone(), ms.clone()).prop_map(|(k, v, t)| vec![
            "SET".into(),
            k,
            v,
            "PX".into(),
            t.to_string()
        ]),
        (key.clone(), ms.clone()).prop_map(|(k, t)| vec!["PEXPIRE".into(), k, t.to_string()]),
        key.clone().prop_map(|k| vec!["INCR".into(), k]),
        (key.clone(), -5i64..5).prop_map(|(k, d)| vec!["INCRBY".into(), k, d.to_string()]),
        (key.clone(), value.clone()).prop_map(|(k, v)| vec!["APPEND".into(), k, v]),
        (key.clone(), key.clone()).prop_map(|(k, j)| vec!["DEL".into(), k, j]),
        key.clone().prop_map(|k| vec!["PERSIST".into(), k]),
        (key.clone(), value.clone()).prop_map(|(k, v)| vec!["GETSET".into(), k, v]),
        (key.clone(), value.clone(), key.clone()).prop_map(|(k, v, j)| vec![
            "MSET".into(),
            k,
            v.clone(),
            j,
            v
        ]),
        (key.clone(), value.clone(), value.clone()).prop_map(|(k, e, n)| vec!["CAS".into(), k, e, n]),
        (key.clone(), value.clone()).prop_map(|(k, n)| vec!["CAS".into(), k, n]),
        key.clone().prop_map(|k| vec!["GET".into(), k]),
        key.clone().prop_map(|k| vec!["PTTL".into(), k]),
        (key.clone(), key).prop_map(|(k, j)| vec!["MGET".into(), k, j]),
        Just(vec!["DBSIZE".to_string()]),
        (0u64..3).prop_map(|c| vec!["SCAN".into(), "0".into(), "COUNT".into(), (c + 1).to_string()]),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => words().prop_map(Step::Command),
        3 => (0u64..3, 1u64..8, 0u64..4, words())
            .prop_map(|(client, sequence, ack, words)| Step::SessionCommand { client, sequence, ack, words }),
        2 => (0u64..3).prop_map(Step::Register),
        1 => (0u64..3).prop_map(Step::Close),
        1 => prop::collection::vec(words(), 1..4).prop_map(Step::Multi),
        2 => (0u64..3_000).prop_map(Step::Advance),
    ]
}

fn to_bytes(words: &[String]) -> Vec<Bytes> {
    words.iter().map(|w| Bytes::from(w.clone())).collect()
}

/// Turns steps into encoded log entries (time only moves through the entries' leader times).
fn entries(steps: &[Step]) -> Vec<Bytes> {
    let mut leader_time_ms = 1_000_000;
    let mut out = Vec::new();
    for step in steps {
        let request = match step {
            Step::Advance(ms) => {
                leader_time_ms += ms;
                continue;
            }
            Step::Command(words) => match parse(&to_bytes(words)) {
                Ok(command) => Request::command(leader_time_ms, command),
                Err(_) => continue,
            },
            Step::SessionCommand { client, sequence, ack, words } => match parse(&to_bytes(words)) {
                Ok(command) => {
                    let client_id = ClientId { node_id: 1, incarnation: 1, counter: *client };
                    Request::session_command(
                        leader_time_ms,
                        SessionRef { client_id, sequence: *sequence, lowest_unacked: *ack },
                        command,
                    )
                }
                Err(_) => continue,
            },
            Step::Register(client) => Request {
                session: None,
                leader_time_ms,
                body: RequestBody::RegisterSession {
                    client_id: ClientId { node_id: 1, incarnation: 1, counter: *client },
                },
            },
            Step::Close(client) => Request {
                session: None,
                leader_time_ms,
                body: RequestBody::CloseSession {
                    client_id: ClientId { node_id: 1, incarnation: 1, counter: *client },
                },
            },
            Step::Multi(commands) => {
                let mut transaction = kv::Transaction::new();
                for words in commands {
                    let _ = transaction.queue(&to_bytes(words));
                }
                match transaction.exec() {
                    Ok(command) => Request::command(leader_time_ms, command),
                    Err(_) => continue,
                }
            }
        };
        out.push(request.encode());
    }
    out
}

fn small_config() -> KvConfig {
    KvConfig {
        maxmemory_bytes: 600,
        session_timeout_ms: 5_000,
        max_sessions: 2,
        max_replies_per_session: 3,
        max_expired_keys_removed_per_entry: 1,
        max_value_bytes: 64,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Snapshot at any point, restore, and the restored machine answers every later entry exactly as the
    /// original does, ending in identical snapshot bytes.
    #[test]
    fn snapshot_restore_gives_identical_state_and_future_replies(
        steps in prop::collection::vec(step(), 1..80),
        cut in 0usize..100,
    ) {
        let entries = entries(&steps);
        let cut = cut.min(entries.len());
        let mut original = KvStateMachine::new(small_config());
        for (i, entry) in entries[..cut].iter().enumerate() {
            original.apply(i as u64 + 1, entry);
        }
        let bytes = original.snapshot().to_bytes();
        let mut restored = KvStateMachine::restore(small_config(), bytes.as_slice()).unwrap();
        prop_assert_eq!(restored.check_invariants(), Ok(()));
        prop_assert_eq!(&restored.snapshot().to_bytes(), &bytes);
        for (i, entry) in entries.iter().enumerate().skip(cut) {
            let index = i as u64 + 1;
            prop_assert_eq!(original.apply(index, entry), restored.apply(index, entry), "entry {}", index);
        }
        prop_assert_eq!(original.check_invariants(), Ok(()));
        prop_assert_eq!(original.snapshot().to_bytes(), restored.snapshot().to_bytes());
    }

    /// Two replicas fed the same entries end with identical snapshot bytes and gave identical replies;
    /// reads agree with the same command applied through the log.
    #[test]
    fn replicas_are_deterministic(steps in prop::collection::vec(step(), 1..80)) {
        let entries = entries(&steps);
        let mut a = KvStateMachine::new(small_config());
        let mut b = KvStateMachine::new(small_config());
        for (i, entry) in entries.iter().enumerate() {
            let index = i as u64 + 1;
            if let Ok(Request { body: RequestBody::Command(command), session: None, leader_time_ms }) = Request::decode(entry) {
                if command.is_read() {
                    prop_assert_eq!(a.read(&command, leader_time_ms), b.clone().apply(index, entry));
                }
            }
            prop_assert_eq!(a.apply(index, entry), b.apply(index, entry));
        }
        prop_assert_eq!(a.snapshot().to_bytes(), b.snapshot().to_bytes());
    }
}

/// The format is a spec, not whatever the code happens to write: these bytes are version 2 of a small
/// state (one key with a deadline, one key without, one session with one cached reply). If this test
/// fails, the format changed: bump `SNAPSHOT_FORMAT_VERSION` and update the spec in the module docs.
#[test]
fn the_format_is_pinned_by_a_golden_stream() {
    let mut h = Harness::new();
    h.leader_time_ms = 1_000;
    h.run(&["SET", "k", "v", "PXAT", "5000"]);
    let client_id = ClientId { node_id: 1, incarnation: 2, counter: 3 };
    h.apply(&Request {
        session: None,
        leader_time_ms: 1_000,
        body: RequestBody::RegisterSession { client_id },
    });
    let incr = parse(&argv(&["INCR", "n"])).unwrap();
    h.apply(&Request::session_command(1_000, SessionRef { client_id, sequence: 1, lowest_unacked: 1 }, incr));
    let hex: String = h.machine.snapshot().to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    // The same bytes, annotated, are the example in the `kv::snapshot` module docs.
    let expected = [
        "524146544b56534d",               // magic "RAFTKVSM"
        "02000000",                       // version 2
        "08000000 00 03 e807 8401 02 01", // Header: index 3, time 1000, used_bytes 132, 2 keys, 1 session
        "06000000 01 016e 0131 00",       // Key "n" = "1", no deadline (key order is by hash: "n" before "k")
        "08000000 01 016b 0176 018827",   // Key "k" = "v", deadline 5000
        "08000000 02 010203 e807 01 01",  // Session 1.2.3, active at 1000, watermark 1, 1 reply
        "04000000 03 01 0302",            // Reply: sequence 1, Integer(1)
        "01000000 04",                    // End
    ]
    .concat()
    .replace(' ', "");
    assert_eq!(hex, expected);
}
