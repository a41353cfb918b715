//! The HTTP face of the cluster commands ([`crate::cluster_admin`]), same code and answers as RESP:
//!
//! - `GET /members` — `RAFT.MEMBER LIST`, one line per member;
//! - `POST /members/{id}?addrs=PEER,CLIENT,ADMIN[&learner=1]` — `RAFT.MEMBER ADD`;
//! - `POST /members/{id}/promote` — `RAFT.MEMBER PROMOTE`; `DELETE /members/{id}` — `RAFT.MEMBER REMOVE`;
//! - `POST /transfer-leader/{id}` — `RAFT.TRANSFER-LEADER`.
//!
//! Status codes: 200 done, 202 still in progress, 409 refused (`-ERR`), 503 nothing changed, retry
//! (`-TRYAGAIN`). The body is the answer's text.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kv::Reply;

use crate::cluster_admin::ClusterAdmin;

/// Runs `words` as a cluster command and turns the answer into a response.
pub async fn run(cluster: &ClusterAdmin, words: Vec<String>) -> Response {
    let argv: Vec<Bytes> = words.into_iter().map(Bytes::from).collect();
    let reply = cluster.execute(&argv).await;
    let (status, text) = match reply {
        Reply::Status(text) => (StatusCode::OK, text),
        Reply::Array(lines) => (StatusCode::OK, lines.iter().map(line_of).collect::<Vec<_>>().join("\n")),
        Reply::Error(text) if text.starts_with("INPROGRESS") => (StatusCode::ACCEPTED, text),
        Reply::Error(text) if text.starts_with("TRYAGAIN") => (StatusCode::SERVICE_UNAVAILABLE, text),
        Reply::Error(text) => (StatusCode::CONFLICT, text),
        other => (StatusCode::OK, line_of(&other)),
    };
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text + "\n").into_response()
}

fn line_of(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => format!("{other:?}"),
    }
}

/// `addrs` and `learner` from a query string (`a=b&c=d`, no percent-decoding beyond `%2C` and `%3A`).
pub fn add_arguments(id: u64, query: Option<&str>) -> Vec<String> {
    let mut addrs = String::new();
    let mut learner = false;
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("addrs", value)) => {
                addrs = value.replace("%2C", ",").replace("%2c", ",").replace("%3A", ":").replace("%3a", ":")
            }
            Some(("learner", value)) => learner = matches!(value, "1" | "true" | "yes"),
            None if pair == "learner" => learner = true,
            _ => {}
        }
    }
    let mut words = vec!["RAFT.MEMBER".to_string(), "ADD".into(), id.to_string(), addrs];
    if learner {
        words.push("LEARNER".into());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_string_gives_the_add_command() {
        let words = add_arguments(4, Some("addrs=127.0.0.1%3A7104%2C127.0.0.1:7004&learner=1"));
        assert_eq!(words, ["RAFT.MEMBER", "ADD", "4", "127.0.0.1:7104,127.0.0.1:7004", "LEARNER"]);
        assert_eq!(add_arguments(5, Some("addrs=h:1")).len(), 4);
    }
}
