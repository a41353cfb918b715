//! Parser error texts, byte for byte as Redis 7 writes them.

mod common;

use common::argv;
use kv::{parse, Command, ParseError, SetCondition, SetExpiry, Transaction};

fn error_text(words: &[&str]) -> String {
    parse(&argv(words)).unwrap_err().to_string()
}

#[test]
fn wrong_number_of_arguments_names_the_command_in_lower_case() {
    let cases: &[(&[&str], &str)] = &[
        (&["GET"], "get"),
        (&["get", "a", "b"], "get"),
        (&["SET", "k"], "set"),
        (&["DEL"], "del"),
        (&["Exists"], "exists"),
        (&["INCR"], "incr"),
        (&["INCRBY", "k"], "incrby"),
        (&["DECR", "a", "b"], "decr"),
        (&["DECRBY", "k"], "decrby"),
        (&["APPEND", "k"], "append"),
        (&["STRLEN"], "strlen"),
        (&["MGET"], "mget"),
        (&["MSET", "k"], "mset"),
        (&["MSET", "k", "v", "k2"], "mset"),
        (&["GETSET", "k"], "getset"),
        (&["EXPIRE", "k"], "expire"),
        (&["PEXPIRE", "k"], "pexpire"),
        (&["TTL"], "ttl"),
        (&["PTTL", "a", "b"], "pttl"),
        (&["PERSIST"], "persist"),
        (&["DBSIZE", "x"], "dbsize"),
        (&["SCAN"], "scan"),
        (&["CAS", "k"], "cas"),
        (&["SETEX", "k", "1"], "setex"),
    ];
    for (words, name) in cases {
        assert_eq!(
            error_text(words),
            format!("ERR wrong number of arguments for '{name}' command"),
            "{words:?}"
        );
    }
}

#[test]
fn integers_are_strict() {
    for bad in ["abc", "", " 1", "1 ", "+1", "01", "-0", "1.0", "9223372036854775808", "-9223372036854775809"]
    {
        assert_eq!(
            error_text(&["INCRBY", "k", bad]),
            "ERR value is not an integer or out of range",
            "{bad:?}"
        );
    }
    assert!(parse(&argv(&["INCRBY", "k", "-9223372036854775808"])).is_ok());
    assert!(parse(&argv(&["INCRBY", "k", "0"])).is_ok());
    assert_eq!(kv::parse_i64(b"9223372036854775807"), Ok(i64::MAX));
    assert_eq!(kv::parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
}

#[test]
fn syntax_errors() {
    for words in [
        &["SET", "k", "v", "NX", "XX"][..],
        &["SET", "k", "v", "XX", "NX"],
        &["SET", "k", "v", "EX"],
        &["SET", "k", "v", "EX", "1", "PX", "1"],
        &["SET", "k", "v", "KEEPTTL", "EX", "1"],
        &["SET", "k", "v", "EX", "1", "KEEPTTL"],
        &["SET", "k", "v", "BOGUS"],
        &["SCAN", "0", "COUNT"],
        &["SCAN", "0", "COUNT", "0"],
        &["SCAN", "0", "COUNT", "-1"],
        &["SCAN", "0", "BOGUS", "x"],
    ] {
        assert_eq!(error_text(words), "ERR syntax error", "{words:?}");
    }
    assert_eq!(error_text(&["SCAN", "x"]), "ERR invalid cursor");
    assert_eq!(error_text(&["SCAN", "-1"]), "ERR invalid cursor");
    assert_eq!(error_text(&["SCAN", "18446744073709551616"]), "ERR invalid cursor");
    assert_eq!(error_text(&["SCAN", "0", "COUNT", "x"]), "ERR value is not an integer or out of range");
}

#[test]
fn unknown_command_text_matches_redis() {
    assert_eq!(error_text(&["foo"]), "ERR unknown command 'foo', with args beginning with: ");
    assert_eq!(
        error_text(&["FOO", "a", "b c"]),
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b c' "
    );
    assert_eq!(
        error_text(&["x\r\ny", "a\nb"]),
        "ERR unknown command 'x  y', with args beginning with: 'a b' "
    );
    let long = "z".repeat(300);
    let text = error_text(&["nope", &long, "next"]);
    assert_eq!(text, format!("ERR unknown command 'nope', with args beginning with: '{}' ", "z".repeat(128)));
    // Connection-level commands are the server's; they are unknown here.
    assert!(matches!(parse(&argv(&["PING"])), Err(ParseError::UnknownCommand(_))));
    assert_eq!(parse(&[]), Err(ParseError::Empty));
}

#[test]
fn names_and_options_are_case_insensitive() {
    let command = parse(&argv(&["sEt", "K", "V", "nx", "Get", "pX", "100"])).unwrap();
    assert_eq!(
        command,
        Command::Set {
            key: "K".into(),
            value: "V".into(),
            condition: SetCondition::IfAbsent,
            get: true,
            expiry: SetExpiry::RelativeMs(100),
        }
    );
    assert_eq!(
        parse(&argv(&["Ex", "k", "1"])).unwrap_err().to_string().get(..19),
        Some("ERR unknown command")
    );
    assert_eq!(parse(&argv(&["decrby", "k", "5"])).unwrap(), Command::IncrBy { key: "k".into(), delta: -5 });
}

#[test]
fn transaction_aborts_on_a_queued_parse_error() {
    let mut transaction = Transaction::new();
    assert!(transaction.queue(&argv(&["SET", "a", "1"])).is_ok());
    let error = transaction.queue(&argv(&["INCRBY", "a", "x"])).unwrap_err();
    assert_eq!(error.to_string(), "ERR value is not an integer or out of range");
    assert!(transaction.queue(&argv(&["SET", "b", "2"])).is_ok());
    assert_eq!(transaction.len(), 2);
    assert_eq!(
        transaction.exec().unwrap_err(),
        kv::Reply::error("EXECABORT Transaction discarded because of previous errors.")
    );

    let mut transaction = Transaction::new();
    transaction.queue(&argv(&["GET", "a"])).unwrap();
    transaction.queue(&argv(&["MGET", "a", "b"])).unwrap();
    let command = transaction.exec().unwrap();
    assert!(command.is_read(), "a transaction of reads may be served by ReadIndex");
    assert_eq!(command.name(), "exec");
}

mod fuzz {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn token() -> impl Strategy<Value = Bytes> {
        let words = prop::sample::select(vec![
            "k",
            "v",
            "",
            "NX",
            "xx",
            "GET",
            "EX",
            "px",
            "EXAT",
            "PXAT",
            "KEEPTTL",
            "GT",
            "LT",
            "MATCH",
            "COUNT",
            "TYPE",
            "string",
            "*",
            "k*",
            "0",
            "1",
            "-1",
            "10",
            "01",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "1.5",
            "\u{0}\r\n",
        ]);
        prop_oneof![
            8 => words.prop_map(|w| Bytes::copy_from_slice(w.as_bytes())),
            1 => prop::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from),
        ]
    }

    fn name() -> impl Strategy<Value = Bytes> {
        prop::sample::select(vec![
            "GET", "set", "SETEX", "psetex", "DEL", "unlink", "EXISTS", "INCR", "decr", "INCRBY", "DECRBY",
            "APPEND", "STRLEN", "MGET", "MSET", "GETSET", "EXPIRE", "PEXPIRE", "TTL", "PTTL", "PERSIST",
            "DBSIZE", "SCAN", "CAS", "nope",
        ])
        .prop_map(|w| Bytes::copy_from_slice(w.as_bytes()))
    }

    proptest! {
        /// The parser never panics, and whatever it accepts survives `to_argv` unchanged; `Display` works
        /// on all of it.
        #[test]
        fn parse_never_panics_and_to_argv_round_trips(
            name in name(),
            args in prop::collection::vec(token(), 0..7),
        ) {
            let mut argv = vec![name];
            argv.extend(args);
            if let Ok(command) = parse(&argv) {
                prop_assert_eq!(parse(&command.to_argv()), Ok(command.clone()));
                prop_assert!(!command.to_string().is_empty());
            }
        }
    }

    #[test]
    fn display_quotes_what_needs_quoting() {
        let command = parse(&argv(&["SET", "key:1", "hello world", "PX", "5"])).unwrap();
        assert_eq!(command.to_string(), "SET key:1 \"hello world\" PX 5");
        let command = parse(&[Bytes::from("GET"), Bytes::from_static(b"\x00\"")]).unwrap();
        assert_eq!(command.to_string(), "GET \"\\x00\\\"\"");
    }
}
