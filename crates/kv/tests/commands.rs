//! One test (or a few) per command, against Redis's documented behaviour.

mod common;

use bytes::Bytes;
use common::{bulk, err, Harness};
use kv::{errors, Command, KvConfig, Reply};

#[test]
fn get_set_basic_and_binary_safe() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["GET", "k"]), Reply::Nil);
    assert_eq!(h.run(&["SET", "k", "v"]), Reply::Ok);
    assert_eq!(h.run(&["get", "k"]), bulk("v"));
    let key = Bytes::from_static(b"\x00\xff\r\nkey");
    let value = Bytes::from_static(b"\x00\x01\x02\xff");
    let set = Command::Set {
        key: key.clone(),
        value: value.clone(),
        condition: Default::default(),
        get: false,
        expiry: Default::default(),
    };
    assert_eq!(h.apply_command(set), Reply::Ok);
    assert_eq!(h.machine.read(&Command::Get { key }, 0), Reply::Bulk(value));
}

#[test]
fn set_nx_xx() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["SET", "k", "1", "XX"]), Reply::Nil);
    assert_eq!(h.run(&["GET", "k"]), Reply::Nil);
    assert_eq!(h.run(&["SET", "k", "1", "NX"]), Reply::Ok);
    assert_eq!(h.run(&["SET", "k", "2", "NX"]), Reply::Nil);
    assert_eq!(h.run(&["GET", "k"]), bulk("1"));
    assert_eq!(h.run(&["SET", "k", "3", "xx"]), Reply::Ok);
    assert_eq!(h.run(&["GET", "k"]), bulk("3"));
}

#[test]
fn set_get_option_returns_old_value() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["SET", "k", "1", "GET"]), Reply::Nil);
    assert_eq!(h.run(&["SET", "k", "2", "GET"]), bulk("1"));
    // NX GET on an existing key: returns the old value and does not set (Redis 7).
    assert_eq!(h.run(&["SET", "k", "3", "NX", "GET"]), bulk("2"));
    assert_eq!(h.run(&["GET", "k"]), bulk("2"));
    // NX GET on an absent key: sets and returns nil.
    assert_eq!(h.run(&["SET", "new", "x", "NX", "GET"]), Reply::Nil);
    assert_eq!(h.run(&["GET", "new"]), bulk("x"));
    // XX GET on an absent key: nil, not set.
    assert_eq!(h.run(&["SET", "absent", "x", "XX", "GET"]), Reply::Nil);
    assert_eq!(h.run(&["EXISTS", "absent"]), Reply::Integer(0));
}

#[test]
fn set_ex_px_expire_by_leader_time() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["SET", "k", "v", "EX", "10"]), Reply::Ok);
    assert_eq!(h.run(&["TTL", "k"]), Reply::Integer(10));
    assert_eq!(h.run(&["PTTL", "k"]), Reply::Integer(10_000));
    h.advance_ms(10_000);
    // Live while now <= deadline.
    assert_eq!(h.run(&["GET", "k"]), bulk("v"));
    assert_eq!(h.run(&["PTTL", "k"]), Reply::Integer(0));
    h.advance_ms(1);
    assert_eq!(h.run(&["GET", "k"]), Reply::Nil);
    assert_eq!(h.run(&["TTL", "k"]), Reply::Integer(-2));
    assert_eq!(h.run(&["EXISTS", "k"]), Reply::Integer(0));

    assert_eq!(h.run(&["SET", "p", "v", "PX", "1500"]), Reply::Ok);
    assert_eq!(h.run(&["TTL", "p"]), Reply::Integer(2), "TTL rounds to the nearest second, as Redis");
    h.advance_ms(1_499);
    assert_eq!(h.run(&["TTL", "p"]), Reply::Integer(0));
    assert_eq!(h.run(&["PTTL", "p"]), Reply::Integer(1));
    h.advance_ms(2);
    assert_eq!(h.run(&["GET", "p"]), Reply::Nil);
}

#[test]
fn expiry_uses_entry_time_not_the_order_of_clocks() {
    // A new leader whose clock is behind must not bring an expired key back.
    let mut h = Harness::new();
    h.run(&["SET", "k", "v", "PX", "100"]);
    h.advance_ms(200);
    h.run(&["SET", "other", "x"]);
    assert_eq!(h.run(&["GET", "k"]), Reply::Nil);
    h.leader_time_ms -= 150; // the next leader's clock lags
    h.run(&["SET", "third", "x"]);
    assert_eq!(h.machine.read(&Command::Get { key: Bytes::from("k") }, 0), Reply::Nil);
    assert_eq!(h.machine.time_ms(), h.leader_time_ms + 150);
}

#[test]
fn set_keepttl_exat_pxat_and_plain_set_clears_ttl() {
    let mut h = Harness::new();
    let now = h.leader_time_ms;
    h.run(&["SET", "k", "v", "EX", "100"]);
    h.run(&["SET", "k", "w", "KEEPTTL"]);
    assert_eq!(h.run(&["TTL", "k"]), Reply::Integer(100));
    h.run(&["SET", "k", "x"]);
    assert_eq!(h.run(&["TTL", "k"]), Reply::Integer(-1));
    let at = (now + 5_000).to_string();
    h.run(&["SET", "k", "y", "PXAT", &at]);
    assert_eq!(h.run(&["PTTL", "k"]), Reply::Integer(5_000));
    let at_seconds = (now / 1000 + 7).to_string();
    h.run(&["SET", "s", "y", "EXAT", &at_seconds]);
    assert_eq!(h.run(&["TTL", "s"]), Reply::Integer(7));
    // A deadline in the past deletes the key.
    h.run(&["SET", "k", "z", "PXAT", "1"]);
    assert_eq!(h.run(&["EXISTS", "k"]), Reply::Integer(0));
    assert_eq!(h.machine.check_invariants(), Ok(()));
}

#[test]
fn set_invalid_expire_times() {
    let mut h = Harness::new();
    let invalid = err("ERR invalid expire time in 'set' command");
    assert_eq!(h.run(&["SET", "k", "v", "EX", "0"]), invalid);
    assert_eq!(h.run(&["SET", "k", "v", "PX", "-5"]), invalid);
    assert_eq!(h.run(&["SET", "k", "v", "EX", "9223372036854775807"]), invalid);
    // Valid at parse time, but the deadline overflows at the entry's leader time.
    assert_eq!(h.run(&["SET", "k", "v", "PX", "9223372036854775807"]), invalid);
    assert_eq!(h.run(&["SET", "k", "v", "EX", "ten"]), err(errors::NOT_AN_INTEGER));
    assert_eq!(h.run(&["SETEX", "k", "0", "v"]), err("ERR invalid expire time in 'setex' command"));
    assert_eq!(h.run(&["EXISTS", "k"]), Reply::Integer(0));
    assert_eq!(h.run(&["SETEX", "k", "5", "v"]), Reply::Ok);
    assert_eq!(h.run(&["PSETEX", "j", "5", "v"]), Reply::Ok);
    assert_eq!(h.run(&["PTTL", "k"]), Reply::Integer(5_000));
    assert_eq!(h.run(&["PTTL", "j"]), Reply::Integer(5));
}

#[test]
fn del_exists_unlink() {
    let mut h = Harness::new();
    h.run(&["MSET", "a", "1", "b", "2", "c", "3"]);
    assert_eq!(h.run(&["EXISTS", "a", "a", "zz", "b"]), Reply::Integer(3));
    assert_eq!(h.run(&["DEL", "a", "zz", "a"]), Reply::Integer(1));
    assert_eq!(h.run(&["UNLINK", "b"]), Reply::Integer(1));
    assert_eq!(h.run(&["DBSIZE"]), Reply::Integer(1));
    // Deleting an expired key does not count.
    h.run(&["SET", "e", "v", "PX", "1"]);
    h.advance_ms(5);
    assert_eq!(h.run(&["DEL", "e"]), Reply::Integer(0));
}

#[test]
fn incr_family() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["INCR", "n"]), Reply::Integer(1));
    assert_eq!(h.run(&["INCRBY", "n", "41"]), Reply::Integer(42));
    assert_eq!(h.run(&["DECR", "n"]), Reply::Integer(41));
    assert_eq!(h.run(&["DECRBY", "n", "-9"]), Reply::Integer(50));
    assert_eq!(h.run(&["GET", "n"]), bulk("50"));
    assert_eq!(h.run(&["DECRBY", "fresh", "3"]), Reply::Integer(-3));
}

#[test]
fn incr_keeps_ttl() {
    let mut h = Harness::new();
    h.run(&["SET", "n", "1", "EX", "100"]);
    h.run(&["INCR", "n"]);
    assert_eq!(h.run(&["TTL", "n"]), Reply::Integer(100));
}

#[test]
fn incr_on_non_integer_is_an_error_and_changes_nothing() {
    let mut h = Harness::new();
    for value in ["abc", "", " 1", "1 ", "+1", "01", "-0", "1.5", "99999999999999999999"] {
        h.run(&["SET", "k", value]);
        assert_eq!(h.run(&["INCR", "k"]), err(errors::NOT_AN_INTEGER), "value {value:?}");
        assert_eq!(h.run(&["GET", "k"]), bulk(value));
    }
    h.run(&["SET", "k", "-9223372036854775808"]);
    assert_eq!(h.run(&["INCR", "k"]), Reply::Integer(-9223372036854775807));
}

#[test]
fn incr_overflow_is_an_error() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "9223372036854775807"]);
    assert_eq!(h.run(&["INCR", "k"]), err("ERR increment or decrement would overflow"));
    h.run(&["SET", "k", "-9223372036854775808"]);
    assert_eq!(h.run(&["DECR", "k"]), err("ERR increment or decrement would overflow"));
    assert_eq!(h.run(&["DECRBY", "k", "-9223372036854775808"]), err("ERR decrement would overflow"));
    assert_eq!(h.run(&["INCRBY", "k", "9223372036854775808"]), err(errors::NOT_AN_INTEGER));
    assert_eq!(h.run(&["GET", "k"]), bulk("-9223372036854775808"));
}

#[test]
fn append_and_strlen() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["STRLEN", "k"]), Reply::Integer(0));
    assert_eq!(h.run(&["APPEND", "k", "Hello"]), Reply::Integer(5));
    assert_eq!(h.run(&["APPEND", "k", " World"]), Reply::Integer(11));
    assert_eq!(h.run(&["GET", "k"]), bulk("Hello World"));
    assert_eq!(h.run(&["STRLEN", "k"]), Reply::Integer(11));
    h.run(&["EXPIRE", "k", "50"]);
    h.run(&["APPEND", "k", "!"]);
    assert_eq!(h.run(&["TTL", "k"]), Reply::Integer(50), "APPEND keeps the TTL");
}

#[test]
fn mget_mset() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["MSET", "a", "1", "b", "2"]), Reply::Ok);
    assert_eq!(h.run(&["MGET", "a", "nope", "b"]), Reply::Array(vec![bulk("1"), Reply::Nil, bulk("2")]));
    // MSET clears TTLs; a later pair for the same key wins.
    h.run(&["EXPIRE", "a", "10"]);
    h.run(&["MSET", "a", "x", "a", "y"]);
    assert_eq!(h.run(&["GET", "a"]), bulk("y"));
    assert_eq!(h.run(&["TTL", "a"]), Reply::Integer(-1));
}

#[test]
fn getset_returns_old_and_clears_ttl() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["GETSET", "k", "1"]), Reply::Nil);
    h.run(&["EXPIRE", "k", "10"]);
    assert_eq!(h.run(&["GETSET", "k", "2"]), bulk("1"));
    assert_eq!(h.run(&["GET", "k"]), bulk("2"));
    assert_eq!(h.run(&["TTL", "k"]), Reply::Integer(-1));
}

#[test]
fn expire_pexpire_ttl_persist() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["EXPIRE", "k", "10"]), Reply::Integer(0), "absent key");
    h.run(&["SET", "k", "v"]);
    assert_eq!(h.run(&["TTL", "k"]), Reply::Integer(-1));
    assert_eq!(h.run(&["PERSIST", "k"]), Reply::Integer(0));
    assert_eq!(h.run(&["EXPIRE", "k", "10"]), Reply::Integer(1));
    assert_eq!(h.run(&["PEXPIRE", "k", "2500"]), Reply::Integer(1));
    assert_eq!(h.run(&["PTTL", "k"]), Reply::Integer(2500));
    assert_eq!(h.run(&["PERSIST", "k"]), Reply::Integer(1));
    assert_eq!(h.run(&["TTL", "k"]), Reply::Integer(-1));
    // A non-positive TTL deletes the key and still answers 1.
    assert_eq!(h.run(&["EXPIRE", "k", "0"]), Reply::Integer(1));
    assert_eq!(h.run(&["EXISTS", "k"]), Reply::Integer(0));
    h.run(&["SET", "k", "v"]);
    assert_eq!(h.run(&["PEXPIRE", "k", "-1"]), Reply::Integer(1));
    assert_eq!(h.run(&["GET", "k"]), Reply::Nil);
    assert_eq!(
        h.run(&["EXPIRE", "k", "9223372036854775807"]),
        err("ERR invalid expire time in 'expire' command")
    );
    h.run(&["SET", "k", "v"]);
    assert_eq!(
        h.run(&["PEXPIRE", "k", "9223372036854775807"]),
        err("ERR invalid expire time in 'pexpire' command")
    );
    assert_eq!(h.machine.check_invariants(), Ok(()));
}

#[test]
fn expire_options() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "v"]);
    assert_eq!(h.run(&["EXPIRE", "k", "10", "XX"]), Reply::Integer(0));
    assert_eq!(h.run(&["EXPIRE", "k", "10", "GT"]), Reply::Integer(0), "no TTL counts as infinite");
    assert_eq!(h.run(&["EXPIRE", "k", "10", "NX"]), Reply::Integer(1));
    assert_eq!(h.run(&["EXPIRE", "k", "20", "NX"]), Reply::Integer(0));
    assert_eq!(h.run(&["EXPIRE", "k", "5", "GT"]), Reply::Integer(0));
    assert_eq!(h.run(&["EXPIRE", "k", "20", "gt"]), Reply::Integer(1));
    assert_eq!(h.run(&["EXPIRE", "k", "30", "LT"]), Reply::Integer(0));
    assert_eq!(h.run(&["EXPIRE", "k", "15", "XX", "LT"]), Reply::Integer(1));
    assert_eq!(h.run(&["TTL", "k"]), Reply::Integer(15));
    assert_eq!(
        h.run(&["EXPIRE", "k", "1", "NX", "XX"]),
        err("ERR NX and XX, GT or LT options at the same time are not compatible")
    );
    assert_eq!(
        h.run(&["EXPIRE", "k", "1", "GT", "LT"]),
        err("ERR GT and LT options at the same time are not compatible")
    );
    assert_eq!(h.run(&["EXPIRE", "k", "1", "FOO"]), err("ERR Unsupported option FOO"));
}

#[test]
fn dbsize_counts_live_keys_only() {
    let mut h = Harness::new();
    h.run(&["MSET", "a", "1", "b", "2"]);
    h.run(&["SET", "c", "3", "PX", "10"]);
    assert_eq!(h.run(&["DBSIZE"]), Reply::Integer(3));
    h.advance_ms(11);
    // Before any entry removes it, the expired key is already not counted by a read at the later time.
    assert_eq!(h.run(&["DBSIZE"]), Reply::Integer(2));
    h.run(&["SET", "d", "4"]);
    assert_eq!(h.run(&["DBSIZE"]), Reply::Integer(3));
    assert_eq!(h.machine.key_count(), 3);
}

#[test]
fn expired_keys_are_removed_deterministically_and_bounded_per_entry() {
    let config = KvConfig { max_expired_keys_removed_per_entry: 2, ..KvConfig::default() };
    let mut h = Harness::with_config(config);
    for i in 0..5 {
        h.run(&["SET", &format!("k{i}"), "v", "PX", "10"]);
    }
    let full = h.machine.used_bytes();
    h.advance_ms(20);
    h.run(&["SET", "x", "y"]);
    let per_key = full / 5;
    // Two expired keys went away with the entry, three remain stored (but invisible).
    assert_eq!(h.machine.used_bytes(), full - 2 * per_key + (1 + 1 + kv::ENTRY_OVERHEAD_BYTES));
    assert_eq!(h.machine.key_count(), 1);
    h.run(&["SET", "x", "y"]);
    h.run(&["SET", "x", "y"]);
    assert_eq!(h.machine.used_bytes(), 1 + 1 + kv::ENTRY_OVERHEAD_BYTES);
    assert_eq!(h.machine.check_invariants(), Ok(()));
}

#[test]
fn scan_visits_every_key_once_in_a_stable_order() {
    let mut h = Harness::new();
    for i in 0..100 {
        h.run(&["SET", &format!("key:{i}"), "v"]);
    }
    h.run(&["SET", "other", "v"]);
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    let mut calls = 0;
    loop {
        let Reply::Array(parts) = h.run(&["SCAN", &cursor, "MATCH", "key:*", "COUNT", "7"]) else { panic!() };
        let [Reply::Bulk(next), Reply::Array(keys)] = parts.as_slice() else { panic!("{parts:?}") };
        seen.extend(keys.iter().cloned());
        cursor = String::from_utf8(next.to_vec()).unwrap();
        calls += 1;
        if cursor == "0" {
            break;
        }
        assert!(calls < 100);
    }
    assert_eq!(seen.len(), 100);
    let mut sorted = seen.clone();
    sorted.sort_by_key(|r| format!("{r:?}"));
    sorted.dedup();
    assert_eq!(sorted.len(), 100, "no duplicates");
    assert!(calls >= 100 / 7, "COUNT bounds the work per call");
    // The same state scans the same way.
    assert_eq!(h.run(&["SCAN", "0", "COUNT", "5"]), h.run(&["SCAN", "0", "COUNT", "5"]));
}

#[test]
fn scan_keeps_keys_present_throughout_while_others_change() {
    let mut h = Harness::new();
    for i in 0..50 {
        h.run(&["SET", &format!("stable:{i}"), "v"]);
    }
    let mut cursor = "0".to_string();
    let mut seen = std::collections::BTreeSet::new();
    let mut round = 0;
    loop {
        let Reply::Array(parts) = h.run(&["SCAN", &cursor, "COUNT", "3"]) else { panic!() };
        let [Reply::Bulk(next), Reply::Array(keys)] = parts.as_slice() else { panic!() };
        for key in keys {
            let Reply::Bulk(key) = key else { panic!() };
            seen.insert(key.clone());
        }
        // Churn between calls: add and delete other keys.
        h.run(&["SET", &format!("churn:{round}"), "v"]);
        if round > 2 {
            h.run(&["DEL", &format!("churn:{}", round - 2)]);
        }
        round += 1;
        cursor = String::from_utf8(next.to_vec()).unwrap();
        if cursor == "0" {
            break;
        }
        assert!(round < 1000);
    }
    for i in 0..50 {
        assert!(seen.contains(format!("stable:{i}").as_bytes()), "stable:{i} missing");
    }
}

#[test]
fn scan_type_and_expired_keys() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    h.run(&["SET", "b", "1", "PX", "5"]);
    h.advance_ms(10);
    let scan = |h: &mut Harness, words: &[&str]| -> Vec<Reply> {
        let Reply::Array(parts) = h.run(words) else { panic!() };
        let Reply::Array(keys) = &parts[1] else { panic!() };
        keys.clone()
    };
    assert_eq!(scan(&mut h, &["SCAN", "0", "COUNT", "100"]), vec![bulk("a")]);
    assert_eq!(scan(&mut h, &["SCAN", "0", "TYPE", "string", "COUNT", "100"]), vec![bulk("a")]);
    assert_eq!(scan(&mut h, &["SCAN", "0", "TYPE", "hash", "COUNT", "100"]), Vec::<Reply>::new());
}

#[test]
fn cas_compares_and_sets() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["CAS", "k", "new"]), Reply::Integer(1), "expected absent, is absent");
    assert_eq!(h.run(&["CAS", "k", "again"]), Reply::Integer(0), "expected absent, is present");
    assert_eq!(h.run(&["CAS", "k", "wrong", "x"]), Reply::Integer(0));
    assert_eq!(h.run(&["CAS", "k", "new", "x"]), Reply::Integer(1));
    assert_eq!(h.run(&["GET", "k"]), bulk("x"));
    let cas = Command::Cas { key: Bytes::from("k"), expected: Some(Bytes::from("x")), new: Bytes::from("") };
    assert_eq!(h.apply_command(cas), Reply::Integer(1));
    assert_eq!(h.run(&["GET", "k"]), bulk(""), "empty string differs from absent");
    assert_eq!(h.run(&["CAS", "k", "y"]), Reply::Integer(0));
}

#[test]
fn reads_are_classified() {
    for words in [
        &["GET", "k"][..],
        &["EXISTS", "k"],
        &["STRLEN", "k"],
        &["MGET", "k"],
        &["TTL", "k"],
        &["PTTL", "k"],
        &["DBSIZE"],
        &["SCAN", "0"],
    ] {
        assert!(kv::parse(&common::argv(words)).unwrap().is_read(), "{words:?}");
    }
    for words in [
        &["SET", "k", "v"][..],
        &["DEL", "k"],
        &["INCR", "k"],
        &["APPEND", "k", "v"],
        &["MSET", "k", "v"],
        &["GETSET", "k", "v"],
        &["EXPIRE", "k", "1"],
        &["PERSIST", "k"],
        &["CAS", "k", "v"],
    ] {
        assert!(!kv::parse(&common::argv(words)).unwrap().is_read(), "{words:?}");
    }
    let h = Harness::new();
    let set = kv::parse(&common::argv(&["SET", "k", "v"])).unwrap();
    assert_eq!(h.machine.read(&set, 0), err(errors::NOT_READ_ONLY));
}

#[test]
fn malformed_entries_change_nothing_but_the_index() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "v"]);
    let before = h.machine.snapshot().to_bytes();
    for bytes in [&b""[..], b"\x01", b"\x02garbage", b"\x01\xff\xff\xff\xff\xff"] {
        h.index += 1;
        assert_eq!(h.machine.apply(h.index, bytes), err(errors::MALFORMED_REQUEST));
    }
    let mut expected = kv::KvStateMachine::restore(KvConfig::default(), before.as_slice()).unwrap();
    expected.apply_other(h.index);
    assert_eq!(h.machine.snapshot().to_bytes(), expected.snapshot().to_bytes());
}

#[test]
#[should_panic(expected = "entries must apply once, in order")]
fn applying_an_index_twice_is_a_bug() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "v"]);
    let entry = kv::Request::command(0, Command::DbSize).encode();
    h.machine.apply(h.index, &entry);
}
