//! TEMPORARY stand-in for `crates/resp` (being written in parallel), with the same contract, so the
//! server can be built and tested before it lands. Deleted when the real crate is merged.

use bytes::{Buf, Bytes, BytesMut};
use kv::Reply;
use node::Consistency;

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_bulk_bytes: usize,
    pub max_args: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_bulk_bytes: 512 << 20, max_args: 1 << 20 }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolVersion {
    Resp2,
}

pub enum Action {
    Reply(Reply),
    Execute { command: kv::Command, consistency: Consistency },
    Info { section: Option<String> },
    ReplyAndClose(Reply),
}

fn line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    buf[from..].windows(2).position(|w| w == b"\r\n").map(|p| (from + p, from + p + 2))
}

fn number(bytes: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError("invalid length".into()))
}

pub fn parse_command(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((end, next)) = line(buf, 0) else { return Ok(None) };
    if buf[0] != b'*' {
        let words =
            buf[..end].split(|b| *b == b' ').filter(|w| !w.is_empty()).map(Bytes::copy_from_slice).collect();
        buf.advance(next);
        return Ok(Some(words));
    }
    let count = number(&buf[1..end])?;
    if count < 0 || count as usize > limits.max_args {
        return Err(ProtocolError("invalid multibulk length".into()));
    }
    let mut at = next;
    let mut spans = Vec::new();
    for _ in 0..count {
        let Some((end, next)) = line(buf, at) else { return Ok(None) };
        if buf[at] != b'$' {
            return Err(ProtocolError(format!("expected '$', got '{}'", buf[at] as char)));
        }
        let len = number(&buf[at + 1..end])?;
        if len < 0 || len as usize > limits.max_bulk_bytes {
            return Err(ProtocolError("invalid bulk length".into()));
        }
        if buf.len() < next + len as usize + 2 {
            return Ok(None);
        }
        spans.push((next, next + len as usize));
        at = next + len as usize + 2;
    }
    let frame = buf.split_to(at).freeze();
    Ok(Some(spans.into_iter().map(|(a, b)| frame.slice(a..b)).collect()))
}

pub fn encode_reply(reply: &Reply, _version: ProtocolVersion, out: &mut BytesMut) {
    use std::fmt::Write as _;
    let mut text = String::new();
    match reply {
        Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
        Reply::Status(s) => {
            let _ = write!(text, "+{s}\r\n");
            out.extend_from_slice(text.as_bytes());
        }
        Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
        Reply::Integer(n) => {
            let _ = write!(text, ":{n}\r\n");
            out.extend_from_slice(text.as_bytes());
        }
        Reply::Bulk(b) => {
            let _ = write!(text, "${}\r\n", b.len());
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Array(items) => {
            let _ = write!(text, "*{}\r\n", items.len());
            out.extend_from_slice(text.as_bytes());
            for item in items {
                encode_reply(item, _version, out);
            }
        }
        Reply::Error(e) => {
            let _ = write!(text, "-{}\r\n", e.replace(['\r', '\n'], " "));
            out.extend_from_slice(text.as_bytes());
        }
    }
}

pub struct Connection {
    consistency: Consistency,
    client_id: u64,
}

impl Connection {
    pub fn new(client_id: u64, _limits: Limits) -> Connection {
        Connection { consistency: Consistency::Linearizable, client_id }
    }

    pub fn protocol(&self) -> ProtocolVersion {
        ProtocolVersion::Resp2
    }

    pub fn handle(&mut self, argv: Vec<Bytes>) -> Action {
        let Some(name) = argv.first() else { return Action::Reply(Reply::error("ERR empty command")) };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        match name.as_str() {
            "PING" => {
                Action::Reply(argv.get(1).map_or(Reply::Status("PONG".into()), |b| Reply::Bulk(b.clone())))
            }
            "ECHO" if argv.len() == 2 => Action::Reply(Reply::Bulk(argv[1].clone())),
            "QUIT" => Action::ReplyAndClose(Reply::Ok),
            "INFO" => {
                Action::Info { section: argv.get(1).map(|s| String::from_utf8_lossy(s).to_lowercase()) }
            }
            "READONLY" => {
                self.consistency = Consistency::Stale;
                Action::Reply(Reply::Ok)
            }
            "READWRITE" => {
                self.consistency = Consistency::Linearizable;
                Action::Reply(Reply::Ok)
            }
            "CLIENT" if argv.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"id")) => {
                Action::Reply(Reply::Integer(self.client_id as i64))
            }
            "CLIENT" | "SELECT" => Action::Reply(Reply::Ok),
            "CONFIG" => Action::Reply(Reply::Array(Vec::new())),
            _ => match kv::parse(&argv) {
                Ok(command) => Action::Execute { command, consistency: self.consistency },
                Err(error) => Action::Reply(Reply::error(error.to_string())),
            },
        }
    }
}
