//! One RESP connection under closed-loop load: keep `inflight` requests pipelined, write every new
//! request of a round in one `write`, and time each answer from when its request was queued.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::args::BenchConfig;
use crate::control::{Control, Ticket};
use crate::run::ConnectionOutcome;
use crate::stats::Op;
use crate::workload::{key_name, value_of_size, Chooser};

/// A simple reply line (`+OK`, `-ERR …`, a length header) longer than this is not RESP we understand.
const MAX_LINE_BYTES: usize = 64 * 1024;

struct Sent {
    op: Op,
    at: Instant,
    ticket: Ticket,
}

pub async fn run_connection(
    address: String,
    number: u64,
    config: Arc<BenchConfig>,
    control: Arc<Control>,
) -> Result<ConnectionOutcome, String> {
    let stream = TcpStream::connect(&address).await.map_err(|e| format!("connecting to {address}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut reader, mut writer) = stream.into_split();
    let mut chooser = Chooser::new(config.seed, number, config.get_percent, config.keyspace);
    let value = value_of_size(config.value_size);
    let mut key = Vec::with_capacity(16);
    let mut output = BytesMut::with_capacity(config.inflight * (64 + config.value_size));
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut waiting: VecDeque<Sent> = VecDeque::with_capacity(config.inflight);
    let mut outcome = ConnectionOutcome::default();
    loop {
        while waiting.len() < config.inflight {
            let Some(ticket) = control.ticket() else { break };
            let (op, number) = chooser.next();
            key_name(number, &mut key);
            match op {
                Op::Set => encode_command(&[b"SET", &key, &value], &mut output),
                Op::Get => encode_command(&[b"GET", &key], &mut output),
            }
            waiting.push_back(Sent { op, at: Instant::now(), ticket });
        }
        if !output.is_empty() {
            writer.write_all(&output).await.map_err(|e| format!("writing to {address}: {e}"))?;
            output.clear();
        }
        if waiting.is_empty() {
            return Ok(outcome);
        }
        let read = tokio::time::timeout(config.timeout, reader.read_buf(&mut input))
            .await
            .map_err(|_| format!("{address}: no answer within {:?}", config.timeout))?
            .map_err(|e| format!("reading from {address}: {e}"))?;
        if read == 0 {
            return Err(format!(
                "{address} closed the connection with {} requests unanswered",
                waiting.len()
            ));
        }
        let now = Instant::now();
        while let Some(reply) = scan_reply(&input, 0)? {
            let sent =
                waiting.pop_front().ok_or_else(|| format!("{address} answered a request never sent"))?;
            if reply.is_error && outcome.first_error.is_none() {
                outcome.first_error = Some(String::from_utf8_lossy(&input[1..reply.length - 2]).into_owned());
            }
            input.advance(reply.length);
            control.answered(reply.is_error);
            if sent.ticket == Ticket::Measured {
                outcome.answered(sent.op, reply.is_error, sent.at, now);
            }
        }
    }
}

/// Appends one request as a RESP array of bulk strings.
pub fn encode_command(argv: &[&[u8]], out: &mut BytesMut) {
    use std::fmt::Write;
    write!(out, "*{}\r\n", argv.len()).expect("BytesMut grows");
    for word in argv {
        write!(out, "${}\r\n", word.len()).expect("BytesMut grows");
        out.extend_from_slice(word);
        out.extend_from_slice(b"\r\n");
    }
}

/// One complete reply at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedReply {
    /// Bytes it takes, from the buffer's start.
    pub length: usize,
    /// An error reply (`-…`), or an array holding one.
    pub is_error: bool,
}

/// Finds the end of the reply that starts at `start`, without copying it: `Ok(None)` while it is
/// incomplete. Knows RESP2 and the RESP3 types a SET or GET can answer with.
pub fn scan_reply(buf: &[u8], start: usize) -> Result<Option<ScannedReply>, String> {
    let Some(&kind) = buf.get(start) else { return Ok(None) };
    let Some(line_end) = find_crlf(buf, start) else {
        if buf.len() - start > MAX_LINE_BYTES {
            return Err(format!("a reply line longer than {MAX_LINE_BYTES} bytes"));
        }
        return Ok(None);
    };
    let after_line = line_end + 2;
    let line = &buf[start + 1..line_end];
    let simple = |is_error| Ok(Some(ScannedReply { length: after_line - start, is_error }));
    match kind {
        b'+' | b':' | b'_' | b',' | b'#' => simple(false),
        b'-' => simple(true),
        b'$' => {
            let Some(size) = parse_length(line)? else { return simple(false) };
            let end = after_line + size + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err("a bulk string not followed by CRLF".into());
            }
            Ok(Some(ScannedReply { length: end - start, is_error: false }))
        }
        b'*' => {
            let Some(count) = parse_length(line)? else { return simple(false) };
            let (mut at, mut is_error) = (after_line, false);
            for _ in 0..count {
                match scan_reply(buf, at)? {
                    Some(element) => {
                        at += element.length;
                        is_error |= element.is_error;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some(ScannedReply { length: at - start, is_error }))
        }
        other => Err(format!("unexpected reply type byte {:?}", other as char)),
    }
}

fn find_crlf(buf: &[u8], start: usize) -> Option<usize> {
    let end = buf.len().min(start + MAX_LINE_BYTES);
    buf[start..end].windows(2).position(|pair| pair == b"\r\n").map(|i| start + i)
}

/// A length header: `None` for -1 (nil), the size otherwise.
fn parse_length(line: &[u8]) -> Result<Option<usize>, String> {
    if line == b"-1" {
        return Ok(None);
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
        .filter(|&n| n <= 512 * 1024 * 1024)
        .map(Some)
        .ok_or_else(|| format!("bad length {:?}", String::from_utf8_lossy(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(bytes: &[u8]) -> Option<ScannedReply> {
        scan_reply(bytes, 0).expect("well-formed")
    }

    #[test]
    fn replies_to_set_and_get() {
        assert_eq!(scan(b"+OK\r\n"), Some(ScannedReply { length: 5, is_error: false }));
        assert_eq!(scan(b"$-1\r\n+OK"), Some(ScannedReply { length: 5, is_error: false }));
        assert_eq!(scan(b"$3\r\nabc\r\n$3"), Some(ScannedReply { length: 9, is_error: false }));
        assert_eq!(scan(b"-TRYAGAIN no leader\r\n"), Some(ScannedReply { length: 21, is_error: true }));
        assert_eq!(scan(b"*2\r\n$1\r\na\r\n-ERR x\r\n"), Some(ScannedReply { length: 19, is_error: true }));
        assert_eq!(scan(b"_\r\n"), Some(ScannedReply { length: 3, is_error: false }));
    }

    #[test]
    fn an_incomplete_reply_waits_for_more_bytes() {
        for partial in [&b""[..], b"+O", b"+OK\r", b"$3\r\nab", b"$3\r\nabc\r", b"*2\r\n:1\r\n"] {
            assert_eq!(scan(partial), None, "{:?}", String::from_utf8_lossy(partial));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        assert!(scan_reply(b"?what\r\n", 0).is_err());
        assert!(scan_reply(b"$x\r\n", 0).is_err());
        assert!(scan_reply(b"$1\r\nabc\r\n", 0).is_err());
        assert!(scan_reply(&vec![b'+'; MAX_LINE_BYTES + 10], 0).is_err());
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&[b"SET", b"k", b"vv"], &mut out);
        encode_command(&[b"GET", b"k"], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
