//! One client connection's state and what to do with each command it sends.
//!
//! [`Connection::handle`] takes one argv (from [`crate::parse_command`]) and returns an [`Action`]: a
//! reply to send now, a command for the replicated state machine, an INFO request the server fills in,
//! or a reply followed by closing the connection. It is pure: no I/O, no clock, no randomness, so every
//! rule here is a unit test.
//!
//! Connection-level commands (PING, ECHO, QUIT, RESET, AUTH, HELLO, SELECT, CLIENT, CONFIG, COMMAND,
//! INFO, READONLY, READWRITE, MULTI, EXEC, DISCARD, UNWATCH) are answered here; everything else goes to
//! [`kv::parse`], whose errors are Redis's (`ERR unknown command ...`, `ERR wrong number of arguments
//! ...`).
//!
//! # MULTI/EXEC
//! Between MULTI and EXEC each state-machine command is parsed at once and answered `+QUEUED`, or with its
//! parse error, which dooms the transaction: EXEC then answers `-EXECABORT Transaction discarded because
//! of previous errors.` and nothing reaches the log (Redis's rules). Connection commands other than EXEC,
//! DISCARD, MULTI, QUIT and RESET are refused inside a transaction (`ERR Command not allowed inside a
//! transaction`) and doom it too, because a transaction is one state-machine command and the state
//! machine does not run connection commands. More than [`Limits::max_multi_commands`] queued commands
//! doom it as well. EXEC hands the whole transaction over as one `Command::Multi`, always linearizable.

mod admin;

use bytes::{Bytes, BytesMut};
use kv::{Command, ParseError, Transaction};
use node::Consistency;

use crate::encode::{Frame, ProtocolVersion};
use crate::parse::{Limits, ProtocolError, RequestParser};
use crate::table;

/// What the server should do with one command.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    /// Answer right away.
    Reply(Frame),
    /// Run on the replicated state machine: writes (and every EXEC) through the log, reads through
    /// ReadIndex, or from the local state machine when `consistency` is `Stale` (after READONLY).
    Execute { command: Command, consistency: Consistency },
    /// Answer INFO: the server knows the role, term, leader and indices. `section` is what the client
    /// asked for, lower case, several sections separated by a space; `None` means the default sections.
    Info { section: Option<String> },
    /// Send the reply, then close the connection (QUIT).
    ReplyAndClose(Frame),
    /// A cluster administration command (`RAFT.MEMBER ...`, `RAFT.TRANSFER-LEADER id`): the server
    /// parses and runs it (it may have to forward it to the leader). `argv` is the whole command, name
    /// included.
    Cluster { argv: Vec<Bytes> },
}

/// Cluster administration commands start with this prefix (any case); see [`Action::Cluster`].
pub const CLUSTER_COMMAND_PREFIX: &[u8] = b"raft.";

/// The error Redis answers when a command may not be queued in a transaction.
pub const NOT_ALLOWED_IN_MULTI: &str = "ERR Command not allowed inside a transaction";

/// The Redis version raftkv's behaviour follows, reported as HELLO's `version` (client libraries read
/// it to decide which commands they may use). raftkv's own version is in INFO.
pub const REDIS_COMPATIBLE_VERSION: &str = "7.2.0";

/// Per-connection state: the MULTI queue, READONLY, the protocol version (HELLO 2/3), name and id.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Unique among the node's connections; answered by CLIENT ID and HELLO.
    client_id: u64,
    limits: Limits,
    /// RESP2 until HELLO 3; the server encodes every reply with this.
    protocol: ProtocolVersion,
    /// CLIENT SETNAME / HELLO SETNAME; `None` when unset or set to the empty string.
    name: Option<Bytes>,
    /// CLIENT SETINFO LIB-NAME / LIB-VER, shown by CLIENT INFO.
    lib_name: Option<Bytes>,
    lib_version: Option<Bytes>,
    /// How reads are served: `Stale` after READONLY, `Linearizable` otherwise.
    read_consistency: Consistency,
    /// `Some` between MULTI and EXEC/DISCARD.
    multi: Option<MultiState>,
    /// Progress through a partial request in the connection's input buffer ([`Connection::parse`]).
    parser: RequestParser,
}

#[derive(Clone, Debug)]
struct MultiState {
    transaction: Transaction,
    /// Set when a command was refused here (not by `kv::parse`, which `Transaction` tracks itself):
    /// EXEC must then abort.
    doomed: bool,
    /// Argument bytes of the commands queued so far (bounded by [`Limits::max_request_bytes`]).
    queued_bytes: usize,
}

impl Connection {
    /// A fresh connection: RESP2, linearizable reads, no name, no transaction.
    pub fn new(client_id: u64, limits: Limits) -> Connection {
        Connection {
            client_id,
            limits,
            protocol: ProtocolVersion::Resp2,
            name: None,
            lib_name: None,
            lib_version: None,
            read_consistency: Consistency::Linearizable,
            multi: None,
            parser: RequestParser::new(),
        }
    }

    /// The next request from the connection's input buffer, within this connection's limits: as
    /// [`crate::parse_command`], but resuming where the last call stopped, so a request costs time linear
    /// in its size however it is chunked. Between calls, only append to `buf`.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        self.parser.parse(buf, &self.limits)
    }

    /// The protocol to encode this connection's replies with (it changes after HELLO).
    pub fn protocol(&self) -> ProtocolVersion {
        self.protocol
    }

    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The limits the server should also pass to [`crate::parse_command`].
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The client's name (CLIENT SETNAME), for logs and CLIENT LIST.
    pub fn name(&self) -> Option<&Bytes> {
        self.name.as_ref()
    }

    /// LIB-NAME and LIB-VER from CLIENT SETINFO.
    pub fn library(&self) -> (Option<&Bytes>, Option<&Bytes>) {
        (self.lib_name.as_ref(), self.lib_version.as_ref())
    }

    /// `Stale` after READONLY, `Linearizable` otherwise.
    pub fn read_consistency(&self) -> Consistency {
        self.read_consistency
    }

    /// Whether a MULTI is open.
    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    /// Decides what to do with one command. Pure.
    pub fn handle(&mut self, argv: Vec<Bytes>) -> Action {
        let Some(name) = argv.first() else { return error(ParseError::Empty.to_string()) };
        if is_cluster_command(name) {
            // Membership changes are not state-machine commands: a transaction cannot hold one.
            if self.multi.is_some() {
                self.doom_transaction();
                return error(NOT_ALLOWED_IN_MULTI);
            }
            return Action::Cluster { argv };
        }
        let Some(command) = ConnectionCommand::from_name(name) else { return self.data_command(&argv) };
        let info = command.info();
        if !table::arity_ok(info.arity, argv.len()) {
            self.doom_transaction();
            return error(wrong_arity(info.name));
        }
        if self.multi.is_some() && !command.allowed_in_multi() {
            self.doom_transaction();
            return error(NOT_ALLOWED_IN_MULTI);
        }
        let args = &argv[1..];
        match command {
            ConnectionCommand::Ping => match args {
                [] => Action::Reply(Frame::Simple("PONG".to_owned())),
                [message] => Action::Reply(Frame::Bulk(message.clone())),
                _ => error(wrong_arity("ping")),
            },
            ConnectionCommand::Echo => Action::Reply(Frame::Bulk(args[0].clone())),
            ConnectionCommand::Quit => Action::ReplyAndClose(Frame::ok()),
            ConnectionCommand::Reset => self.reset(),
            ConnectionCommand::Auth => auth(args),
            ConnectionCommand::Hello => self.hello(args),
            ConnectionCommand::Select => select(&args[0]),
            ConnectionCommand::Client => self.client(args),
            ConnectionCommand::Config => self.config(args),
            ConnectionCommand::Command => admin::command(args),
            ConnectionCommand::Info => info_section(args),
            ConnectionCommand::ReadOnly => {
                self.read_consistency = Consistency::Stale;
                ok()
            }
            ConnectionCommand::ReadWrite => {
                self.read_consistency = Consistency::Linearizable;
                ok()
            }
            ConnectionCommand::Multi => self.multi(),
            ConnectionCommand::Exec => self.exec(),
            ConnectionCommand::Discard => match self.multi.take() {
                Some(_) => ok(),
                None => error("ERR DISCARD without MULTI"),
            },
            // There is no WATCH, so nothing is ever watched.
            ConnectionCommand::Unwatch => ok(),
        }
    }

    /// A state-machine command: queue it inside MULTI, else hand it over.
    fn data_command(&mut self, argv: &[Bytes]) -> Action {
        if let Some(text) = oversized_argument(argv, &self.limits) {
            self.doom_transaction();
            return error(text);
        }
        if let Some(state) = &mut self.multi {
            if state.transaction.len() >= self.limits.max_multi_commands {
                state.doomed = true;
                return error(format!(
                    "ERR MULTI holds at most {} commands; EXEC will discard this transaction",
                    self.limits.max_multi_commands
                ));
            }
            // The transaction becomes one log entry, so its bytes are bounded like one request's.
            let bytes: usize = argv.iter().map(Bytes::len).sum();
            if state.queued_bytes.saturating_add(bytes) > self.limits.max_request_bytes {
                state.doomed = true;
                return error(format!(
                    "ERR MULTI holds at most {} bytes of arguments (max_request_bytes); EXEC will discard \
                     this transaction",
                    self.limits.max_request_bytes
                ));
            }
            state.queued_bytes += bytes;
            return match state.transaction.queue(argv) {
                Ok(()) => Action::Reply(Frame::Simple("QUEUED".to_owned())),
                Err(parse_error) => error(parse_error.to_string()),
            };
        }
        match kv::parse(argv) {
            Ok(command) => {
                let consistency =
                    if command.is_read() { self.read_consistency } else { Consistency::Linearizable };
                Action::Execute { command, consistency }
            }
            Err(parse_error) => error(parse_error.to_string()),
        }
    }

    fn doom_transaction(&mut self) {
        if let Some(state) = &mut self.multi {
            state.doomed = true;
        }
    }

    fn multi(&mut self) -> Action {
        if self.multi.is_some() {
            // Redis answers this without dooming the transaction.
            return error("ERR MULTI calls can not be nested");
        }
        self.multi = Some(MultiState { transaction: Transaction::new(), doomed: false, queued_bytes: 0 });
        ok()
    }

    fn exec(&mut self) -> Action {
        let Some(state) = self.multi.take() else { return error("ERR EXEC without MULTI") };
        if state.doomed {
            return error(kv::errors::EXECABORT_PREVIOUS_ERRORS);
        }
        match state.transaction.exec() {
            Err(reply) => Action::Reply(Frame::from(reply)),
            // Nothing to order against anything: answer at once, as Redis answers `*0`.
            Ok(Command::Multi(commands)) if commands.is_empty() => Action::Reply(Frame::Array(vec![])),
            Ok(command) => Action::Execute { command, consistency: Consistency::Linearizable },
        }
    }

    /// RESET: back to a fresh connection's state (Redis 6.2), keeping the id, the limits and the
    /// parser's place in the input.
    fn reset(&mut self) -> Action {
        let parser = std::mem::take(&mut self.parser);
        *self = Connection::new(self.client_id, self.limits);
        self.parser = parser;
        Action::Reply(Frame::Simple("RESET".to_owned()))
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
    fn hello(&mut self, args: &[Bytes]) -> Action {
        let mut protocol = self.protocol;
        if let Some(version) = args.first() {
            protocol = match kv::parse_i64(version) {
                Ok(2) => ProtocolVersion::Resp2,
                Ok(3) => ProtocolVersion::Resp3,
                Ok(_) => return error("NOPROTO unsupported protocol version"),
                Err(_) => return error("ERR Protocol version is not an integer or out of range"),
            };
        }
        let mut new_name = None;
        let mut username = None;
        let mut at = 1;
        // As in Redis: every option is parsed before credentials are checked or anything changes.
        while at < args.len() {
            let option = &args[at];
            let more = args.len() - at - 1;
            if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                username = Some(&args[at + 1]);
                at += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                new_name = Some(args[at + 1].clone());
                at += 2;
            } else {
                return error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                ));
            }
        }
        if let Some(Err(text)) = username.map(|username| check_credentials(username)) {
            return error(text);
        }
        if let Some(name) = new_name {
            if let Err(text) = self.set_name(name) {
                return error(text);
            }
        }
        self.protocol = protocol;
        Action::Reply(self.hello_map())
    }

    /// HELLO's answer. `mode` is `standalone` so that clients do not switch to Redis Cluster's
    /// protocol, and `role` is `master` because every raftkv node accepts writes (followers forward).
    fn hello_map(&self) -> Frame {
        let field = |name: &'static str| Frame::Bulk(Bytes::from_static(name.as_bytes()));
        Frame::Map(vec![
            (field("server"), field("raftkv")),
            (field("version"), field(REDIS_COMPATIBLE_VERSION)),
            (field("proto"), Frame::Integer(self.protocol.number())),
            (field("id"), Frame::Integer(i64::try_from(self.client_id).unwrap_or(i64::MAX))),
            (field("mode"), field("standalone")),
            (field("role"), field("master")),
            (field("modules"), Frame::Array(vec![])),
        ])
    }

    /// Sets or clears (empty name) the client name, with Redis's validation.
    fn set_name(&mut self, name: Bytes) -> Result<(), &'static str> {
        if !name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
            return Err("ERR Client names cannot contain spaces, newlines or special characters.");
        }
        self.name = if name.is_empty() { None } else { Some(name) };
        Ok(())
    }
}

/// The connection-level commands, recognised by name before `kv::parse` sees the argv.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ConnectionCommand {
    Ping,
    Echo,
    Quit,
    Reset,
    Auth,
    Hello,
    Select,
    Client,
    Config,
    Command,
    Info,
    ReadOnly,
    ReadWrite,
    Multi,
    Exec,
    Discard,
    Unwatch,
}

const CONNECTION_COMMANDS: &[(&str, ConnectionCommand)] = &[
    ("ping", ConnectionCommand::Ping),
    ("echo", ConnectionCommand::Echo),
    ("quit", ConnectionCommand::Quit),
    ("reset", ConnectionCommand::Reset),
    ("auth", ConnectionCommand::Auth),
    ("hello", ConnectionCommand::Hello),
    ("select", ConnectionCommand::Select),
    ("client", ConnectionCommand::Client),
    ("config", ConnectionCommand::Config),
    ("command", ConnectionCommand::Command),
    ("info", ConnectionCommand::Info),
    ("readonly", ConnectionCommand::ReadOnly),
    ("readwrite", ConnectionCommand::ReadWrite),
    ("multi", ConnectionCommand::Multi),
    ("exec", ConnectionCommand::Exec),
    ("discard", ConnectionCommand::Discard),
    ("unwatch", ConnectionCommand::Unwatch),
];

/// Whether `name` (any case) is answered by the connection layer rather than the state machine.
pub fn is_connection_command(name: &[u8]) -> bool {
    ConnectionCommand::from_name(name).is_some() || is_cluster_command(name)
}

/// Whether `name` is a cluster administration command (`RAFT.` followed by anything, any case).
pub fn is_cluster_command(name: &[u8]) -> bool {
    name.len() > CLUSTER_COMMAND_PREFIX.len()
        && name[..CLUSTER_COMMAND_PREFIX.len()].eq_ignore_ascii_case(CLUSTER_COMMAND_PREFIX)
}

impl ConnectionCommand {
    fn from_name(name: &[u8]) -> Option<ConnectionCommand> {
        // The longest is READWRITE; most commands are data commands, so reject them cheaply.
        if name.len() > "readwrite".len() {
            return None;
        }
        CONNECTION_COMMANDS
            .iter()
            .find(|(known, _)| known.as_bytes().eq_ignore_ascii_case(name))
            .map(|&(_, command)| command)
    }

    fn name(self) -> &'static str {
        CONNECTION_COMMANDS.iter().find(|(_, command)| *command == self).map_or("", |(name, _)| name)
    }

    fn info(self) -> table::CommandInfo {
        // Every connection command has a row (a unit test checks); the fallback only keeps this total.
        table::lookup(self.name().as_bytes()).copied().unwrap_or(table::CommandInfo {
            name: "",
            arity: -1,
            flags: &[],
            first_key: 0,
            last_key: 0,
            key_step: 0,
        })
    }

    /// Redis runs these at once even inside MULTI instead of queueing them.
    fn allowed_in_multi(self) -> bool {
        matches!(
            self,
            ConnectionCommand::Multi
                | ConnectionCommand::Exec
                | ConnectionCommand::Discard
                | ConnectionCommand::Quit
                | ConnectionCommand::Reset
        )
    }
}

/// The error for the first key longer than [`Limits::max_key_bytes`] or other argument longer than
/// [`Limits::max_value_bytes`] of a state-machine command, if any. Keys are where `COMMAND` says they are;
/// every other argument is a value or a short option, so the value limit can apply to all of them.
fn oversized_argument(argv: &[Bytes], limits: &Limits) -> Option<String> {
    let info = table::lookup(argv.first()?)?;
    let count = argv.len() as i64;
    let last_key = if info.last_key < 0 { count + info.last_key } else { info.last_key };
    let is_key = |position: i64| {
        info.first_key > 0
            && (info.first_key..=last_key).contains(&position)
            && (position - info.first_key) % info.key_step.max(1) == 0
    };
    argv.iter().enumerate().skip(1).find_map(|(position, argument)| {
        if is_key(position as i64) {
            (argument.len() > limits.max_key_bytes).then(|| {
                format!(
                    "ERR key exceeds maximum allowed size ({} bytes, max_key_bytes)",
                    limits.max_key_bytes
                )
            })
        } else {
            (argument.len() > limits.max_value_bytes).then(|| kv::errors::STRING_TOO_LONG.to_owned())
        }
    })
}

/// `SELECT index`: raftkv has one database.
fn select(index: &Bytes) -> Action {
    match kv::parse_i64(index) {
        Ok(0) => ok(),
        Ok(_) => error("ERR DB index is out of range"),
        Err(_) => error(kv::errors::NOT_AN_INTEGER),
    }
}

/// `AUTH [username] password`. raftkv has no passwords; like Redis without `requirepass`, the `default`
/// user accepts any password and other users do not exist.
fn auth(args: &[Bytes]) -> Action {
    match args {
        [_password] => error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure \
             your configuration is correct?",
        ),
        [username, _password] => match check_credentials(username) {
            Ok(()) => ok(),
            Err(text) => error(text),
        },
        _ => error(kv::errors::SYNTAX),
    }
}

fn check_credentials(username: &[u8]) -> Result<(), &'static str> {
    if username == b"default" {
        Ok(())
    } else {
        Err("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

/// `INFO [section ...]`: handed to the server, sections in lower case.
fn info_section(args: &[Bytes]) -> Action {
    if args.is_empty() {
        return Action::Info { section: None };
    }
    let sections: Vec<String> =
        args.iter().map(|arg| String::from_utf8_lossy(arg).to_ascii_lowercase()).collect();
    Action::Info { section: Some(sections.join(" ")) }
}

fn wrong_arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

fn ok() -> Action {
    Action::Reply(Frame::ok())
}

fn error(text: impl Into<String>) -> Action {
    Action::Reply(Frame::Error(text.into()))
}

#[cfg(test)]
mod tests;
