//! `GET /cluster`: every member's `/status` in one JSON document, gathered by the node that was asked.
//!
//! The live view polls this every half second. The browser talks only to the node that served the page
//! (no cross-origin calls); this node asks each other member's admin endpoint concurrently, each with
//! [`MEMBER_TIMEOUT`], so one dead or stuck member costs a poll at most that long and shows as down
//! rather than stalling the page. This node's own status comes from its node loop directly.
//!
//! ```json
//! {"served_by": 1, "nodes": [
//!   {"id": 1, "admin_addr": "127.0.0.1:8001", "up": true, "status": { ...as /status... }},
//!   {"id": 2, "admin_addr": "127.0.0.1:8002", "up": false, "error": "connection refused"}]}
//! ```

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use raft::NodeId;

/// How long one member may take to answer its `/status` (connect, request and whole response).
pub const MEMBER_TIMEOUT: Duration = Duration::from_millis(300);

/// A `/status` document is a few kilobytes; anything far larger is not one.
const MAX_STATUS_BYTES: u64 = 1 << 20;

#[derive(Serialize, Debug)]
pub struct ClusterView {
    pub served_by: NodeId,
    /// Sorted by id: every configured member and every member of the configuration in force.
    pub nodes: Vec<MemberState>,
}

#[derive(Serialize, Debug)]
pub struct MemberState {
    pub id: NodeId,
    pub admin_addr: Option<String>,
    pub up: bool,
    /// The member's `/status` document when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// Why the member counts as down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MemberState {
    pub fn up(id: NodeId, admin_addr: Option<String>, status: Value) -> Self {
        MemberState { id, admin_addr, up: true, status: Some(status), error: None }
    }

    pub fn down(id: NodeId, admin_addr: Option<String>, error: String) -> Self {
        MemberState { id, admin_addr, up: false, status: None, error: Some(error) }
    }
}

/// Asks member `id` at `admin_addr` for its `/status`, within [`MEMBER_TIMEOUT`].
pub async fn fetch_member(id: NodeId, admin_addr: Option<String>) -> MemberState {
    let Some(addr) = admin_addr.clone() else {
        return MemberState::down(id, None, "no admin address configured for this member".into());
    };
    match tokio::time::timeout(MEMBER_TIMEOUT, get_status(&addr)).await {
        Ok(Ok(status)) => MemberState::up(id, admin_addr, status),
        Ok(Err(error)) => MemberState::down(id, admin_addr, error),
        Err(_) => MemberState::down(id, admin_addr, format!("no answer within {MEMBER_TIMEOUT:?}")),
    }
}

/// `GET /status` over HTTP/1.0 (the server closes the connection after the response, so the body is
/// everything after the headers), parsed as JSON.
async fn get_status(addr: &str) -> Result<Value, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!("GET /status HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    stream.take(MAX_STATUS_BYTES).read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
    parse_status_response(&bytes)
}

/// The JSON body of a `200` response, or why there is none.
fn parse_status_response(bytes: &[u8]) -> Result<Value, String> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("an incomplete HTTP response")?;
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        let reason = body.lines().next().unwrap_or("").trim();
        return Err(format!("/status answered {code}: {reason}"));
    }
    serde_json::from_str(body).map_err(|e| format!("/status is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_200_response_yields_its_json_body() {
        let response =
            b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"id\":2,\"role\":\"leader\"}\n";
        let status = parse_status_response(response).unwrap();
        assert_eq!(status["role"], "leader");
    }

    #[test]
    fn other_answers_are_errors_that_say_what_came_back() {
        let unavailable = b"HTTP/1.0 503 Service Unavailable\r\n\r\nthe node is shutting down\n";
        assert_eq!(
            parse_status_response(unavailable).unwrap_err(),
            "/status answered 503: the node is shutting down"
        );
        assert!(parse_status_response(b"HTTP/1.0 200 OK\r\n").unwrap_err().contains("incomplete"));
        assert!(parse_status_response(b"HTTP/1.0 200 OK\r\n\r\n{oops").unwrap_err().contains("not JSON"));
    }

    #[tokio::test]
    async fn a_member_nobody_listens_for_is_down_quickly() {
        // Bind and drop: nothing listens on that port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let state = fetch_member(3, Some(format!("127.0.0.1:{port}"))).await;
        assert!(!state.up);
        assert!(state.error.is_some());
        assert!(started.elapsed() < MEMBER_TIMEOUT + Duration::from_millis(200));
        let unconfigured = fetch_member(4, None).await;
        assert!(unconfigured.error.unwrap().contains("no admin address"));
    }
}
