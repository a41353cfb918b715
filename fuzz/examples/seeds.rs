//! Writes the checked-in seed corpora, `corpus/<target>/seed-*`, from the real encoders: RESP pipelines,
//! encoded peer frames and messages, WAL segments and snapshot files written by the storage crate on
//! its simulated disk, a state-machine snapshot, and small histories.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (the history seeds need
//! `/work/shared/testdata/porcupine-kv`, or the directory given as the first argument). Deterministic:
//! running it again rewrites the same bytes.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kv::{ClientId, KvConfig, KvStateMachine, Request, RequestBody, SessionRef};
use node::PeerMessage;
use raft::{
    AppendRequest, AppendResponse, Configuration, Entry, EntryPayload, HardState, Heartbeat,
    HeartbeatResponse, InstallSnapshot, InstallSnapshotResponse, Message, MessageBody, SnapshotMeta,
    VoteRequest, VoteResponse,
};
use raftkv_fuzz::{bootstrapped_disk, options, segment_name};
use server::frame::{encode_frame, encode_hello};
use storage::Storage;

fn main() {
    let porcupine = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/testdata/porcupine-kv"));
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    resp_seeds(&corpus.join("resp_parser"));
    peer_seeds(&corpus.join("peer_frame"));
    wal_seeds(&corpus.join("wal_recovery"));
    snapshot_seeds(&corpus.join("snapshot_file"), &corpus.join("kv_restore"));
    history_seeds(&corpus.join("history_reader"), &porcupine);
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create the corpus directory");
    let path = dir.join(format!("seed-{name}"));
    fs::write(&path, bytes).expect("write a seed");
    println!("{:6} bytes  {}", bytes.len(), path.display());
}

/// A flag or mode byte, then the bytes.
fn flagged(flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(bytes);
    out
}

fn command(words: &[&str]) -> Vec<Bytes> {
    words.iter().map(|word| Bytes::copy_from_slice(word.as_bytes())).collect()
}

fn resp_pipeline(commands: &[&[&str]]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for words in commands {
        resp::encode_command(&command(words), &mut out);
    }
    out.to_vec()
}

fn resp_seeds(dir: &Path) {
    let data = resp_pipeline(&[
        &["PING"],
        &["SET", "k", "v", "EX", "10"],
        &["GET", "k"],
        &["MSET", "a", "1", "b", "2"],
        &["INCRBY", "a", "5"],
        &["APPEND", "b", "xyz"],
        &["EXPIRE", "b", "100", "NX"],
        &["SCAN", "0", "MATCH", "*", "COUNT", "10"],
        &["DEL", "a", "b", "k"],
    ]);
    // Chunked in pieces of 1 to 4 bytes (flag bits 1..8 = 3).
    write(dir, "data-commands", &flagged(3 << 1, &data));
    let connection = resp_pipeline(&[
        &["HELLO", "3", "AUTH", "default", "pw", "SETNAME", "fuzz"],
        &["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"],
        &["CLIENT", "INFO"],
        &["SELECT", "0"],
        &["READONLY"],
        &["GET", "k"],
        &["READWRITE"],
        &["CONFIG", "GET", "maxmemory"],
        &["COMMAND", "DOCS", "get"],
        &["INFO", "raft"],
        &["RESET"],
        &["QUIT"],
    ]);
    write(dir, "connection-commands", &flagged(0, &connection));
    let multi = resp_pipeline(&[
        &["MULTI"],
        &["SET", "k", "1"],
        &["INCR", "k"],
        &["GET", "k"],
        &["EXEC"],
        &["MULTI"],
        &["NOSUCH"],
        &["EXEC"],
        &["DISCARD"],
    ]);
    write(dir, "multi-exec", &flagged(1 << 1, &multi));
    let inline =
        b"PING\r\nset a \"b c\\x41\\n\"\r\nget 'a'\r\n\r\n  \r\necho \"it's\" 'say \\'hi\\''\nDEL a\n";
    write(dir, "inline", &flagged(7 << 1, inline));
    // Inline and RESP mixed, an empty array, a null array, then a request cut short.
    let mut mixed = b"PING\r\n*0\r\n*-1\r\n".to_vec();
    mixed.extend_from_slice(&resp_pipeline(&[&["ECHO", "hello"]]));
    mixed.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$5\r\nab");
    write(dir, "mixed-and-incomplete", &flagged(2 << 1, &mixed));
    // The tiny limits (flag bit 0): a bulk over 64 bytes.
    let long = "x".repeat(80);
    write(dir, "tiny-limits", &flagged(1, &resp_pipeline(&[&["SET", "k", "v"], &["SET", "k", &long]])));
    write(dir, "bad-bulk-length", &flagged(0, b"*1\r\n$-5\r\nPING\r\n"));
}

fn peer_messages() -> Vec<PeerMessage> {
    let raft = |term, body| PeerMessage::Raft(Message { from: 2, to: 1, term, body });
    let set = kv::parse(&command(&["SET", "k", "v"])).expect("SET parses");
    let client_id = ClientId { node_id: 2, incarnation: 1, counter: 7 };
    let entry_data = Request::session_command(
        1_700_000_000_000,
        SessionRef { client_id, sequence: 3, lowest_unacked: 2 },
        set.clone(),
    )
    .encode();
    vec![
        raft(
            3,
            MessageBody::VoteRequest(VoteRequest {
                pre_vote: true,
                last_log_index: 9,
                last_log_term: 2,
                leadership_transfer: false,
            }),
        ),
        raft(3, MessageBody::VoteResponse(VoteResponse { pre_vote: false, granted: true })),
        raft(
            3,
            MessageBody::AppendRequest(AppendRequest {
                prev_log_index: 9,
                prev_log_term: 2,
                entries: vec![
                    Entry { index: 10, term: 3, payload: EntryPayload::Noop },
                    Entry { index: 11, term: 3, payload: EntryPayload::Command(entry_data) },
                    Entry {
                        index: 12,
                        term: 3,
                        payload: EntryPayload::Config(Configuration::with_voters([1, 2, 3, 4])),
                    },
                ],
                leader_commit: 9,
            }),
        ),
        raft(3, MessageBody::AppendResponse(AppendResponse::Accepted { match_index: 12 })),
        raft(
            3,
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected_prev_index: 9,
                hint_index: 7,
                hint_term: 2,
                last_index: 8,
            }),
        ),
        raft(3, MessageBody::Heartbeat(Heartbeat { commit: 12, read_round: 5 })),
        raft(3, MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: 5 })),
        PeerMessage::Forward {
            session: Some(SessionRef { client_id, sequence: 4, lowest_unacked: 4 }),
            body: RequestBody::Command(set),
        },
        PeerMessage::Forward { session: None, body: RequestBody::RegisterSession { client_id } },
        PeerMessage::ForwardRejected { sequence: Some(4), leader_hint: Some(3), overloaded: true },
        PeerMessage::ReadIndexRequest { ctx: 42 },
        PeerMessage::ReadIndexResponse { ctx: 42, index: Some(12), leader_hint: None },
    ]
    .into_iter()
    .chain(install_snapshot_messages())
    .collect()
}

/// InstallSnapshot (§7) in both directions: a snapshot's bytes in two chunks, and every answer.
fn install_snapshot_messages() -> Vec<PeerMessage> {
    let raft = |body| PeerMessage::Raft(Message { from: 2, to: 1, term: 4, body });
    let data = Bytes::from(state_machine().snapshot().to_bytes());
    let half = data.len() / 2;
    let meta = SnapshotMeta { index: 12, term: 3, configuration: Configuration::with_voters([1, 2, 3]) };
    let chunk = |offset: usize, data: Bytes, done| {
        raft(MessageBody::InstallSnapshot(InstallSnapshot {
            meta: meta.clone(),
            offset: offset as u64,
            data,
            done,
        }))
    };
    let answer = |response| raft(MessageBody::InstallSnapshotResponse(response));
    vec![
        chunk(0, data.slice(..half), false),
        chunk(half, data.slice(half..), true),
        answer(InstallSnapshotResponse::NextOffset {
            snapshot_index: 12,
            snapshot_term: 3,
            next_offset: half as u64,
        }),
        answer(InstallSnapshotResponse::Installed { snapshot_index: 12, snapshot_term: 3 }),
        answer(InstallSnapshotResponse::Stale { commit: 14 }),
    ]
}

fn peer_seeds(dir: &Path) {
    let messages = peer_messages();
    // Mode odd: one payload each.
    for (at, message) in messages.iter().enumerate() {
        let payload = postcard::to_allocvec(message).expect("serializes");
        write(dir, &format!("payload-{at:02}-{}", message.kind()), &flagged(1, &payload));
    }
    // Mode even: a whole connection, the hello then every message, cut into pieces of up to 8 bytes.
    let mut stream = encode_hello(raftkv_fuzz::CLUSTER_ID, 2).to_vec();
    let mut frames = BytesMut::new();
    for message in &messages {
        encode_frame(message, &mut frames);
    }
    stream.extend_from_slice(&frames);
    write(dir, "connection", &flagged(14, &stream));
    // A frame whose length is over the limit.
    let mut too_long = encode_hello(raftkv_fuzz::CLUSTER_ID, 2).to_vec();
    too_long.extend_from_slice(&u32::MAX.to_le_bytes());
    too_long.extend_from_slice(&[0; 4]);
    write(dir, "too-long", &flagged(0, &too_long));
}

fn entry(index: u64, term: u64, payload: EntryPayload) -> Entry {
    Entry { index, term, payload }
}

fn kv_entry(words: &[&str]) -> EntryPayload {
    let command = kv::parse(&command(words)).expect("a valid command");
    EntryPayload::Command(Request::command(1_700_000_000_000, command).encode())
}

/// A directory with three segments: batches of entries of every payload kind, a truncation (a new
/// leader overwriting a suffix), hard states, and rolls.
fn written_disk() -> storage::SimDisk {
    let disk = bootstrapped_disk();
    let (mut storage, _) = Storage::open(disk.clone(), options()).expect("bootstrapped directory opens");
    let hard_state = |term, commit| HardState { term, vote: Some(1), commit };
    let batches: Vec<(HardState, Vec<Entry>)> = vec![
        (hard_state(1, 0), vec![entry(1, 1, EntryPayload::Noop), entry(2, 1, kv_entry(&["SET", "k", "v"]))]),
        (hard_state(1, 2), vec![entry(3, 1, kv_entry(&["INCR", "n"]))]),
        (hard_state(2, 2), vec![entry(3, 2, EntryPayload::Noop), entry(4, 2, kv_entry(&["DEL", "k"]))]),
        (hard_state(2, 4), vec![entry(5, 2, EntryPayload::Config(Configuration::with_voters([1, 2, 3, 4])))]),
        (hard_state(3, 5), vec![entry(6, 3, kv_entry(&["APPEND", "k", "tail"]))]),
    ];
    for (at, (hard_state, entries)) in batches.into_iter().enumerate() {
        if at == 2 || at == 4 {
            storage.roll_segment();
        }
        storage.write(Some(hard_state), &entries).expect("a healthy simulated disk");
    }
    disk
}

fn wal_seeds(dir: &Path) {
    let disk = written_disk();
    let segments: Vec<Vec<u8>> =
        (1..).map(segment_name).map_while(|name| disk.file_contents(&name)).collect();
    let all = segments.concat();
    write(dir, "three-segments", &flagged(0, &all));
    write(dir, "three-segments-fix-crc", &flagged(1, &all));
    write(dir, "first-segment", &flagged(0, &segments[0]));
    // A torn last record: the newest segment cut in its middle.
    let mut torn = all.clone();
    torn.truncate(all.len() - 5);
    write(dir, "torn-tail", &flagged(0, &torn));
    // Header only, as bootstrap leaves it, without IDENTITY: the interrupted-bootstrap row.
    write(dir, "interrupted-bootstrap", &flagged(2, &segments[0][..64]));
}

fn state_machine() -> KvStateMachine {
    let mut machine = KvStateMachine::new(KvConfig::default());
    let client_id = ClientId { node_id: 1, incarnation: 1, counter: 1 };
    let time_ms = 1_700_000_000_000;
    machine.apply(
        1,
        &Request { session: None, leader_time_ms: time_ms, body: RequestBody::RegisterSession { client_id } }
            .encode(),
    );
    let commands: &[&[&str]] = &[
        &["SET", "k", "v", "PX", "5000"],
        &["SET", "n", "1"],
        &["INCR", "n"],
        &["MSET", "a", "x", "b", "y"],
        &["DEL", "b"],
    ];
    for (at, words) in commands.iter().enumerate() {
        let command = kv::parse(&command(words)).expect("a valid command");
        let sequence = at as u64 + 1;
        let session = SessionRef { client_id, sequence, lowest_unacked: sequence.saturating_sub(1).max(1) };
        machine
            .apply(at as u64 + 2, &Request::session_command(time_ms + at as u64, session, command).encode());
    }
    machine
}

fn snapshot_seeds(file_dir: &Path, kv_dir: &Path) {
    let machine = state_machine();
    let data = machine.snapshot().to_bytes();
    write(kv_dir, "state-machine", &data);
    write(kv_dir, "empty-state-machine", &KvStateMachine::new(KvConfig::default()).snapshot().to_bytes());

    let disk = written_disk();
    let (mut storage, _) = Storage::open(disk.clone(), options()).expect("written directory opens");
    let meta = SnapshotMeta { index: 5, term: 2, configuration: Configuration::with_voters([1, 2, 3, 4]) };
    let mut writer = storage.begin_snapshot(meta).expect("snapshot begins");
    std::io::Write::write_all(&mut writer, &data).expect("snapshot data");
    storage.publish_snapshot(writer.finish().expect("snapshot finishes")).expect("snapshot publishes");
    let file = disk.file_contents("snap-0000000000000005-0000000000000002.snap").expect("published");
    write(file_dir, "index-5", &flagged(0, &file));
    write(file_dir, "index-5-fix-crc", &flagged(1, &file));
    let bootstrap =
        disk.file_contents("snap-0000000000000000-0000000000000000.snap").expect("bootstrap's snapshot");
    write(file_dir, "bootstrap", &flagged(0, &bootstrap));
    let mut damaged = file.clone();
    damaged[file.len() / 2] ^= 0x10;
    write(file_dir, "damaged-with-fallback", &flagged(2, &damaged));
}

/// The first `lines` lines of a Porcupine history.
fn head(path: &Path, lines: usize) -> Vec<u8> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: String = text.lines().take(lines).collect::<Vec<_>>().join("\n");
    out.push('\n');
    out.into_bytes()
}

fn history_seeds(dir: &Path, porcupine: &Path) {
    for (name, lines) in [("c01-ok", 40), ("c01-bad", 40), ("c10-ok", 40), ("c10-bad", 60)] {
        write(dir, &format!("porcupine-{name}"), &head(&porcupine.join(format!("{name}.edn")), lines));
    }
    let handwritten = br#"; every call, outcome and value shape the reader knows
{:process 0, :type :invoke, :f :write, :key "a", :value "1"}
{:process 1, :type :invoke, :f :read, :key "a", :value nil}
{:process 0, :type :ok, :f :write, :key "a", :value "1"}
{:process 1, :type :ok, :f :read, :key "a", :value "1"}
{:process :nemesis, :type :info, :f :kill, :value #{"n1" "n2"}}
{:process 2, :type :invoke, :f :cas, :key 7, :value ["1" "2"]}
{:process 2, :type :fail, :f :cas, :key 7, :value ["1" "2"]}
{:process 3, :type :invoke, :f :incr, :key "b", :value nil}
{:process 3, :type :info, :f :incr, :key "b", :value nil}
{:process 4, :type :invoke, :f :append, :key "a", :value "x"}
{:process 4, :type :ok, :f :append, :key "a", :value "x"}
{:process 5, :type :invoke, :f :get, :key "a", :value nil}
{:process 5, :type :ok, :f :get, :key "a", :value "1x"}
{:process 6, :type :invoke, :f :put, :key "c", :value 12, :time 123456789}
"#;
    write(dir, "handwritten", handwritten);
}
