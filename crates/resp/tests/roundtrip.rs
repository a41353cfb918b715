//! Property tests of the parser against the encoder, and of the parser against arbitrary bytes.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use resp::{encode_command, parse_command, Connection, Limits, ProtocolError, RequestParser};

fn small_limits() -> Limits {
    Limits {
        max_bulk_bytes: 64,
        max_arguments: 8,
        max_inline_bytes: 128,
        max_multi_commands: 4,
        ..Limits::default()
    }
}

fn argv_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..10)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any argv, encoded as a client encodes it, parses back equal, consuming exactly its bytes, however
    /// the bytes are split.
    #[test]
    fn encoded_argv_parses_back_equal(argv in argv_strategy(), split in any::<prop::sample::Index>()) {
        let argv: Vec<Bytes> = argv.into_iter().map(Bytes::from).collect();
        let mut encoded = BytesMut::new();
        encode_command(&argv, &mut encoded);
        encoded.extend_from_slice(b"PING\r\n");

        let mut whole = encoded.clone();
        prop_assert_eq!(parse_command(&mut whole, &Limits::default()).unwrap(), Some(argv.clone()));
        prop_assert_eq!(&whole[..], b"PING\r\n");

        let at = split.index(encoded.len() - 6);
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::from(&encoded[..at]);
        prop_assert_eq!(parser.parse(&mut buf, &Limits::default()).unwrap(), None);
        buf.extend_from_slice(&encoded[at..]);
        prop_assert_eq!(parser.parse(&mut buf, &Limits::default()).unwrap(), Some(argv));
    }

    /// Arbitrary bytes never panic, and whatever parses respects the limits; an error or "incomplete"
    /// holds for the stateless and the stateful parser alike.
    #[test]
    fn random_bytes_never_panic_and_respect_the_limits(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_random_input(&bytes)?;
    }

    /// The same, with inputs that look like RESP so the fuzzing reaches deep into the parser.
    #[test]
    fn resp_like_bytes_never_panic(pieces in prop::collection::vec(prop_oneof![
        Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()), Just(b"\r".to_vec()),
        Just(b"\n".to_vec()), Just(b"-1".to_vec()), Just(b"0".to_vec()), Just(b"3".to_vec()),
        Just(b"99999999999999999999".to_vec()), Just(b"\"".to_vec()), Just(b"'".to_vec()),
        Just(b"\\x4".to_vec()), Just(b" ".to_vec()), Just(b"GET".to_vec()), Just(b"MULTI".to_vec()),
        prop::collection::vec(any::<u8>(), 0..4),
    ], 0..40)) {
        check_random_input(&pieces.concat())?;
    }
}

fn check_random_input(bytes: &[u8]) -> Result<(), TestCaseError> {
    let limits = small_limits();
    let mut buf = BytesMut::from(bytes);
    let mut parser = RequestParser::new();
    let mut stateful_buf = BytesMut::new();
    let mut stateful: Vec<Result<Vec<Bytes>, ProtocolError>> = Vec::new();
    // Feed the stateful parser in 7-byte pieces, collecting what it returns.
    'feed: for chunk in bytes.chunks(7) {
        stateful_buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut stateful_buf, &limits) {
                Ok(Some(argv)) => stateful.push(Ok(argv)),
                Ok(None) => break,
                Err(error) => {
                    stateful.push(Err(error));
                    break 'feed;
                }
            }
        }
    }
    let mut connection = Connection::new(1, limits);
    let mut stateless = Vec::new();
    for _ in 0..bytes.len() + 1 {
        let before = buf.len();
        match parse_command(&mut buf, &limits) {
            Ok(Some(argv)) => {
                prop_assert!(buf.len() < before, "a command consumed nothing");
                prop_assert!(!argv.is_empty() && argv.len() <= limits.max_arguments);
                prop_assert!(argv
                    .iter()
                    .all(|arg| arg.len() <= limits.max_bulk_bytes.max(limits.max_inline_bytes)));
                let _ = connection.handle(argv.clone());
                stateless.push(Ok(argv));
            }
            Ok(None) => break,
            Err(error) => {
                prop_assert!(error.to_string().starts_with("ERR Protocol error: "));
                stateless.push(Err(error));
                break;
            }
        }
    }
    // The stateful parser, seeing the input in pieces, may stop at an error the stateless one (seeing it
    // all) reports identically, or at none.
    prop_assert_eq!(stateful, stateless);
    Ok(())
}

#[test]
fn a_huge_declared_argument_count_is_refused() {
    let mut buf = BytesMut::from(&b"*1000000000000\r\n"[..]);
    assert_eq!(
        parse_command(&mut buf, &Limits::default()).unwrap_err(),
        ProtocolError::InvalidMultibulkLength
    );
}

fn word_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "MULTI",
            "EXEC",
            "DISCARD",
            "PING",
            "ECHO",
            "QUIT",
            "RESET",
            "AUTH",
            "HELLO",
            "SELECT",
            "CLIENT",
            "CONFIG",
            "COMMAND",
            "INFO",
            "READONLY",
            "READWRITE",
            "UNWATCH",
            "GET",
            "SET",
            "INCR",
            "MSET",
            "SCAN",
            "SETNAME",
            "SETINFO",
            "GETNAME",
            "ID",
            "GET",
            "SET",
            "DOCS",
            "COUNT",
            "LIST",
            "LIB-NAME",
            "AUTH",
            "2",
            "3",
            "0",
            "-1",
            "*",
            "save",
            "default",
            "NX",
            "EX",
            "10",
        ])
        .prop_map(|word| word.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ]
}

proptest! {
    /// Any sequence of commands built from the commands' own words leaves the connection consistent:
    /// nothing panics, EXEC outside MULTI is always an error, and every Execute carries a command that
    /// is a transaction exactly when it answers EXEC.
    #[test]
    fn random_command_sequences_never_panic(
        commands in prop::collection::vec(prop::collection::vec(word_strategy(), 0..5), 0..30)
    ) {
        let mut connection = Connection::new(9, small_limits());
        for words in commands {
            let was_in_multi = connection.in_multi();
            let is_exec = words.first().is_some_and(|w| w.eq_ignore_ascii_case(b"EXEC")) && words.len() == 1;
            let action = connection.handle(words.into_iter().map(Bytes::from).collect());
            match action {
                resp::Action::Execute { command, .. } => {
                    prop_assert_eq!(matches!(command, kv::Command::Multi(_)), is_exec);
                    prop_assert!(is_exec || !was_in_multi);
                }
                resp::Action::Reply(resp::Frame::Error(text)) if is_exec && !was_in_multi => {
                    prop_assert_eq!(text, "ERR EXEC without MULTI");
                }
                _ => {}
            }
        }
    }
}
