//! From bytes to commands: RESP2 request frames (an array of bulk strings, what every client library
//! sends) and inline commands (one line of words, what a person types into `telnet`).
//!
//! # Partial input costs nothing
//! A request may arrive in any number of pieces. The parser never copies or scans bulk data while it
//! waits: it reads a bulk's `$<length>` header (at most [`MAX_LENGTH_LINE_BYTES`] bytes), then checks
//! that `length + 2` bytes are buffered — O(1) — and skips over them. Nothing is consumed from the buffer
//! until a whole request is there; then the request is split off in one piece and every argument is a
//! zero-copy slice of it.
//!
//! [`parse_command`] keeps no state between calls, so each call re-reads the headers of the arguments
//! already buffered: a large bulk fed in small chunks costs O(1) per call, but a request with very many
//! arguments fed in small chunks costs O(arguments) per call. [`RequestParser`] (and
//! `Connection::parse`, which holds one) remembers where it got to, so the work is linear in the input
//! whatever the chunking; a server should use one per connection.
//!
//! # Limits
//! Every length is checked against [`Limits`] before anything is reserved, so a declared bulk of 10^12
//! bytes or 10^9 arguments is a [`ProtocolError`], never an allocation. The error texts are Redis's
//! (`ERR Protocol error: invalid bulk length`); the server sends the text and closes the connection,
//! because after a framing error it cannot know where the next request starts.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// How much a client may send. Defaults follow Redis where Redis has a limit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Limits {
    /// Longest bulk string (one argument), in bytes. Redis's `proto-max-bulk-len`: 512 MiB.
    pub max_bulk_bytes: usize,
    /// Most arguments in one request, the command name included. Redis allows up to 2^31; raftkv
    /// defaults to 1 Mi, far above what MSET or DEL batches need.
    pub max_arguments: usize,
    /// Longest inline command line, in bytes. Redis's `PROTO_INLINE_MAX_SIZE`: 64 KiB.
    pub max_inline_bytes: usize,
    /// Most commands queued between MULTI and EXEC. A transaction becomes one log entry, so it is
    /// bounded like one (Redis has no such limit).
    pub max_multi_commands: usize,
    /// Most bytes in one request as sent (headers, data and CRLFs), and most argument bytes queued
    /// between MULTI and EXEC: each becomes one log entry, which must fit in one peer frame. Redis's
    /// `client-query-buffer-limit` plays this part. The default fits one bulk of `max_bulk_bytes` plus a
    /// key and the command's other words.
    pub max_request_bytes: usize,
    /// Longest key, in bytes (Redis has no limit of its own but the bulk length).
    pub max_key_bytes: usize,
    /// Longest value (any argument of a state-machine command that is not a key), in bytes. Redis's
    /// limit on strings, `proto-max-bulk-len`, 512 MiB. The state machine applies its own copy of this
    /// limit to what APPEND builds (`kv::KvConfig::max_value_bytes`).
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk_bytes: 512 * 1024 * 1024,
            max_arguments: 1024 * 1024,
            max_inline_bytes: 64 * 1024,
            max_multi_commands: 10_000,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_key_bytes: 512 * 1024 * 1024,
            max_value_bytes: 512 * 1024 * 1024,
        }
    }
}

/// [`Limits::max_request_bytes`] unless configured: one 512 MiB bulk and 1 MiB for everything else.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = (512 << 20) + (1 << 20);

/// The longest `*<count>` or `$<length>` line accepted, after the type byte and before CRLF: a sign and
/// 19 digits cover every i64, with room to spare. A longer line is an error at once rather than a reason
/// to buffer more.
pub const MAX_LENGTH_LINE_BYTES: usize = 32;

/// A request that cannot be framed. `Display` is the Redis error text without RESP's `-`; after sending
/// it the server closes the connection.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ProtocolError {
    /// `*<count>` is not an integer, or is above [`Limits::max_arguments`].
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$<length>` is not an integer, is negative, or is above [`Limits::max_bulk_bytes`].
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An argument of a multibulk request does not start with `$`. Holds the byte, shown printable.
    #[error("ERR Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(String),
    /// No CRLF within [`MAX_LENGTH_LINE_BYTES`] of a `*`.
    #[error("ERR Protocol error: too big mbulk count string")]
    MultibulkCountTooLong,
    /// No CRLF within [`MAX_LENGTH_LINE_BYTES`] of a `$`.
    #[error("ERR Protocol error: too big bulk count string")]
    BulkCountTooLong,
    /// An inline line longer than [`Limits::max_inline_bytes`].
    #[error("ERR Protocol error: too big inline request")]
    InlineTooBig,
    /// An inline line with a quote that is not closed, or closed and not followed by a space.
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A bulk's data is not followed by CRLF. (Redis skips those two bytes unchecked; a client that gets
    /// them wrong has lost the framing, so raftkv says so.)
    #[error("ERR Protocol error: expected CRLF after bulk data")]
    ExpectedCrlfAfterBulk,
    /// A multibulk request whose declared lengths add up to more than [`Limits::max_request_bytes`]
    /// (the limit is in the text). Refused as soon as the header that crosses the limit arrives.
    #[error("ERR Protocol error: request larger than {0} bytes (max_request_bytes)")]
    RequestTooBig(usize),
}

impl ProtocolError {
    /// The error as a reply, for the server to send before closing.
    pub fn to_reply(&self) -> kv::Reply {
        kv::Reply::Error(self.to_string())
    }
}

/// Parses one command from the front of `buf`: `Ok(Some(argv))` consumes exactly that request;
/// `Ok(None)` means incomplete, and nothing is consumed except blank inline lines, which are ignored as
/// Redis ignores them (as are `*0` and `*-1` requests); `Err` is a protocol error. Keeps no state: see
/// [`RequestParser`] for a parser whose cost does not depend on how the input was chunked.
pub fn parse_command(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    RequestParser::new().parse(buf, limits)
}

/// A request parser that remembers how far it got in a partial request, so each buffered byte is
/// examined once however the request is split (only a length line cut in two, at most
/// [`MAX_LENGTH_LINE_BYTES`] long, is read again). Use one per connection, and between calls only append
/// to the buffer (the parser holds offsets into it); [`RequestParser::reset`] forgets the progress.
#[derive(Clone, Debug, Default)]
pub struct RequestParser {
    state: State,
    /// Bytes looked at so far (headers, CRLFs, inline text; not skipped bulk data). Tests use it to show
    /// that parsing is linear in the input.
    examined_bytes: u64,
}

#[derive(Clone, Debug, Default)]
enum State {
    /// Nothing of the next request seen yet.
    #[default]
    Start,
    /// An inline line whose first `scanned` bytes hold no LF.
    Inline { scanned: usize },
    /// A multibulk request whose header has been read.
    Multibulk(MultibulkProgress),
}

#[derive(Clone, Debug)]
struct MultibulkProgress {
    /// The declared argument count (1 ..= `max_arguments`).
    expected: usize,
    /// Where each complete argument's data lies, as offsets from the start of the buffer.
    arguments: Vec<Range<usize>>,
    /// Offset of the next argument's `$` header.
    /// Invariant: `next` is the end of the last complete argument's CRLF (or of the `*` line).
    next: usize,
    /// The data range of the argument whose header at `next` has been read but whose data has not all
    /// arrived, so that waiting for a large bulk does not re-read its header on every call.
    pending: Option<Range<usize>>,
}

impl RequestParser {
    /// A parser at the start of a request.
    pub fn new() -> RequestParser {
        RequestParser::default()
    }

    /// Forgets any partial request (for when the caller discards its buffer).
    pub fn reset(&mut self) {
        self.state = State::Start;
    }

    /// Bytes examined since this parser was made (bulk data skipped by length is not counted).
    pub fn examined_bytes(&self) -> u64 {
        self.examined_bytes
    }

    /// As [`parse_command`], resuming where the previous call on the same buffer stopped.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let result = self.parse_inner(buf, limits);
        if !matches!(result, Ok(None)) {
            // A request was returned or the connection is lost: either way the next call starts afresh.
            self.state = State::Start;
        }
        result
    }

    fn parse_inner(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if self.progress_beyond(buf.len()) {
            // The buffer shrank under us: the caller broke the contract. Starting over is always safe.
            self.state = State::Start;
        }
        loop {
            // Each arm puts back the state it wants the next call to resume from.
            match std::mem::take(&mut self.state) {
                State::Start => match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => {
                        if !self.start_multibulk(buf, limits)? {
                            return Ok(None);
                        }
                    }
                    Some(_) => self.state = State::Inline { scanned: 0 },
                },
                State::Inline { scanned } => match self.inline_line(buf, scanned, limits)? {
                    InlineOutcome::Incomplete => return Ok(None),
                    InlineOutcome::Blank => {}
                    InlineOutcome::Command(argv) => return Ok(Some(argv)),
                },
                State::Multibulk(progress) => return self.continue_multibulk(progress, buf, limits),
            }
        }
    }

    fn progress_beyond(&self, buffered: usize) -> bool {
        match &self.state {
            State::Start => false,
            State::Inline { scanned } => *scanned > buffered,
            State::Multibulk(progress) => {
                progress.next > buffered
                    || progress.pending.as_ref().is_some_and(|data| data.start > buffered)
            }
        }
    }

    /// Reads the `*<count>` line. `true`: the state moved on (to a multibulk, or stays at `Start` after an
    /// empty request was skipped); `false`: the line is incomplete.
    fn start_multibulk(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<bool, ProtocolError> {
        let Some((count, header_end)) = self.length_line(
            buf,
            1,
            ProtocolError::InvalidMultibulkLength,
            ProtocolError::MultibulkCountTooLong,
        )?
        else {
            return Ok(false);
        };
        if count <= 0 {
            // Redis ignores `*0` and `*-1`; so does raftkv.
            let _ = buf.split_to(header_end);
            return Ok(true);
        }
        let expected = usize::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
        if expected > limits.max_arguments {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        // Reserve for what is likely, not for what is declared: the count is the client's word.
        let arguments = Vec::with_capacity(expected.min(64));
        self.state =
            State::Multibulk(MultibulkProgress { expected, arguments, next: header_end, pending: None });
        Ok(true)
    }

    fn continue_multibulk(
        &mut self,
        mut progress: MultibulkProgress,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        while progress.arguments.len() < progress.expected {
            let data = match progress.pending.take() {
                Some(data) => data,
                None => match self.bulk_header(buf, progress.next, limits)? {
                    Some(data) => data,
                    None => {
                        self.state = State::Multibulk(progress);
                        return Ok(None);
                    }
                },
            };
            let after = data.end + 2;
            if after > limits.max_request_bytes {
                return Err(ProtocolError::RequestTooBig(limits.max_request_bytes));
            }
            if buf.len() < after {
                // The data is not all here: remember the header, so that waiting costs O(1) per call.
                progress.pending = Some(data);
                self.state = State::Multibulk(progress);
                return Ok(None);
            }
            self.examined_bytes += 2;
            if &buf[data.end..after] != b"\r\n" {
                return Err(ProtocolError::ExpectedCrlfAfterBulk);
            }
            progress.arguments.push(data);
            progress.next = after;
        }
        let frame = buf.split_to(progress.next).freeze();
        Ok(Some(progress.arguments.into_iter().map(|range| frame.slice(range)).collect()))
    }

    /// Reads the `$<length>` header at `at`; returns where the data lies (its CRLF follows it), or `None`
    /// if the header is incomplete.
    fn bulk_header(
        &mut self,
        buf: &BytesMut,
        at: usize,
        limits: &Limits,
    ) -> Result<Option<Range<usize>>, ProtocolError> {
        let Some(&kind) = buf.get(at) else { return Ok(None) };
        self.examined_bytes += 1;
        if kind != b'$' {
            return Err(ProtocolError::ExpectedBulk(printable(kind)));
        }
        let Some((length, data_start)) =
            self.length_line(buf, at + 1, ProtocolError::InvalidBulkLength, ProtocolError::BulkCountTooLong)?
        else {
            return Ok(None);
        };
        let length = usize::try_from(length).map_err(|_| ProtocolError::InvalidBulkLength)?;
        if length > limits.max_bulk_bytes {
            return Err(ProtocolError::InvalidBulkLength);
        }
        // The end plus its CRLF must be representable; with any sane limit it is.
        match data_start.checked_add(length) {
            Some(data_end) if data_end.checked_add(2).is_some() => Ok(Some(data_start..data_end)),
            _ => Err(ProtocolError::InvalidBulkLength),
        }
    }

    /// Reads a decimal length line that starts at `start` (just after `*` or `$`) and ends with CRLF.
    /// Returns the number and the offset just after the CRLF, or `None` if the line is not all here.
    fn length_line(
        &mut self,
        buf: &BytesMut,
        start: usize,
        invalid: ProtocolError,
        too_long: ProtocolError,
    ) -> Result<Option<(i64, usize)>, ProtocolError> {
        let window_end = buf.len().min(start.saturating_add(MAX_LENGTH_LINE_BYTES + 1));
        let window = buf.get(start..window_end).unwrap_or(&[]);
        let Some(cr) = window.iter().position(|&b| b == b'\r') else {
            self.examined_bytes += window.len() as u64;
            return if window.len() > MAX_LENGTH_LINE_BYTES { Err(too_long) } else { Ok(None) };
        };
        self.examined_bytes += cr as u64 + 2;
        let Some(&lf) = buf.get(start + cr + 1) else { return Ok(None) };
        if lf != b'\n' {
            return Err(invalid);
        }
        let number = parse_decimal(&window[..cr]).ok_or(invalid)?;
        Ok(Some((number, start + cr + 2)))
    }

    fn inline_line(
        &mut self,
        buf: &mut BytesMut,
        scanned: usize,
        limits: &Limits,
    ) -> Result<InlineOutcome, ProtocolError> {
        // Search only up to the limit (plus the LF), so an endless line costs no more than the limit.
        let search_end = buf.len().min(limits.max_inline_bytes.saturating_add(2));
        let from = scanned.min(search_end);
        let found = buf[from..search_end].iter().position(|&b| b == b'\n');
        self.examined_bytes += (found.map_or(search_end, |at| from + at + 1) - from) as u64;
        let Some(at) = found else {
            if buf.len() > limits.max_inline_bytes.saturating_add(1) {
                return Err(ProtocolError::InlineTooBig);
            }
            self.state = State::Inline { scanned: search_end };
            return Ok(InlineOutcome::Incomplete);
        };
        let newline = from + at;
        let line = buf.split_to(newline + 1);
        let text = line[..newline].strip_suffix(b"\r").unwrap_or(&line[..newline]);
        if text.len() > limits.max_inline_bytes {
            return Err(ProtocolError::InlineTooBig);
        }
        let argv = split_inline(text)?;
        if argv.is_empty() {
            Ok(InlineOutcome::Blank)
        } else {
            Ok(InlineOutcome::Command(argv))
        }
    }
}

enum InlineOutcome {
    Incomplete,
    Blank,
    Command(Vec<Bytes>),
}

/// Redis's `string2ll` for lengths: an optional `-`, then digits without a leading zero (just "0" is
/// fine), within i64.
fn parse_decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in digits {
        value = value.checked_mul(10)?.checked_add(i64::from(digit - b'0'))?;
    }
    if negative {
        if value == 0 {
            return None;
        }
        Some(-value)
    } else {
        Some(value)
    }
}

/// A byte as it can be shown inside an error line: itself if printable, else `\xHH`.
fn printable(byte: u8) -> String {
    if byte.is_ascii_graphic() || byte == b' ' {
        char::from(byte).to_string()
    } else {
        format!("\\x{byte:02x}")
    }
}

/// Redis's `sdssplitargs`: words separated by whitespace; `"..."` with the escapes `\n \r \t \b \a \\
/// \" \xHH`; `'...'` with `\'`. A closing quote must be followed by whitespace or the end of the line.
pub fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut argv = Vec::new();
    let mut at = 0;
    loop {
        while at < line.len() && is_space(line[at]) {
            at += 1;
        }
        if at == line.len() {
            return Ok(argv);
        }
        let mut word = Vec::new();
        loop {
            match line.get(at) {
                None => break,
                Some(&b) if is_space(b) => break,
                Some(b'"') => at = double_quoted(line, at + 1, &mut word)?,
                Some(b'\'') => at = single_quoted(line, at + 1, &mut word)?,
                Some(&b) => {
                    word.push(b);
                    at += 1;
                }
            }
        }
        argv.push(Bytes::from(word));
    }
}

/// Reads a `"..."` word from just after the opening quote; returns the offset after the closing one.
fn double_quoted(line: &[u8], mut at: usize, word: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(at) {
            None => return Err(ProtocolError::UnbalancedQuotes),
            Some(b'"') => return closing_quote(line, at + 1),
            Some(b'\\') => match line.get(at + 1) {
                None => return Err(ProtocolError::UnbalancedQuotes),
                Some(b'x') if hex_byte(line, at + 2).is_some() => {
                    word.push(hex_byte(line, at + 2).unwrap_or_default());
                    at += 4;
                }
                Some(&escaped) => {
                    word.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    at += 2;
                }
            },
            Some(&b) => {
                word.push(b);
                at += 1;
            }
        }
    }
}

/// Reads a `'...'` word from just after the opening quote; returns the offset after the closing one.
fn single_quoted(line: &[u8], mut at: usize, word: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match (line.get(at), line.get(at + 1)) {
            (None, _) => return Err(ProtocolError::UnbalancedQuotes),
            (Some(b'\\'), Some(b'\'')) => {
                word.push(b'\'');
                at += 2;
            }
            (Some(b'\''), _) => return closing_quote(line, at + 1),
            (Some(&b), _) => {
                word.push(b);
                at += 1;
            }
        }
    }
}

fn closing_quote(line: &[u8], after: usize) -> Result<usize, ProtocolError> {
    match line.get(after) {
        None => Ok(after),
        Some(&b) if is_space(b) => Ok(after),
        Some(_) => Err(ProtocolError::UnbalancedQuotes),
    }
}

fn hex_byte(line: &[u8], at: usize) -> Option<u8> {
    let high = char::from(*line.get(at)?).to_digit(16)?;
    let low = char::from(*line.get(at + 1)?).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}

/// C's `isspace`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[cfg(test)]
mod tests;
