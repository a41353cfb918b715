//! Messages cross the network as postcard (the transport's choice): every variant must round-trip.

mod harness;

use bytes::Bytes;
use harness::entry;
use raft::{
    AppendRequest, AppendResponse, Configuration, Heartbeat, HeartbeatResponse, InstallSnapshot,
    InstallSnapshotResponse, Message, MessageBody, SnapshotMeta, VoteRequest, VoteResponse,
};

#[test]
fn every_message_round_trips_through_postcard() {
    let bodies = [
        MessageBody::VoteRequest(VoteRequest {
            pre_vote: true,
            last_log_index: 7,
            last_log_term: 3,
            leadership_transfer: false,
        }),
        MessageBody::VoteResponse(VoteResponse { pre_vote: false, granted: true }),
        MessageBody::AppendRequest(AppendRequest {
            prev_log_index: 6,
            prev_log_term: 2,
            entries: vec![entry(7, 3), entry(8, 3)],
            leader_commit: 5,
        }),
        MessageBody::AppendResponse(AppendResponse::Accepted { match_index: 8 }),
        MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected_prev_index: 10,
            hint_index: 4,
            hint_term: 2,
            last_index: 4,
        }),
        MessageBody::Heartbeat(Heartbeat { commit: 5, read_round: 9 }),
        MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: 9 }),
        MessageBody::InstallSnapshot(InstallSnapshot {
            meta: SnapshotMeta { index: 9, term: 2, configuration: Configuration::with_voters([1, 2, 3]) },
            offset: 4096,
            data: Bytes::from_static(b"chunk of state"),
            done: true,
        }),
        MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::NextOffset {
            snapshot_index: 9,
            snapshot_term: 2,
            next_offset: 4110,
        }),
        MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::Installed {
            snapshot_index: 9,
            snapshot_term: 2,
        }),
        MessageBody::InstallSnapshotResponse(InstallSnapshotResponse::Stale { commit: 12 }),
    ];
    for body in bodies {
        let message = Message { from: 1, to: 2, term: 3, body };
        let bytes = postcard::to_allocvec(&message).expect("serializes");
        let decoded: Message = postcard::from_bytes(&bytes).expect("deserializes");
        assert_eq!(decoded, message, "{message}");
    }
}
