use super::*;
use crate::encode::encode_frame;
use bytes::BytesMut;
use kv::Reply;

fn connection() -> Connection {
    Connection::new(42, Limits::default())
}

fn run(connection: &mut Connection, words: &[&str]) -> Action {
    connection.handle(words.iter().map(|word| Bytes::copy_from_slice(word.as_bytes())).collect())
}

/// The reply, which must be an immediate one.
fn reply(connection: &mut Connection, words: &[&str]) -> Frame {
    match run(connection, words) {
        Action::Reply(frame) => frame,
        other => panic!("{words:?}: expected a reply, got {other:?}"),
    }
}

fn error_text(connection: &mut Connection, words: &[&str]) -> String {
    match reply(connection, words) {
        Frame::Error(text) => text,
        other => panic!("{words:?}: expected an error, got {other:?}"),
    }
}

fn simple(text: &str) -> Frame {
    Frame::Simple(text.to_owned())
}

fn wire(frame: &Frame, protocol: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(frame, protocol, &mut out);
    out.to_vec()
}

#[test]
fn ping_answers_pong_or_its_message() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["PING"]), simple("PONG"));
    assert_eq!(reply(&mut c, &["ping", "hi there"]), Frame::bulk("hi there"));
    assert_eq!(error_text(&mut c, &["PING", "a", "b"]), "ERR wrong number of arguments for 'ping' command");
}

#[test]
fn echo_returns_its_argument() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["ECHO", "x y"]), Frame::bulk("x y"));
    assert_eq!(error_text(&mut c, &["ECHO"]), "ERR wrong number of arguments for 'echo' command");
    assert_eq!(error_text(&mut c, &["echo", "a", "b"]), "ERR wrong number of arguments for 'echo' command");
}

#[test]
fn quit_replies_ok_then_closes() {
    let mut c = connection();
    assert_eq!(run(&mut c, &["QUIT"]), Action::ReplyAndClose(Frame::ok()));
    run(&mut c, &["MULTI"]);
    assert_eq!(run(&mut c, &["quit"]), Action::ReplyAndClose(Frame::ok()));
}

#[test]
fn select_accepts_only_database_zero() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["SELECT", "0"]), Frame::ok());
    assert_eq!(error_text(&mut c, &["SELECT", "1"]), "ERR DB index is out of range");
    assert_eq!(error_text(&mut c, &["SELECT", "-1"]), "ERR DB index is out of range");
    assert_eq!(error_text(&mut c, &["SELECT", "x"]), "ERR value is not an integer or out of range");
    assert_eq!(error_text(&mut c, &["SELECT"]), "ERR wrong number of arguments for 'select' command");
}

#[test]
fn data_commands_go_to_the_state_machine_linearizably_by_default() {
    let mut c = connection();
    let Action::Execute { command, consistency } = run(&mut c, &["GET", "k"]) else { panic!() };
    assert_eq!(command, kv::Command::Get { key: Bytes::from("k") });
    assert_eq!(consistency, Consistency::Linearizable);
    let Action::Execute { command, consistency } = run(&mut c, &["incr", "k"]) else { panic!() };
    assert_eq!(command, kv::Command::IncrBy { key: Bytes::from("k"), delta: 1 });
    assert_eq!(consistency, Consistency::Linearizable);
}

#[test]
fn readonly_makes_reads_stale_and_readwrite_undoes_it() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["READONLY"]), Frame::ok());
    assert_eq!(c.read_consistency(), Consistency::Stale);
    let Action::Execute { consistency, .. } = run(&mut c, &["GET", "k"]) else { panic!() };
    assert_eq!(consistency, Consistency::Stale);
    // Writes are never stale.
    let Action::Execute { consistency, .. } = run(&mut c, &["SET", "k", "v"]) else { panic!() };
    assert_eq!(consistency, Consistency::Linearizable);
    assert_eq!(reply(&mut c, &["readwrite"]), Frame::ok());
    let Action::Execute { consistency, .. } = run(&mut c, &["MGET", "a", "b"]) else { panic!() };
    assert_eq!(consistency, Consistency::Linearizable);
    assert_eq!(
        error_text(&mut c, &["READONLY", "x"]),
        "ERR wrong number of arguments for 'readonly' command"
    );
}

#[test]
fn unknown_commands_and_wrong_arity_use_kv_texts() {
    let mut c = connection();
    assert_eq!(
        error_text(&mut c, &["FOO", "a", "b"]),
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
    );
    assert_eq!(error_text(&mut c, &["GET"]), "ERR wrong number of arguments for 'get' command");
    assert_eq!(error_text(&mut c, &["INCRBY", "k", "x"]), "ERR value is not an integer or out of range");
    assert_eq!(c.handle(vec![]), Action::Reply(Frame::error("ERR empty command")));
}

#[test]
fn multi_queues_and_exec_hands_over_one_linearizable_transaction() {
    let mut c = connection();
    c.handle(vec![Bytes::from("READONLY")]);
    assert_eq!(reply(&mut c, &["MULTI"]), Frame::ok());
    assert!(c.in_multi());
    assert_eq!(reply(&mut c, &["SET", "k", "1"]), simple("QUEUED"));
    assert_eq!(reply(&mut c, &["incr", "k"]), simple("QUEUED"));
    assert_eq!(reply(&mut c, &["GET", "k"]), simple("QUEUED"));
    let Action::Execute { command, consistency } = run(&mut c, &["EXEC"]) else { panic!() };
    assert_eq!(consistency, Consistency::Linearizable);
    let kv::Command::Multi(commands) = command else { panic!("{command:?}") };
    assert_eq!(commands.len(), 3);
    assert!(!c.in_multi());
}

#[test]
fn a_read_only_transaction_is_still_linearizable() {
    let mut c = connection();
    c.handle(vec![Bytes::from("READONLY")]);
    run(&mut c, &["MULTI"]);
    run(&mut c, &["GET", "a"]);
    let Action::Execute { command, consistency } = run(&mut c, &["EXEC"]) else { panic!() };
    assert!(command.is_read());
    assert_eq!(consistency, Consistency::Linearizable);
}

#[test]
fn an_empty_transaction_answers_an_empty_array_at_once() {
    let mut c = connection();
    run(&mut c, &["MULTI"]);
    assert_eq!(reply(&mut c, &["EXEC"]), Frame::Array(vec![]));
}

#[test]
fn multi_errors_match_redis() {
    let mut c = connection();
    assert_eq!(error_text(&mut c, &["EXEC"]), "ERR EXEC without MULTI");
    assert_eq!(error_text(&mut c, &["DISCARD"]), "ERR DISCARD without MULTI");
    run(&mut c, &["MULTI"]);
    assert_eq!(error_text(&mut c, &["MULTI"]), "ERR MULTI calls can not be nested");
    // A nested MULTI does not doom the transaction (as in Redis).
    run(&mut c, &["SET", "a", "1"]);
    assert!(matches!(run(&mut c, &["EXEC"]), Action::Execute { .. }));
}

#[test]
fn a_parse_error_inside_multi_makes_exec_abort() {
    let mut c = connection();
    run(&mut c, &["MULTI"]);
    assert_eq!(reply(&mut c, &["SET", "a", "1"]), simple("QUEUED"));
    assert_eq!(error_text(&mut c, &["GET"]), "ERR wrong number of arguments for 'get' command");
    assert!(error_text(&mut c, &["NOSUCH"]).starts_with("ERR unknown command 'NOSUCH'"));
    assert_eq!(reply(&mut c, &["SET", "b", "2"]), simple("QUEUED"));
    assert_eq!(error_text(&mut c, &["EXEC"]), "EXECABORT Transaction discarded because of previous errors.");
    assert!(!c.in_multi());
    // The next transaction starts clean.
    run(&mut c, &["MULTI"]);
    run(&mut c, &["SET", "a", "1"]);
    assert!(matches!(run(&mut c, &["EXEC"]), Action::Execute { .. }));
}

#[test]
fn discard_drops_the_queue() {
    let mut c = connection();
    run(&mut c, &["MULTI"]);
    run(&mut c, &["SET", "a", "1"]);
    assert_eq!(reply(&mut c, &["DISCARD"]), Frame::ok());
    assert!(!c.in_multi());
    assert_eq!(error_text(&mut c, &["EXEC"]), "ERR EXEC without MULTI");
}

#[test]
fn connection_commands_are_refused_inside_multi_and_doom_it() {
    for words in [
        &["PING"][..],
        &["ECHO", "x"],
        &["SELECT", "0"],
        &["HELLO", "3"],
        &["CLIENT", "ID"],
        &["CONFIG", "GET", "save"],
        &["COMMAND"],
        &["INFO"],
        &["READONLY"],
        &["READWRITE"],
        &["AUTH", "x"],
        &["UNWATCH"],
        &["RAFT.MEMBER", "LIST"],
    ] {
        let mut c = connection();
        run(&mut c, &["MULTI"]);
        assert_eq!(error_text(&mut c, words), NOT_ALLOWED_IN_MULTI, "{words:?}");
        assert_eq!(c.protocol(), ProtocolVersion::Resp2);
        assert_eq!(c.read_consistency(), Consistency::Linearizable);
        assert_eq!(error_text(&mut c, &["EXEC"]), kv::errors::EXECABORT_PREVIOUS_ERRORS, "{words:?}");
    }
}

#[test]
fn wrong_arity_of_a_connection_command_inside_multi_dooms_it() {
    let mut c = connection();
    run(&mut c, &["MULTI"]);
    assert_eq!(error_text(&mut c, &["EXEC", "x"]), "ERR wrong number of arguments for 'exec' command");
    assert_eq!(error_text(&mut c, &["EXEC"]), kv::errors::EXECABORT_PREVIOUS_ERRORS);
}

#[test]
fn too_many_queued_commands_doom_the_transaction() {
    let mut c = Connection::new(1, Limits { max_multi_commands: 2, ..Limits::default() });
    run(&mut c, &["MULTI"]);
    assert_eq!(reply(&mut c, &["SET", "a", "1"]), simple("QUEUED"));
    assert_eq!(reply(&mut c, &["SET", "b", "2"]), simple("QUEUED"));
    assert_eq!(
        error_text(&mut c, &["SET", "c", "3"]),
        "ERR MULTI holds at most 2 commands; EXEC will discard this transaction"
    );
    assert_eq!(error_text(&mut c, &["EXEC"]), kv::errors::EXECABORT_PREVIOUS_ERRORS);
}

#[test]
fn hello_without_arguments_answers_the_map_in_the_current_protocol() {
    let mut c = connection();
    let frame = reply(&mut c, &["HELLO"]);
    let Frame::Map(pairs) = &frame else { panic!("{frame:?}") };
    let field = |name: &str| {
        pairs.iter().find(|(key, _)| *key == Frame::bulk(name.to_owned())).map(|(_, v)| v.clone())
    };
    assert_eq!(field("server"), Some(Frame::bulk("raftkv")));
    assert_eq!(field("version"), Some(Frame::bulk(REDIS_COMPATIBLE_VERSION)));
    assert_eq!(field("proto"), Some(Frame::Integer(2)));
    assert_eq!(field("id"), Some(Frame::Integer(42)));
    assert_eq!(field("mode"), Some(Frame::bulk("standalone")));
    assert_eq!(field("role"), Some(Frame::bulk("master")));
    assert_eq!(field("modules"), Some(Frame::Array(vec![])));
    assert!(wire(&frame, c.protocol()).starts_with(b"*14\r\n$6\r\nserver\r\n$6\r\nraftkv\r\n"));
}

#[test]
fn hello_3_switches_to_resp3_and_answers_a_map() {
    let mut c = connection();
    let frame = reply(&mut c, &["HELLO", "3"]);
    assert_eq!(c.protocol(), ProtocolVersion::Resp3);
    let bytes = wire(&frame, c.protocol());
    assert!(bytes.starts_with(b"%7\r\n$6\r\nserver\r\n"), "{:?}", String::from_utf8_lossy(&bytes));
    assert!(bytes.windows(13).any(|w| w == b"$5\r\nproto\r\n:3"));
    assert_eq!(reply(&mut c, &["HELLO", "2"]), {
        let mut back = c.clone();
        back.protocol = ProtocolVersion::Resp2;
        back.hello_map()
    });
    assert_eq!(c.protocol(), ProtocolVersion::Resp2);
}

#[test]
fn hello_errors_match_redis() {
    let mut c = connection();
    assert_eq!(error_text(&mut c, &["HELLO", "4"]), "NOPROTO unsupported protocol version");
    assert_eq!(error_text(&mut c, &["HELLO", "1"]), "NOPROTO unsupported protocol version");
    assert_eq!(error_text(&mut c, &["HELLO", "x"]), "ERR Protocol version is not an integer or out of range");
    assert_eq!(error_text(&mut c, &["HELLO", "3", "FOO"]), "ERR Syntax error in HELLO option 'FOO'");
    assert_eq!(error_text(&mut c, &["HELLO", "3", "AUTH", "u"]), "ERR Syntax error in HELLO option 'AUTH'");
    assert_eq!(error_text(&mut c, &["HELLO", "3", "SETNAME"]), "ERR Syntax error in HELLO option 'SETNAME'");
    assert_eq!(
        error_text(&mut c, &["HELLO", "3", "AUTH", "alice", "pw"]),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    // Options are all parsed before the credentials are checked.
    assert_eq!(
        error_text(&mut c, &["HELLO", "3", "AUTH", "alice", "pw", "FOO"]),
        "ERR Syntax error in HELLO option 'FOO'"
    );
    assert_eq!(
        error_text(&mut c, &["HELLO", "3", "SETNAME", "a b"]),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    // None of the failures changed the protocol.
    assert_eq!(c.protocol(), ProtocolVersion::Resp2);
}

#[test]
fn hello_with_auth_default_and_setname_succeeds() {
    let mut c = connection();
    let frame = reply(&mut c, &["hello", "3", "auth", "default", "anything", "setname", "worker-1"]);
    assert!(matches!(frame, Frame::Map(_)));
    assert_eq!(c.protocol(), ProtocolVersion::Resp3);
    assert_eq!(c.name(), Some(&Bytes::from("worker-1")));
}

#[test]
fn auth_without_passwords_behaves_like_redis_without_requirepass() {
    let mut c = connection();
    assert_eq!(
        error_text(&mut c, &["AUTH", "secret"]),
        "ERR AUTH <password> called without any password configured for the default user. Are you sure your \
         configuration is correct?"
    );
    assert_eq!(reply(&mut c, &["AUTH", "default", "secret"]), Frame::ok());
    assert_eq!(
        error_text(&mut c, &["AUTH", "alice", "secret"]),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(error_text(&mut c, &["AUTH", "a", "b", "c"]), "ERR syntax error");
    assert_eq!(error_text(&mut c, &["AUTH"]), "ERR wrong number of arguments for 'auth' command");
}

#[test]
fn client_id_setname_getname() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["CLIENT", "ID"]), Frame::Integer(42));
    assert_eq!(reply(&mut c, &["client", "getname"]), Frame::Null);
    assert_eq!(reply(&mut c, &["CLIENT", "SETNAME", "app"]), Frame::ok());
    assert_eq!(reply(&mut c, &["CLIENT", "GETNAME"]), Frame::bulk("app"));
    assert_eq!(
        error_text(&mut c, &["CLIENT", "SETNAME", "bad name"]),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(reply(&mut c, &["CLIENT", "GETNAME"]), Frame::bulk("app"));
    assert_eq!(reply(&mut c, &["CLIENT", "SETNAME", ""]), Frame::ok());
    assert_eq!(reply(&mut c, &["CLIENT", "GETNAME"]), Frame::Null);
}

#[test]
fn client_setinfo_accepts_library_name_and_version() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]), Frame::ok());
    assert_eq!(reply(&mut c, &["CLIENT", "SETINFO", "lib-ver", "5.0.1"]), Frame::ok());
    assert_eq!(c.library(), (Some(&Bytes::from("redis-py")), Some(&Bytes::from("5.0.1"))));
    assert_eq!(error_text(&mut c, &["CLIENT", "SETINFO", "color", "red"]), "ERR Unrecognized option 'color'");
    assert_eq!(
        error_text(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "a b"]),
        "ERR LIB-NAME cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        error_text(&mut c, &["CLIENT", "SETINFO", "LIB-NAME"]),
        "ERR wrong number of arguments for 'client|setinfo' command"
    );
}

#[test]
fn client_info_describes_this_connection() {
    let mut c = connection();
    run(&mut c, &["CLIENT", "SETNAME", "app"]);
    run(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"]);
    run(&mut c, &["READONLY"]);
    assert_eq!(
        reply(&mut c, &["CLIENT", "INFO"]),
        Frame::bulk("id=42 name=app db=0 flags=r multi=-1 resp=2 lib-name=redis-rs lib-ver=\n")
    );
}

#[test]
fn client_errors_match_redis() {
    let mut c = connection();
    assert_eq!(error_text(&mut c, &["CLIENT"]), "ERR wrong number of arguments for 'client' command");
    assert_eq!(
        error_text(&mut c, &["CLIENT", "KILL", "x"]),
        "ERR unknown subcommand 'KILL'. Try CLIENT HELP."
    );
    assert_eq!(
        error_text(&mut c, &["CLIENT", "ID", "x"]),
        "ERR wrong number of arguments for 'client|id' command"
    );
    assert_eq!(
        error_text(&mut c, &["CLIENT", "SETNAME"]),
        "ERR wrong number of arguments for 'client|setname' command"
    );
}

#[test]
fn config_get_answers_what_redis_benchmark_asks() {
    let mut c = connection();
    assert_eq!(
        reply(&mut c, &["CONFIG", "GET", "save"]),
        Frame::Map(vec![(Frame::bulk("save"), Frame::bulk(""))])
    );
    assert_eq!(
        reply(&mut c, &["config", "get", "appendonly"]),
        Frame::Map(vec![(Frame::bulk("appendonly"), Frame::bulk("yes"))])
    );
    assert_eq!(reply(&mut c, &["CONFIG", "GET", "no-such-thing"]), Frame::Map(vec![]));
    // RESP2 shape: a flat array, empty for an unknown parameter, as Redis 7 sends.
    assert_eq!(wire(&reply(&mut c, &["CONFIG", "GET", "nope"]), ProtocolVersion::Resp2), b"*0\r\n");
    assert_eq!(
        wire(&reply(&mut c, &["CONFIG", "GET", "save"]), ProtocolVersion::Resp2),
        b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
}

#[test]
fn config_get_takes_several_glob_patterns() {
    let mut c = connection();
    let Frame::Map(pairs) = reply(&mut c, &["CONFIG", "GET", "append*", "SAVE", "proto-max-bulk-len"]) else {
        panic!()
    };
    let names: Vec<Frame> = pairs.into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        vec![
            Frame::bulk("save"),
            Frame::bulk("appendonly"),
            Frame::bulk("appendfsync"),
            Frame::bulk("proto-max-bulk-len")
        ]
    );
    let Frame::Map(all) = reply(&mut c, &["CONFIG", "GET", "*"]) else { panic!() };
    assert_eq!(all.len(), 6);
}

#[test]
fn config_set_changes_nothing_and_says_so() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["CONFIG", "SET", "save", ""]), Frame::ok());
    assert_eq!(reply(&mut c, &["CONFIG", "SET", "appendonly", "yes", "save", ""]), Frame::ok());
    assert_eq!(
        error_text(&mut c, &["CONFIG", "SET", "appendonly", "no"]),
        "ERR CONFIG SET failed (possibly related to argument 'appendonly') - raftkv does not change this setting \
         at run time"
    );
    assert_eq!(
        error_text(&mut c, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]),
        "ERR Unknown option or number of arguments for CONFIG SET - 'maxmemory-policy'"
    );
    assert_eq!(
        error_text(&mut c, &["CONFIG", "SET", "save"]),
        "ERR wrong number of arguments for 'config|set' command"
    );
    assert_eq!(
        error_text(&mut c, &["CONFIG", "SET", "save", "", "x"]),
        "ERR wrong number of arguments for 'config|set' command"
    );
}

#[test]
fn config_other_subcommands() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["CONFIG", "RESETSTAT"]), Frame::ok());
    assert_eq!(
        error_text(&mut c, &["CONFIG", "GET"]),
        "ERR wrong number of arguments for 'config|get' command"
    );
    assert_eq!(
        error_text(&mut c, &["CONFIG", "REWRITE"]),
        "ERR unknown subcommand 'REWRITE'. Try CONFIG HELP."
    );
    assert_eq!(error_text(&mut c, &["CONFIG"]), "ERR wrong number of arguments for 'config' command");
}

#[test]
fn command_docs_count_info_and_list() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["COMMAND", "DOCS"]), Frame::Map(vec![]));
    assert_eq!(wire(&reply(&mut c, &["COMMAND", "DOCS"]), ProtocolVersion::Resp2), b"*0\r\n");
    assert_eq!(reply(&mut c, &["COMMAND", "COUNT"]), Frame::Integer(crate::table::COMMANDS.len() as i64));
    let Frame::Array(all) = reply(&mut c, &["COMMAND"]) else { panic!() };
    assert_eq!(all.len(), crate::table::COMMANDS.len());
    let Frame::Array(rows) = reply(&mut c, &["COMMAND", "INFO", "GET", "nosuch"]) else { panic!() };
    assert_eq!(rows[1], Frame::Null);
    let Frame::Array(get) = &rows[0] else { panic!() };
    assert_eq!(get[..2], [Frame::bulk("get"), Frame::Integer(2)]);
    assert_eq!(get.len(), 10);
    let Frame::Array(names) = reply(&mut c, &["COMMAND", "LIST"]) else { panic!() };
    assert!(names.contains(&Frame::bulk("mset")) && names.contains(&Frame::bulk("hello")));
    assert_eq!(
        error_text(&mut c, &["COMMAND", "GETKEYS", "GET", "k"]),
        "ERR unknown subcommand 'GETKEYS'. Try COMMAND HELP."
    );
}

#[test]
fn info_is_handed_to_the_server_with_lower_case_sections() {
    let mut c = connection();
    assert_eq!(run(&mut c, &["INFO"]), Action::Info { section: None });
    assert_eq!(run(&mut c, &["info", "Raft"]), Action::Info { section: Some("raft".to_owned()) });
    assert_eq!(
        run(&mut c, &["INFO", "server", "RAFT"]),
        Action::Info { section: Some("server raft".to_owned()) }
    );
}

#[test]
fn reset_returns_to_a_fresh_connection() {
    let mut c = connection();
    run(&mut c, &["HELLO", "3", "SETNAME", "x"]);
    run(&mut c, &["READONLY"]);
    run(&mut c, &["MULTI"]);
    assert_eq!(reply(&mut c, &["RESET"]), simple("RESET"));
    assert_eq!(c.protocol(), ProtocolVersion::Resp2);
    assert_eq!(c.read_consistency(), Consistency::Linearizable);
    assert!(!c.in_multi());
    assert_eq!(c.name(), None);
    assert_eq!(c.client_id(), 42);
}

#[test]
fn unwatch_is_accepted_outside_multi() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["UNWATCH"]), Frame::ok());
    assert!(error_text(&mut c, &["WATCH", "k"]).starts_with("ERR unknown command 'WATCH'"));
}

#[test]
fn command_names_are_case_insensitive() {
    let mut c = connection();
    assert_eq!(reply(&mut c, &["pInG"]), simple("PONG"));
    assert_eq!(reply(&mut c, &["Multi"]), Frame::ok());
    assert_eq!(reply(&mut c, &["sEt", "a", "b"]), simple("QUEUED"));
    assert!(matches!(run(&mut c, &["exec"]), Action::Execute { .. }));
}

#[test]
fn glob_matching_like_redis_config_get() {
    use super::admin::glob_match;
    for (pattern, name, expected) in [
        ("*", "save", true),
        ("sa*", "save", true),
        ("SA?E", "save", true),
        ("*fsync", "appendfsync", true),
        ("a*y", "appendonly", true),
        ("a*x", "appendonly", false),
        ("[abc]ppendonly", "appendonly", true),
        ("[^a]ppendonly", "appendonly", false),
        ("[a-c]ppend*", "appendonly", true),
        ("save\\*", "save", false),
        ("sav", "save", false),
        ("", "save", false),
        ("*****", "", true),
        ("[unclosed", "u", true),
    ] {
        assert_eq!(glob_match(pattern.as_bytes(), name.as_bytes()), expected, "{pattern} vs {name}");
    }
    // A pathological pattern is not exponential.
    let pattern = "*a".repeat(5_000) + "b";
    assert!(!glob_match(pattern.as_bytes(), "a".repeat(60).as_bytes()));
}

#[test]
fn replies_from_kv_convert_to_frames() {
    assert_eq!(Frame::from(Reply::Ok), Frame::ok());
    assert_eq!(Frame::from(Reply::Nil), Frame::Null);
}

#[test]
fn connection_parse_resumes_and_survives_reset() {
    let mut c = Connection::new(1, Limits { max_arguments: 3, ..Limits::default() });
    let mut buf = BytesMut::from(&b"*1\r\n$5\r\nRESET\r\n*2\r\n$4\r\nECHO\r\n$2\r\nh"[..]);
    let argv = c.parse(&mut buf).unwrap().unwrap();
    assert_eq!(c.handle(argv), Action::Reply(simple("RESET")));
    assert_eq!(c.parse(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"i\r\n");
    let argv = c.parse(&mut buf).unwrap().unwrap();
    assert_eq!(c.handle(argv), Action::Reply(Frame::bulk("hi")));
    // The connection's own limits apply.
    let mut buf = BytesMut::from(&b"*4\r\n"[..]);
    assert_eq!(c.parse(&mut buf).unwrap_err(), ProtocolError::InvalidMultibulkLength);
}

#[test]
fn keys_and_values_over_their_limits_are_refused_with_redis_like_errors() {
    let limits = Limits { max_key_bytes: 4, max_value_bytes: 8, ..Limits::default() };
    let mut c = Connection::new(1, limits);
    assert_eq!(
        error_text(&mut c, &["SET", "kkkkk", "v"]),
        "ERR key exceeds maximum allowed size (4 bytes, max_key_bytes)"
    );
    assert_eq!(error_text(&mut c, &["SET", "k", "123456789"]), kv::errors::STRING_TOO_LONG);
    // MSET alternates keys and values; DEL's every argument is a key.
    assert_eq!(error_text(&mut c, &["MSET", "a", "1", "b", "123456789"]), kv::errors::STRING_TOO_LONG);
    assert_eq!(
        error_text(&mut c, &["DEL", "a", "bbbbbbbb"]),
        "ERR key exceeds maximum allowed size (4 bytes, max_key_bytes)"
    );
    // At the limits is fine; connection commands are bounded only by the bulk length.
    assert!(matches!(run(&mut c, &["SET", "kkkk", "12345678"]), Action::Execute { .. }));
    assert_eq!(reply(&mut c, &["ECHO", "a long echo message"]), Frame::bulk("a long echo message"));
    // Inside MULTI an oversized argument dooms the transaction.
    run(&mut c, &["MULTI"]);
    assert_eq!(error_text(&mut c, &["APPEND", "k", "123456789"]), kv::errors::STRING_TOO_LONG);
    assert_eq!(error_text(&mut c, &["EXEC"]), kv::errors::EXECABORT_PREVIOUS_ERRORS);
}

#[test]
fn a_transaction_over_max_request_bytes_is_doomed() {
    let mut c = Connection::new(1, Limits { max_request_bytes: 20, ..Limits::default() });
    run(&mut c, &["MULTI"]);
    assert_eq!(reply(&mut c, &["SET", "a", "12345678"]), simple("QUEUED")); // 12 bytes
    assert_eq!(
        error_text(&mut c, &["SET", "b", "12345678"]),
        "ERR MULTI holds at most 20 bytes of arguments (max_request_bytes); EXEC will discard this \
         transaction"
    );
    assert_eq!(error_text(&mut c, &["EXEC"]), kv::errors::EXECABORT_PREVIOUS_ERRORS);
}

#[test]
fn cluster_commands_go_to_the_server_whole_in_any_case() {
    let mut c = connection();
    for words in [&["RAFT.MEMBER", "LIST"][..], &["raft.transfer-leader", "2"], &["Raft.Anything"]] {
        let argv: Vec<Bytes> = words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect();
        assert_eq!(run(&mut c, words), Action::Cluster { argv }, "{words:?}");
    }
    // The prefix alone is not a cluster command (nor anything else).
    assert!(error_text(&mut c, &["RAFT."]).contains("unknown command"));
}
