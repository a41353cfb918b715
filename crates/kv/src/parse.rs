//! From a client's argv (a RESP array of bulk strings) to a [`Command`], with the error texts Redis uses,
//! so that client libraries and people see what they would see against Redis.
//!
//! Connection-level commands (PING, ECHO, HELLO, SELECT, CONFIG, CLIENT, INFO, QUIT, MULTI, EXEC, DISCARD,
//! READONLY, ...) are the server's business: it handles those first and hands everything else here, so
//! they come back as [`ParseError::UnknownCommand`]. [`Transaction`] helps the server with MULTI/EXEC.

use bytes::Bytes;

use crate::command::{Command, ExpireCommand, ExpireCondition, SetCondition, SetExpiry, TtlUnit};
use crate::reply::{errors, Reply};

/// Why an argv is not a command. `Display` gives the exact Redis error text (without RESP's `-`).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ParseError {
    /// An empty argv (Redis silently ignores an empty multibulk; the server may do the same).
    #[error("ERR empty command")]
    Empty,
    /// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `, spelled exactly as Redis 7 does.
    #[error("{0}")]
    UnknownCommand(String),
    /// Arity mismatch; holds the lower-case command name.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    #[error("{}", errors::NOT_AN_INTEGER)]
    NotAnInteger,
    #[error("{}", errors::SYNTAX)]
    Syntax,
    #[error("{}", errors::INVALID_CURSOR)]
    InvalidCursor,
    /// An expire time that is zero, negative or too large; holds the lower-case command name.
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpireTime(&'static str),
    /// `DECRBY key -9223372036854775808`.
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    /// Any other Redis error text, verbatim.
    #[error("{0}")]
    Other(String),
}

impl ParseError {
    /// The error as a reply, for the server to send.
    pub fn to_reply(&self) -> Reply {
        Reply::Error(self.to_string())
    }
}

/// Parses one command. Names are case-insensitive; keys and values are binary-safe.
pub fn parse(argv: &[Bytes]) -> Result<Command, ParseError> {
    let Some(name) = argv.first() else { return Err(ParseError::Empty) };
    let lower = name.to_ascii_lowercase();
    let args = &argv[1..];
    let command = match lower.as_slice() {
        b"get" => {
            arity_exact("get", args, 1)?;
            Command::Get { key: args[0].clone() }
        }
        b"set" => parse_set(args)?,
        b"setex" | b"psetex" => parse_setex(&lower, args)?,
        b"del" | b"unlink" => {
            let name = if lower == b"del" { "del" } else { "unlink" };
            arity_at_least(name, args, 1)?;
            Command::Del { keys: args.to_vec() }
        }
        b"exists" => {
            arity_at_least("exists", args, 1)?;
            Command::Exists { keys: args.to_vec() }
        }
        b"incr" => {
            arity_exact("incr", args, 1)?;
            Command::IncrBy { key: args[0].clone(), delta: 1 }
        }
        b"decr" => {
            arity_exact("decr", args, 1)?;
            Command::IncrBy { key: args[0].clone(), delta: -1 }
        }
        b"incrby" => {
            arity_exact("incrby", args, 2)?;
            Command::IncrBy { key: args[0].clone(), delta: parse_i64(&args[1])? }
        }
        b"decrby" => {
            arity_exact("decrby", args, 2)?;
            let delta = parse_i64(&args[1])?.checked_neg().ok_or(ParseError::DecrementOverflow)?;
            Command::IncrBy { key: args[0].clone(), delta }
        }
        b"append" => {
            arity_exact("append", args, 2)?;
            Command::Append { key: args[0].clone(), value: args[1].clone() }
        }
        b"strlen" => {
            arity_exact("strlen", args, 1)?;
            Command::Strlen { key: args[0].clone() }
        }
        b"mget" => {
            arity_at_least("mget", args, 1)?;
            Command::MGet { keys: args.to_vec() }
        }
        b"mset" => {
            if args.is_empty() || args.len() % 2 == 1 {
                return Err(ParseError::WrongArity("mset"));
            }
            Command::MSet { pairs: args.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect() }
        }
        b"getset" => {
            arity_exact("getset", args, 2)?;
            Command::GetSet { key: args[0].clone(), value: args[1].clone() }
        }
        b"expire" => parse_expire(ExpireCommand::Expire, args)?,
        b"pexpire" => parse_expire(ExpireCommand::Pexpire, args)?,
        b"ttl" => {
            arity_exact("ttl", args, 1)?;
            Command::Ttl { key: args[0].clone(), unit: TtlUnit::Seconds }
        }
        b"pttl" => {
            arity_exact("pttl", args, 1)?;
            Command::Ttl { key: args[0].clone(), unit: TtlUnit::Milliseconds }
        }
        b"persist" => {
            arity_exact("persist", args, 1)?;
            Command::Persist { key: args[0].clone() }
        }
        b"dbsize" => {
            arity_exact("dbsize", args, 0)?;
            Command::DbSize
        }
        b"scan" => parse_scan(args)?,
        b"cas" => match args {
            [key, new] => Command::Cas { key: key.clone(), expected: None, new: new.clone() },
            [key, expected, new] => {
                Command::Cas { key: key.clone(), expected: Some(expected.clone()), new: new.clone() }
            }
            _ => return Err(ParseError::WrongArity("cas")),
        },
        _ => return Err(unknown_command(name, args)),
    };
    Ok(command)
}

/// Builds the error Redis 7 sends for an unknown command: the name and the first arguments quoted, each
/// followed by a space, cut at 128 bytes, with CR and LF shown as spaces.
fn unknown_command(name: &Bytes, args: &[Bytes]) -> ParseError {
    const LIMIT: usize = 128;
    let mut shown_args: Vec<u8> = Vec::new();
    for arg in args {
        if shown_args.len() >= LIMIT {
            break;
        }
        let room = LIMIT - shown_args.len();
        shown_args.push(b'\'');
        shown_args.extend_from_slice(&arg[..arg.len().min(room)]);
        shown_args.extend_from_slice(b"' ");
    }
    let name = &name[..name.len().min(LIMIT)];
    let text = format!(
        "ERR unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(&shown_args)
    );
    ParseError::UnknownCommand(text.replace(['\r', '\n'], " "))
}

fn arity_exact(name: &'static str, args: &[Bytes], count: usize) -> Result<(), ParseError> {
    if args.len() == count {
        Ok(())
    } else {
        Err(ParseError::WrongArity(name))
    }
}

fn arity_at_least(name: &'static str, args: &[Bytes], count: usize) -> Result<(), ParseError> {
    if args.len() >= count {
        Ok(())
    } else {
        Err(ParseError::WrongArity(name))
    }
}

/// Redis's `string2ll`: an optional `-`, then digits without leading zeros (so "0" but not "01", "+1",
/// " 1" or "-0"), within i64.
pub fn parse_i64(text: &[u8]) -> Result<i64, ParseError> {
    parse_strict_i64(text).ok_or(ParseError::NotAnInteger)
}

/// The same rule as [`parse_i64`], for stored values (INCR on a value that is not an integer).
pub(crate) fn parse_strict_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    let valid = match digits {
        [] => false,
        [b'0'] => !negative,
        [first, ..] => (b'1'..=b'9').contains(first) && digits.iter().all(u8::is_ascii_digit),
    };
    if !valid || digits.len() > 19 {
        return None;
    }
    // Accumulate negatively so that i64::MIN, whose magnitude has no positive i64, parses too.
    let mut value: i64 = 0;
    for digit in digits {
        value = value.checked_mul(10)?.checked_sub(i64::from(digit - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

fn parse_set(args: &[Bytes]) -> Result<Command, ParseError> {
    arity_at_least("set", args, 2)?;
    let mut condition = SetCondition::Always;
    let mut get = false;
    let mut expiry = SetExpiry::None;
    let mut options = args[2..].iter();
    while let Some(option) = options.next() {
        let option = option.to_ascii_lowercase();
        match option.as_slice() {
            b"nx" if condition != SetCondition::IfPresent => condition = SetCondition::IfAbsent,
            b"xx" if condition != SetCondition::IfAbsent => condition = SetCondition::IfPresent,
            b"get" => get = true,
            b"keepttl" if expiry == SetExpiry::None || expiry == SetExpiry::Keep => expiry = SetExpiry::Keep,
            b"ex" | b"px" | b"exat" | b"pxat" if expiry == SetExpiry::None => {
                let amount = parse_i64(options.next().ok_or(ParseError::Syntax)?)?;
                let seconds = option == b"ex" || option == b"exat";
                let millis = positive_millis(amount, seconds).ok_or(ParseError::InvalidExpireTime("set"))?;
                expiry = if option.ends_with(b"at") {
                    SetExpiry::AtMs(millis)
                } else {
                    SetExpiry::RelativeMs(millis)
                };
            }
            _ => return Err(ParseError::Syntax),
        }
    }
    Ok(Command::Set { key: args[0].clone(), value: args[1].clone(), condition, get, expiry })
}

/// `SETEX key seconds value` / `PSETEX key ms value`.
fn parse_setex(lower_name: &[u8], args: &[Bytes]) -> Result<Command, ParseError> {
    let (name, seconds) = if lower_name == b"setex" { ("setex", true) } else { ("psetex", false) };
    arity_exact(name, args, 3)?;
    let amount = parse_i64(&args[1])?;
    let millis = positive_millis(amount, seconds).ok_or(ParseError::InvalidExpireTime(name))?;
    Ok(Command::Set {
        key: args[0].clone(),
        value: args[2].clone(),
        condition: SetCondition::Always,
        get: false,
        expiry: SetExpiry::RelativeMs(millis),
    })
}

/// Redis accepts SET's expire amounts only when positive and, in seconds, small enough to become
/// milliseconds within i64.
fn positive_millis(amount: i64, seconds: bool) -> Option<u64> {
    if amount <= 0 {
        return None;
    }
    let millis = if seconds { amount.checked_mul(1000)? } else { amount };
    u64::try_from(millis).ok()
}

fn parse_expire(command: ExpireCommand, args: &[Bytes]) -> Result<Command, ParseError> {
    let name = match command {
        ExpireCommand::Expire => "expire",
        ExpireCommand::Pexpire => "pexpire",
    };
    arity_at_least(name, args, 2)?;
    let amount = parse_i64(&args[1])?;
    let ttl_ms = match command {
        ExpireCommand::Expire => amount.checked_mul(1000).ok_or(ParseError::InvalidExpireTime(name))?,
        ExpireCommand::Pexpire => amount,
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[2..] {
        match option.to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"gt" => gt = true,
            b"lt" => lt = true,
            _ => {
                return Err(ParseError::Other(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(option)
                )))
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(ParseError::Other(
            "ERR NX and XX, GT or LT options at the same time are not compatible".into(),
        ));
    }
    if gt && lt {
        return Err(ParseError::Other("ERR GT and LT options at the same time are not compatible".into()));
    }
    let condition = ExpireCondition { if_no_ttl: nx, if_has_ttl: xx, if_later: gt, if_earlier: lt };
    Ok(Command::Expire { key: args[0].clone(), ttl_ms, condition, command })
}

fn parse_scan(args: &[Bytes]) -> Result<Command, ParseError> {
    arity_at_least("scan", args, 1)?;
    let cursor = parse_cursor(&args[0])?;
    let mut pattern = None;
    let mut count = 10;
    let mut type_matches = true;
    let mut rest = &args[1..];
    while let [option, value, tail @ ..] = rest {
        match option.to_ascii_lowercase().as_slice() {
            b"match" => pattern = Some(value.clone()),
            b"count" => {
                count = u64::try_from(parse_i64(value)?).map_err(|_| ParseError::Syntax)?;
                if count == 0 {
                    return Err(ParseError::Syntax);
                }
            }
            b"type" => type_matches = value.eq_ignore_ascii_case(b"string"),
            _ => return Err(ParseError::Syntax),
        }
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(ParseError::Syntax);
    }
    // MATCH * filters nothing; dropping it saves the matcher's work.
    if pattern.as_deref() == Some(b"*".as_slice()) {
        pattern = None;
    }
    Ok(Command::Scan { cursor, pattern, count, type_matches })
}

fn parse_cursor(text: &[u8]) -> Result<u64, ParseError> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::InvalidCursor);
    }
    std::str::from_utf8(text).ok().and_then(|s| s.parse().ok()).ok_or(ParseError::InvalidCursor)
}

/// The commands queued between MULTI and EXEC on one connection. Each queued argv is parsed at once, as
/// Redis does: a parse error is answered immediately and dooms the transaction, so EXEC then discards
/// everything with `EXECABORT` and nothing reaches the log.
#[derive(Clone, Debug, Default)]
pub struct Transaction {
    commands: Vec<Command>,
    failed: bool,
}

impl Transaction {
    /// An empty transaction (after MULTI).
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// Queues one command. On `Ok` the server answers `+QUEUED`; on `Err` it sends the error, and EXEC
    /// will abort.
    pub fn queue(&mut self, argv: &[Bytes]) -> Result<(), ParseError> {
        match parse(argv) {
            Ok(command) => {
                self.commands.push(command);
                Ok(())
            }
            Err(error) => {
                self.failed = true;
                Err(error)
            }
        }
    }

    /// How many commands are queued.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// EXEC: the whole transaction as one command to propose (or to read, if [`Command::is_read`]), or the
    /// `EXECABORT` error when a queued command failed to parse.
    pub fn exec(self) -> Result<Command, Reply> {
        if self.failed {
            Err(Reply::error(errors::EXECABORT_PREVIOUS_ERRORS))
        } else {
            Ok(Command::Multi(self.commands))
        }
    }
}
