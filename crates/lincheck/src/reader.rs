//! Reads Jepsen-style EDN histories, one operation event per line:
//!
//! ```text
//! {:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}
//! {:process 0, :type :ok, :f :append, :key "4", :value "x 0 1 y"}
//! ```
//!
//! `:type` is one of `:invoke :ok :fail :info`; `:f` one of `:read :get :write :put :append :cas :incr`;
//! `:key` a string or integer; `:value` a string, integer or `nil` (for `:cas`, a vector `[expected new]`).
//! Other fields are ignored. Lines whose `:process` is not an integer (a nemesis, say) are skipped, and so
//! are blank lines and `;` comments. Anything else that does not fit is an error naming the line: this
//! reader never guesses, never panics, and never holds more than [`MAX_LINE_BYTES`] of one line.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;

use crate::edn::{self, Edn};
use crate::history::{Call, History, HistoryError, Value};

/// Longest line accepted, in bytes (without its newline).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// What one line says happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub process: i64,
    /// The `:f` as written (`"get"` and `"read"` differ here, though they mean the same call).
    pub f: String,
    pub key: String,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Invoke(Call),
    /// The result that matters for the call: the value read, or the integer an incr returned.
    Ok(Value),
    Fail,
    Info,
}

/// An unreadable history: `line` counts from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ReadError {}

/// The lines an operation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub invoke_line: u64,
    pub complete_line: Option<u64>,
}

/// A history read from EDN, with the lines of each operation (indexed by [`OpId`]).
#[derive(Clone, Debug, Default)]
pub struct ReadHistory {
    pub history: History,
    pub spans: Vec<Span>,
}

/// Reads a whole history. Stops at the first unreadable line.
pub fn read_history(mut input: impl BufRead) -> Result<ReadHistory, ReadError> {
    let mut out = ReadHistory::default();
    // The `:f` each open invocation was written with, so its completion can be compared.
    let mut open_f: BTreeMap<i64, String> = BTreeMap::new();
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        line += 1;
        let fail = |reason: String| ReadError { line, reason };
        buf.clear();
        if !read_bounded_line(&mut input, &mut buf).map_err(fail)? {
            return Ok(out);
        }
        let Some(event) = parse_line(&buf).map_err(fail)? else { continue };
        let history = &mut out.history;
        match event.kind {
            EventKind::Invoke(call) => {
                let id = history
                    .invoke(event.process, event.key, call)
                    .map_err(|e| fail(explain(e, &out.spans)))?;
                debug_assert_eq!(id, out.spans.len());
                out.spans.push(Span { invoke_line: line, complete_line: None });
                open_f.insert(event.process, event.f);
            }
            kind => {
                let Some(id) = history.open_op(event.process) else {
                    return Err(fail(explain(
                        HistoryError::NothingOpen { process: event.process },
                        &out.spans,
                    )));
                };
                let invoked_f = open_f.remove(&event.process).unwrap_or_default();
                let invoke_line = out.spans[id].invoke_line;
                if invoked_f != event.f {
                    return Err(fail(format!(
                        "completion :f :{} differs from :f :{invoked_f} invoked on line {invoke_line}",
                        event.f
                    )));
                }
                let invoked_key = &history.ops()[id].key;
                if *invoked_key != event.key {
                    return Err(fail(format!(
                        "completion :key {:?} differs from :key {invoked_key:?} invoked on line {invoke_line}",
                        event.key
                    )));
                }
                let done = match kind {
                    EventKind::Ok(value) => history.complete_ok(event.process, value),
                    EventKind::Fail => history.complete_fail(event.process),
                    _ => history.complete_info(event.process),
                };
                debug_assert_eq!(done, Ok(id));
                out.spans[id].complete_line = Some(line);
            }
        }
    }
}

fn explain(error: HistoryError, spans: &[Span]) -> String {
    match error {
        HistoryError::AlreadyOpen { process, open } => {
            let at = spans.get(open).map_or(0, |s| s.invoke_line);
            format!("process {process} invokes again while its :invoke on line {at} is still open")
        }
        HistoryError::NothingOpen { process } => format!("process {process} completes with no open :invoke"),
    }
}

/// Reads one line into `buf` (without the newline), refusing lines over [`MAX_LINE_BYTES`] before
/// holding them. Returns false at the end of input.
fn read_bounded_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<bool, String> {
    let mut any = false;
    loop {
        let available = input.fill_buf().map_err(|e| format!("cannot read: {e}"))?;
        if available.is_empty() {
            break;
        }
        any = true;
        let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], true),
            None => (available, false),
        };
        if buf.len() + chunk.len() > MAX_LINE_BYTES {
            return Err(format!("line longer than {MAX_LINE_BYTES} bytes"));
        }
        buf.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found_newline);
        input.consume(used);
        if found_newline {
            break;
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(any)
}

/// Parses one line. `Ok(None)` for lines that say nothing about clients: blank lines, comments, and
/// events whose `:process` is not an integer (a nemesis, say).
pub fn parse_line(line: &[u8]) -> Result<Option<Event>, String> {
    let form = edn::parse(line).map_err(|e| format!("column {}: {}", e.column, e.reason))?;
    let Some(form) = form else { return Ok(None) };
    let Edn::Map(pairs) = form else { return Err(format!("expected a map, found {}", form.kind())) };
    let field =
        |name: &str| pairs.iter().find(|(k, _)| matches!(k, Edn::Keyword(n) if n == name)).map(|(_, v)| v);

    let process = match field("process") {
        None => return Err("missing :process".into()),
        Some(Edn::Int(digits)) => {
            digits.parse::<i64>().map_err(|_| format!(":process {digits} is too large"))?
        }
        Some(_) => return Ok(None),
    };
    let kind = match field("type") {
        Some(Edn::Keyword(t)) => t.as_str(),
        Some(other) => return Err(format!(":type must be a keyword, found {}", other.kind())),
        None => return Err("missing :type".into()),
    };
    let f = match field("f") {
        Some(Edn::Keyword(f)) => f.as_str(),
        Some(other) => return Err(format!(":f must be a keyword, found {}", other.kind())),
        None => return Err("missing :f".into()),
    };
    if !matches!(f, "read" | "get" | "write" | "put" | "append" | "cas" | "incr") {
        return Err(format!("unknown :f :{f} (expected :read :get :write :put :append :cas or :incr)"));
    }
    let key = match field("key") {
        Some(Edn::Str(key)) => key.clone(),
        Some(Edn::Int(key)) => key.clone(),
        Some(many @ (Edn::Vector(_) | Edn::List(_) | Edn::Set(_) | Edn::Map(_))) => {
            return Err(format!(
                "multi-key operation (:key is {}); only single-key operations are checked",
                many.kind()
            ))
        }
        Some(other) => return Err(format!(":key must be a string or integer, found {}", other.kind())),
        None => return Err("missing :key".into()),
    };
    let value = field("value").unwrap_or(&Edn::Nil);
    let kind = match kind {
        "invoke" => EventKind::Invoke(call(f, value)?),
        "ok" => EventKind::Ok(match f {
            "read" | "get" | "incr" => register_value(value).map_err(|e| format!(":ok {f} :value {e}"))?,
            _ => None,
        }),
        "fail" => EventKind::Fail,
        "info" => EventKind::Info,
        other => return Err(format!("unknown :type :{other} (expected :invoke :ok :fail or :info)")),
    };
    Ok(Some(Event { process, f: f.to_string(), key, kind }))
}

/// The call an invocation asks for.
fn call(f: &str, value: &Edn) -> Result<Call, String> {
    let wrong = |e: String| format!(":{f} :value {e}");
    Ok(match f {
        "read" | "get" => Call::Read,
        "incr" => Call::Incr,
        "write" | "put" => Call::Write(register_value(value).map_err(wrong)?),
        "append" => match register_value(value).map_err(wrong)? {
            Some(suffix) => Call::Append(suffix),
            None => return Err(":append needs a string or integer :value, found nil".into()),
        },
        _ => match value {
            Edn::Vector(pair) if pair.len() == 2 => Call::Cas {
                expected: register_value(&pair[0]).map_err(wrong)?,
                new: register_value(&pair[1]).map_err(wrong)?,
            },
            other => {
                return Err(format!(":cas :value must be a vector [expected new], found {}", other.kind()))
            }
        },
    })
}

/// A register value: a string, an integer (as its decimal text, so `5` equals `"5"`) or `nil`.
fn register_value(value: &Edn) -> Result<Value, String> {
    match value {
        Edn::Nil => Ok(None),
        Edn::Str(s) | Edn::Int(s) => Ok(Some(s.clone())),
        other => Err(format!("must be a string, integer or nil, found {}", other.kind())),
    }
}
