//! `raftkv serve --join ADDR [--promote]`: a node with an empty data directory asks a running cluster to
//! add it. It never bootstraps: its storage starts with an empty configuration, and it votes only once a
//! leader's log names it.
//!
//! 1. Ask ADDR (any member's client address) for `RAFT.MEMBER LIST` and put every member's addresses
//!    in the address book: the leader's first appends must be answered, and this node's log holds none
//!    of the replicated addresses yet.
//! 2. Ask ADDR for `RAFT.MEMBER ADD <own id> <own addresses> LEARNER` (forwarded to the leader, which
//!    records the addresses in the log first). "already a member" counts as done: a node that restarts
//!    with `--join` asks again.
//! 3. With `--promote`: `RAFT.MEMBER PROMOTE <own id>` (the leader waits until this node caught up).
//!
//! Each request is retried while the answer is `-TRYAGAIN` (no leader yet, a change in progress...),
//! bounded by [`JOIN_BOUND`]. The outcome is logged; a node that could not join keeps running as a
//! non-member that an operator can still add by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::address_book::{member_value, AddressBook};
use crate::config::{Member, ServerConfig};

/// How long a join keeps trying.
const JOIN_BOUND: Duration = Duration::from_secs(120);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the join; logs what happened.
pub async fn join(config: ServerConfig, book: Arc<AddressBook>) {
    let Some(addr) = config.join.clone() else { return };
    let own = config.members_as_advertised().into_iter().find(|m| m.id == config.node_id);
    let Some(own) = own else { return };
    match run(&addr, &own, config.promote_on_join, &book).await {
        Ok(outcome) => tracing::info!(via = %addr, "joined the cluster: {outcome}"),
        Err(error) => tracing::error!(
            via = %addr,
            %error,
            "could not join the cluster; this node stays a non-member (add it with raftkv member add)"
        ),
    }
}

async fn run(addr: &str, own: &Member, promote: bool, book: &AddressBook) -> Result<String, String> {
    let deadline = Instant::now() + JOIN_BOUND;
    let lines = retry(deadline, || ask(addr, &["RAFT.MEMBER", "LIST"])).await?;
    let members: Vec<Member> = lines.iter().filter_map(|line| parse_list_line(line)).collect();
    tracing::info!(members = ?members.iter().map(|m| m.id).collect::<Vec<_>>(), "learned the members' addresses");
    book.add_configured(own.id, members);
    let id = own.id.to_string();
    let value = String::from_utf8_lossy(&member_value(own)).into_owned();
    let add = ["RAFT.MEMBER", "ADD", &id, &value, "LEARNER"];
    let added = retry(deadline, || ask(addr, &add)).await;
    let mut outcome = match added {
        Ok(lines) => lines.join(" "),
        Err(error) if error.contains("is already a member") => format!("node {id} is already a member"),
        Err(error) => return Err(error),
    };
    if promote {
        let promote = ["RAFT.MEMBER", "PROMOTE", &id];
        match retry(deadline, || ask(addr, &promote)).await {
            Ok(lines) => outcome = lines.join(" "),
            Err(error) if error.contains("already a member") => {}
            Err(error) => return Err(error),
        }
    }
    Ok(outcome)
}

/// Calls `attempt` until it succeeds, fails with something other than `TRYAGAIN`, or `deadline` passes.
async fn retry<F, Fut>(deadline: Instant, mut attempt: F) -> Result<Vec<String>, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, String>>,
{
    loop {
        match attempt().await {
            Ok(lines) => return Ok(lines),
            Err(error) if Instant::now() < deadline && retryable(&error) => {
                tracing::info!(%error, "join: trying again shortly");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A refusal that changed nothing, or a connection that failed (the member may be restarting).
fn retryable(error: &str) -> bool {
    error.starts_with("TRYAGAIN")
        || error.contains("a change is already in progress")
        || error.starts_with("io:")
}

/// A line of `RAFT.MEMBER LIST`: `4 learner peer=A client=B admin=C` (`-` for no address).
fn parse_list_line(line: &str) -> Option<Member> {
    let mut words = line.split_whitespace();
    let id = words.next()?.parse().ok()?;
    let mut member = Member { id, peer_addr: String::new(), client_addr: None, admin_addr: None };
    let given = |value: &str| (value != "-").then(|| value.to_string());
    for word in words {
        if let Some(value) = word.strip_prefix("peer=") {
            member.peer_addr = value.to_string();
        } else if let Some(value) = word.strip_prefix("client=") {
            member.client_addr = given(value);
        } else if let Some(value) = word.strip_prefix("admin=") {
            member.admin_addr = given(value);
        }
    }
    (!member.peer_addr.is_empty()).then_some(member)
}

/// Sends one command; the answer's lines (a status, or an array of bulk strings), or the error's text
/// (`io: ...` when the connection failed).
async fn ask(addr: &str, words: &[&str]) -> Result<Vec<String>, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let argv: Vec<Bytes> = words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect();
        let mut out = BytesMut::new();
        resp::encode_command(&argv, &mut out);
        stream.write_all(&out).await?;
        let mut reader = BufReader::new(stream);
        let header = read_line(&mut reader).await?;
        let answer = match header.split_at(1.min(header.len())) {
            ("+", rest) => Ok(vec![rest.to_string()]),
            ("-", rest) => Err(rest.to_string()),
            ("*", count) => {
                let count: usize = count.parse().map_err(|_| invalid(&header))?;
                let mut lines = Vec::with_capacity(count.min(1_000));
                for _ in 0..count {
                    let length = read_line(&mut reader).await?;
                    let length: usize = length
                        .strip_prefix('$')
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| invalid(&length))?;
                    let mut body = vec![0; length + 2];
                    reader.read_exact(&mut body).await?;
                    body.truncate(length);
                    lines.push(String::from_utf8_lossy(&body).into_owned());
                }
                Ok(lines)
            }
            _ => return Err(invalid(&header)),
        };
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => Err(format!("io: {addr}: {error}")),
        Err(_) => Err(format!("io: {addr} did not answer within {ANSWER_TIMEOUT:?}")),
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected answer {what:?}"))
}

async fn read_line(reader: &mut (impl AsyncBufReadExt + Unpin)) -> std::io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed without an answer"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_give_members_with_their_addresses() {
        let m = parse_list_line("2 voter leader peer=10.0.0.2:7102 client=10.0.0.2:7002 admin=-").unwrap();
        assert_eq!(m.id, 2);
        assert_eq!(m.peer_addr, "10.0.0.2:7102");
        assert_eq!(m.client_addr.as_deref(), Some("10.0.0.2:7002"));
        assert_eq!(m.admin_addr, None);
        assert_eq!(parse_list_line("3 voter addresses unknown"), None);
        assert_eq!(parse_list_line("joint configuration in progress (entry 9): ..."), None);
    }
}
