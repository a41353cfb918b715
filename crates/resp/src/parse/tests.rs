use super::*;

fn argv(words: &[&str]) -> Vec<Bytes> {
    words.iter().map(|word| Bytes::copy_from_slice(word.as_bytes())).collect()
}

fn parse_all(input: &[u8], limits: &Limits) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
    let mut buf = BytesMut::from(input);
    let mut commands = Vec::new();
    while let Some(command) = parse_command(&mut buf, limits)? {
        commands.push(command);
    }
    Ok(commands)
}

fn parse_one(input: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    parse_command(&mut BytesMut::from(input), &Limits::default())
}

fn small_limits() -> Limits {
    Limits {
        max_bulk_bytes: 16,
        max_arguments: 4,
        max_inline_bytes: 32,
        max_multi_commands: 3,
        ..Limits::default()
    }
}

#[test]
fn parses_a_multibulk_request_and_consumes_exactly_it() {
    let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nrest"[..]);
    let command = parse_command(&mut buf, &Limits::default()).unwrap();
    assert_eq!(command, Some(argv(&["SET", "k", "hello"])));
    assert_eq!(&buf[..], b"rest");
}

#[test]
fn bulk_strings_are_binary_safe() {
    let command = parse_one(b"*2\r\n$4\r\na\r\nb\r\n$3\r\n\x00\xff\n\r\n").unwrap().unwrap();
    assert_eq!(command, vec![Bytes::from_static(b"a\r\nb"), Bytes::from_static(b"\x00\xff\n")]);
    assert_eq!(parse_one(b"*1\r\n$0\r\n\r\n").unwrap(), Some(vec![Bytes::new()]));
}

#[test]
fn pipelined_requests_come_out_one_at_a_time_in_order() {
    let mut input = Vec::new();
    for i in 0..100 {
        input.extend_from_slice(
            format!("*2\r\n$4\r\nINCR\r\n${}\r\nkey{i}\r\n", 3 + i.to_string().len()).as_bytes(),
        );
        input.extend_from_slice(format!("GET key{i}\r\n").as_bytes());
    }
    let commands = parse_all(&input, &Limits::default()).unwrap();
    assert_eq!(commands.len(), 200);
    for (i, pair) in commands.chunks(2).enumerate() {
        let key = format!("key{i}");
        assert_eq!(pair[0], argv(&["INCR", &key]));
        assert_eq!(pair[1], argv(&["GET", &key]));
    }
}

#[test]
fn inline_commands_work_like_telnet() {
    assert_eq!(parse_one(b"PING\r\n").unwrap(), Some(argv(&["PING"])));
    assert_eq!(parse_one(b"set a b\n").unwrap(), Some(argv(&["set", "a", "b"])));
    assert_eq!(parse_one(b"  set \t a   b  \r\n").unwrap(), Some(argv(&["set", "a", "b"])));
    assert_eq!(parse_one(b"PING").unwrap(), None);
}

#[test]
fn inline_quotes_follow_redis_cli() {
    assert_eq!(parse_one(b"set k \"hello world\"\r\n").unwrap(), Some(argv(&["set", "k", "hello world"])));
    assert_eq!(parse_one(b"set k 'it''s'\r\n").unwrap_err(), ProtocolError::UnbalancedQuotes);
    assert_eq!(parse_one(b"set k 'it\\'s'\r\n").unwrap(), Some(argv(&["set", "k", "it's"])));
    assert_eq!(
        parse_one(b"set k \"a\\nb\\r\\t\\x41\\\\\\\"\"\r\n").unwrap(),
        Some(argv(&["set", "k", "a\nb\r\tA\\\""]))
    );
    // A bad \x escape keeps the x, as sdssplitargs does.
    assert_eq!(parse_one(b"echo \"\\xZZ\"\r\n").unwrap(), Some(argv(&["echo", "xZZ"])));
    assert_eq!(parse_one(b"echo \"\"\r\n").unwrap(), Some(argv(&["echo", ""])));
    // Quotes open in the middle of a word, as in Redis.
    assert_eq!(parse_one(b"echo a\"b c\"d\r\n").unwrap_err(), ProtocolError::UnbalancedQuotes);
    assert_eq!(parse_one(b"echo a\"b c\"\r\n").unwrap(), Some(argv(&["echo", "ab c"])));
}

#[test]
fn unbalanced_quotes_are_a_protocol_error() {
    for line in [&b"set k \"abc\r\n"[..], b"set k 'abc\r\n", b"echo \"abc\"def\r\n", b"echo \"\\\r\n"] {
        let error = parse_one(line).unwrap_err();
        assert_eq!(error, ProtocolError::UnbalancedQuotes, "{:?}", String::from_utf8_lossy(line));
        assert_eq!(error.to_string(), "ERR Protocol error: unbalanced quotes in request");
    }
}

#[test]
fn blank_lines_and_empty_multibulks_are_ignored() {
    let commands =
        parse_all(b"\r\n\n   \r\n*0\r\n*-1\r\nPING\r\n\r\n*1\r\n$4\r\nPING\r\n", &Limits::default());
    assert_eq!(commands.unwrap(), vec![argv(&["PING"]), argv(&["PING"])]);
    let mut buf = BytesMut::from(&b"\r\n\r\n"[..]);
    assert_eq!(parse_command(&mut buf, &Limits::default()).unwrap(), None);
    assert!(buf.is_empty());
}

#[test]
fn incomplete_input_consumes_nothing() {
    for input in [&b"*"[..], b"*2", b"*2\r", b"*2\r\n", b"*2\r\n$3", b"*2\r\n$3\r\nGET\r\n$1\r\nk", b"GET k"]
    {
        let mut buf = BytesMut::from(input);
        assert_eq!(parse_command(&mut buf, &Limits::default()).unwrap(), None);
        assert_eq!(&buf[..], input);
    }
}

#[test]
fn every_split_point_gives_the_same_commands_as_the_whole() {
    let input: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$0\r\n\r\nset a \"b c\"\r\n\r\n*0\r\n*1\r\n$4\r\nPING\r\nECHO x\n";
    let whole = parse_all(input, &Limits::default()).unwrap();
    assert_eq!(whole.len(), 4);
    for split in 0..=input.len() {
        for stateful in [false, true] {
            let mut parser = RequestParser::new();
            let mut buf = BytesMut::new();
            let mut commands = Vec::new();
            for piece in [&input[..split], &input[split..]] {
                buf.extend_from_slice(piece);
                loop {
                    let parsed = if stateful {
                        parser.parse(&mut buf, &Limits::default())
                    } else {
                        parse_command(&mut buf, &Limits::default())
                    };
                    match parsed.unwrap() {
                        Some(command) => commands.push(command),
                        None => break,
                    }
                }
            }
            assert_eq!(commands, whole, "split at {split}, stateful {stateful}");
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn byte_by_byte_feeding_gives_the_same_commands_as_the_whole() {
    let input: &[u8] = b"*2\r\n$4\r\nECHO\r\n$10\r\n0123456789\r\nPING\r\n*1\r\n$6\r\nDBSIZE\r\n";
    let whole = parse_all(input, &Limits::default()).unwrap();
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for &byte in input {
        buf.extend_from_slice(&[byte]);
        while let Some(command) = parser.parse(&mut buf, &Limits::default()).unwrap() {
            commands.push(command);
        }
    }
    assert_eq!(commands, whole);
}

#[test]
fn a_large_bulk_fed_in_small_chunks_is_examined_a_constant_amount_per_call() {
    // 1 MiB of data in 16-byte chunks: 65,536 calls of the stateless parser. Each call may re-read the
    // headers (under 40 bytes), never the data, so the work is linear in the number of calls.
    let data = vec![b'x'; 1 << 20];
    let mut input = BytesMut::new();
    crate::encode_command(
        &[Bytes::from_static(b"SET"), Bytes::from_static(b"k"), Bytes::from(data.clone())],
        &mut input,
    );
    let mut buf = BytesMut::new();
    let mut examined = 0u64;
    let mut calls = 0u64;
    let mut result = None;
    for chunk in input.chunks(16) {
        buf.extend_from_slice(chunk);
        let mut parser = RequestParser::new();
        calls += 1;
        let parsed = parser.parse(&mut buf, &Limits::default()).unwrap();
        examined += parser.examined_bytes();
        if parsed.is_some() {
            result = parsed;
        }
    }
    assert_eq!(result.unwrap()[2], data);
    assert!(examined <= 40 * calls, "examined {examined} bytes in {calls} calls");

    // The stateful parser examines each header once and then only waits: a constant, whatever the
    // chunking.
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::new();
    for chunk in input.chunks(16) {
        buf.extend_from_slice(chunk);
        let _ = parser.parse(&mut buf, &Limits::default()).unwrap();
    }
    assert!(parser.examined_bytes() <= 64, "examined {}", parser.examined_bytes());
}

#[test]
fn many_arguments_fed_in_small_chunks_are_examined_once_by_the_stateful_parser() {
    let arguments: Vec<Bytes> = (0..50_000).map(|i| Bytes::from(format!("k{i}"))).collect();
    let mut input = BytesMut::new();
    crate::encode_command(&arguments, &mut input);
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::new();
    let mut result = None;
    for chunk in input.chunks(7) {
        buf.extend_from_slice(chunk);
        if let Some(command) = parser.parse(&mut buf, &Limits::default()).unwrap() {
            result = Some(command);
        }
    }
    assert_eq!(result.unwrap(), arguments);
    // Headers are examined once each, plus a re-read of at most one partial header per call.
    let calls = input.len().div_ceil(7) as u64;
    assert!(
        parser.examined_bytes() <= input.len() as u64 + calls * 8,
        "examined {} for {} bytes",
        parser.examined_bytes(),
        input.len()
    );
}

#[test]
fn multibulk_count_errors() {
    let limits = small_limits();
    for input in [
        &b"*x\r\n"[..],
        b"*\r\n",
        b"*01\r\n",
        b"*+1\r\n",
        b"*-0\r\n",
        b"*5\r\n",
        b"*99999999999999999999\r\n",
        b"*2\rx",
    ] {
        let error = parse_command(&mut BytesMut::from(input), &limits).unwrap_err();
        assert_eq!(error, ProtocolError::InvalidMultibulkLength, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(error.to_string(), "ERR Protocol error: invalid multibulk length");
    }
    let long = [&b"*"[..], &[b'1'; 40]].concat();
    let error = parse_command(&mut BytesMut::from(&long[..]), &limits).unwrap_err();
    assert_eq!(error.to_string(), "ERR Protocol error: too big mbulk count string");
}

#[test]
fn bulk_length_errors() {
    let limits = small_limits();
    for input in [
        &b"*1\r\n$-1\r\n"[..],
        b"*1\r\n$17\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$1000000000000\r\n",
        b"*1\r\n$\r\n",
    ] {
        let error = parse_command(&mut BytesMut::from(input), &limits).unwrap_err();
        assert_eq!(error, ProtocolError::InvalidBulkLength, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(error.to_string(), "ERR Protocol error: invalid bulk length");
    }
    // Exactly at the limit is fine.
    let at_limit = parse_command(&mut BytesMut::from(&b"*1\r\n$16\r\n0123456789abcdef\r\n"[..]), &limits);
    assert_eq!(at_limit.unwrap().unwrap()[0].len(), 16);
    let long = [&b"*1\r\n$"[..], &[b'1'; 40]].concat();
    let error = parse_command(&mut BytesMut::from(&long[..]), &limits).unwrap_err();
    assert_eq!(error.to_string(), "ERR Protocol error: too big bulk count string");
}

#[test]
fn a_huge_declared_bulk_is_refused_before_any_data_arrives() {
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1000000000000\r\n"[..]);
    let capacity = buf.capacity();
    assert_eq!(parse_command(&mut buf, &Limits::default()).unwrap_err(), ProtocolError::InvalidBulkLength);
    assert_eq!(buf.capacity(), capacity);
    // Within the limit, a declared 512 MiB bulk just waits, reserving nothing.
    let mut buf = BytesMut::from(&b"*1\r\n$536870912\r\n"[..]);
    let capacity = buf.capacity();
    assert_eq!(parse_command(&mut buf, &Limits::default()).unwrap(), None);
    assert_eq!(buf.capacity(), capacity);
}

#[test]
fn an_argument_must_be_a_bulk_string() {
    let error = parse_one(b"*1\r\n:5\r\n").unwrap_err();
    assert_eq!(error.to_string(), "ERR Protocol error: expected '$', got ':'");
    let error = parse_one(b"*1\r\n\x01").unwrap_err();
    assert_eq!(error.to_string(), "ERR Protocol error: expected '$', got '\\x01'");
}

#[test]
fn bulk_data_must_end_with_crlf() {
    let error = parse_one(b"*1\r\n$3\r\nGETxx").unwrap_err();
    assert_eq!(error, ProtocolError::ExpectedCrlfAfterBulk);
    assert_eq!(error.to_string(), "ERR Protocol error: expected CRLF after bulk data");
}

#[test]
fn too_many_arguments_is_an_invalid_multibulk_length() {
    let mut input = BytesMut::new();
    crate::encode_command(&argv(&["a", "b", "c", "d", "e"]), &mut input);
    assert_eq!(parse_all(&input, &small_limits()).unwrap_err(), ProtocolError::InvalidMultibulkLength);
    let mut input = BytesMut::new();
    crate::encode_command(&argv(&["a", "b", "c", "d"]), &mut input);
    assert_eq!(parse_all(&input, &small_limits()).unwrap().len(), 1);
}

#[test]
fn an_inline_line_over_the_limit_is_too_big() {
    let limits = small_limits();
    // No newline yet, but already longer than any allowed line.
    let error = parse_all(&[b'a'; 40], &limits).unwrap_err();
    assert_eq!(error.to_string(), "ERR Protocol error: too big inline request");
    // A whole line over the limit.
    let line = [&[b'a'; 33][..], b"\r\n"].concat();
    assert_eq!(parse_all(&line, &limits).unwrap_err(), ProtocolError::InlineTooBig);
    // A line of exactly the limit, with CRLF, is fine; without the CRLF yet, it waits.
    let line = [&[b'a'; 32][..], b"\r\n"].concat();
    assert_eq!(parse_all(&line, &limits).unwrap(), vec![vec![Bytes::from(vec![b'a'; 32])]]);
    assert_eq!(parse_all(&line[..33], &limits).unwrap(), Vec::<Vec<Bytes>>::new());
}

#[test]
fn the_stateful_parser_starts_over_after_an_error_a_reset_or_a_shrunk_buffer() {
    let limits = Limits::default();
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPI"[..]);
    assert_eq!(parser.parse(&mut buf, &limits).unwrap(), None);
    // The caller discards its buffer and says so.
    parser.reset();
    let mut buf = BytesMut::from(&b"PING\r\n"[..]);
    assert_eq!(parser.parse(&mut buf, &limits).unwrap(), Some(argv(&["PING"])));
    // A buffer shorter than the parser's progress: its offsets cannot be trusted, so it starts over.
    let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPI"[..]);
    assert_eq!(parser.parse(&mut buf, &limits).unwrap(), None);
    let mut buf = BytesMut::from(&b"*1"[..]);
    assert_eq!(parser.parse(&mut buf, &limits).unwrap(), None);
    buf.extend_from_slice(b"\r\n$4\r\nPING\r\n");
    assert_eq!(parser.parse(&mut buf, &limits).unwrap(), Some(argv(&["PING"])));
    // After an error.
    let mut buf = BytesMut::from(&b"*x\r\n"[..]);
    assert!(parser.parse(&mut buf, &limits).is_err());
    let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n"[..]);
    assert_eq!(parser.parse(&mut buf, &limits).unwrap(), Some(argv(&["PING"])));
}

#[test]
fn lengths_parse_like_redis_string2ll() {
    assert_eq!(parse_decimal(b"0"), Some(0));
    assert_eq!(parse_decimal(b"-1"), Some(-1));
    assert_eq!(parse_decimal(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_decimal(b"-9223372036854775808"), None); // fine: no length is that negative
    assert_eq!(parse_decimal(b"9223372036854775808"), None);
    for bad in [&b""[..], b"-", b"01", b"-0", b"+1", b" 1", b"1 ", b"1.0"] {
        assert_eq!(parse_decimal(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn a_protocol_error_goes_out_as_a_redis_error_line() {
    let mut out = BytesMut::new();
    crate::encode_reply(
        &ProtocolError::InvalidBulkLength.to_reply(),
        crate::ProtocolVersion::Resp2,
        &mut out,
    );
    assert_eq!(&out[..], b"-ERR Protocol error: invalid bulk length\r\n");
}

#[test]
fn a_request_over_max_request_bytes_is_refused_before_its_data_arrives() {
    let limits = Limits { max_request_bytes: 40, ..Limits::default() };
    // `*2\r\n$3\r\nSET\r\n` is 13 bytes; a 30-byte second argument ends at 13 + 5 + 30 + 2 = 50 > 40.
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$30\r\n"[..]);
    let error = parse_command(&mut buf, &limits).unwrap_err();
    assert_eq!(error, ProtocolError::RequestTooBig(40));
    assert_eq!(error.to_string(), "ERR Protocol error: request larger than 40 bytes (max_request_bytes)");
    // Exactly at the limit is fine: 13 + 5 + 20 + 2 = 40.
    let mut input = b"*2\r\n$3\r\nSET\r\n$20\r\n".to_vec();
    input.extend_from_slice(&[b'x'; 20]);
    input.extend_from_slice(b"\r\n");
    assert_eq!(parse_all(&input, &limits).unwrap().len(), 1);
}
