//! What the fuzz targets share: how an input is cut into chunks, how checksums are repaired so that the
//! fuzzer reaches the decoders behind them, and a freshly bootstrapped simulated data directory.
//!
//! Checksums are the first thing every on-disk and on-wire decoder checks, and a fuzzer almost never
//! guesses a CRC32C. So the WAL and snapshot targets take a flag that recomputes every checksum the
//! format has before decoding: with it the fuzzer explores the record and metadata decoders, without it
//! the checksum checks themselves (and what happens when they fail).

use std::sync::OnceLock;

use raft::Configuration;
use storage::{SimDisk, Storage, StorageOptions};

/// The cluster and node every simulated data directory belongs to.
pub const CLUSTER_ID: u64 = 42;
pub const NODE_ID: u64 = 1;

/// The WAL segment header's magic: the WAL target starts a new segment file at each occurrence.
pub const WAL_MAGIC: &[u8; 8] = b"RAFTKVWL";
const WAL_HEADER_BYTES: usize = 64;
const WAL_HEADER_CRC_OFFSET: usize = 56;
/// The WAL targets make at most this many segments, so that one input stays cheap.
pub const MAX_SEGMENTS: usize = 8;

/// A small deterministic generator (xorshift64*), so that how an input is chunked is part of the input.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Xorshift must not start at zero.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `1..=max`.
    pub fn between_1_and(&mut self, max: usize) -> usize {
        1 + (self.next_u64() % max.max(1) as u64) as usize
    }
}

/// Cuts `data` into pieces of 1 to `max_piece` bytes, the sizes drawn from `seed`: how bytes might come
/// off a socket.
pub fn chunks(data: &[u8], seed: u64, max_piece: usize) -> Vec<&[u8]> {
    let mut rng = Rng::new(seed);
    let mut pieces = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (piece, after) = rest.split_at(rng.between_1_and(max_piece).min(rest.len()));
        pieces.push(piece);
        rest = after;
    }
    pieces
}

/// Splits a WAL target's input into segment files: a new segment starts at every occurrence of the
/// segment magic after the first byte, so that concatenated real segments are a valid input.
pub fn split_segments(data: &[u8]) -> Vec<Vec<u8>> {
    let mut starts = vec![0];
    let mut at = 1;
    while at + WAL_MAGIC.len() <= data.len() && starts.len() < MAX_SEGMENTS {
        if &data[at..at + WAL_MAGIC.len()] == WAL_MAGIC {
            starts.push(at);
            at += WAL_MAGIC.len();
        } else {
            at += 1;
        }
    }
    starts.push(data.len());
    starts.windows(2).map(|pair| data[pair[0]..pair[1]].to_vec()).collect()
}

/// Recomputes a segment's header CRC and every record CRC that its length fields reach, so that the
/// decoder behind the checksums sees the bytes (see the WAL format in the storage crate's docs).
pub fn fix_segment_checksums(segment: &mut [u8]) {
    if segment.len() < WAL_HEADER_CRC_OFFSET + 4 {
        return;
    }
    let crc = crc32c::crc32c(&segment[..WAL_HEADER_CRC_OFFSET]);
    segment[WAL_HEADER_CRC_OFFSET..WAL_HEADER_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    let mut at = WAL_HEADER_BYTES;
    while at + 8 <= segment.len() {
        let length = u32::from_le_bytes(segment[at..at + 4].try_into().expect("4 bytes")) as usize;
        let Some(end) = (at + 8).checked_add(length).filter(|&end| end <= segment.len()) else { return };
        let crc = crc32c::crc32c(&segment[at + 8..end]);
        segment[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// The name of WAL segment `seq`, as the storage crate spells it.
pub fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

const SNAPSHOT_TRAILER_BYTES: usize = 16;

/// The file name a snapshot file must have: its index and term are the first two fields of its metadata
/// (bytes 16..32), and the storage crate refuses a snapshot whose name and metadata disagree.
pub fn snapshot_file_name(file: &[u8]) -> String {
    let field = |at: usize| {
        file.get(at..at + 8).map_or(0, |bytes| u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    };
    format!("snap-{:016x}-{:016x}.snap", field(16), field(24))
}

/// Recomputes a snapshot file's header CRC (after `meta_len` bytes of metadata) and its trailer (data
/// length and data CRC), when the declared metadata fits the file.
pub fn fix_snapshot_checksums(file: &mut [u8]) {
    if file.len() < 16 + 4 + SNAPSHOT_TRAILER_BYTES {
        return;
    }
    let meta_len = u32::from_le_bytes(file[12..16].try_into().expect("4 bytes")) as usize;
    let crc_at = 16 + meta_len;
    let trailer_at = file.len() - SNAPSHOT_TRAILER_BYTES;
    if crc_at + 4 > trailer_at {
        return;
    }
    let crc = crc32c::crc32c(&file[..crc_at]);
    file[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    let data = crc_at + 4..trailer_at;
    let data_crc = crc32c::crc32c(&file[data.clone()]);
    file[trailer_at..trailer_at + 8].copy_from_slice(&(data.len() as u64).to_le_bytes());
    file[trailer_at + 8..trailer_at + 12].copy_from_slice(&data_crc.to_le_bytes());
}

/// A simulated data directory just after bootstrap (node 1 of a 3-voter cluster): `IDENTITY`, the
/// index-0 snapshot and a header-only first segment. Built once, copied per input.
pub fn bootstrapped_disk() -> SimDisk {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        let disk = SimDisk::new(1);
        let (mut storage, _) = Storage::open(disk.clone(), options()).expect("an empty disk opens");
        storage.bootstrap(Configuration::with_voters([1, 2, 3])).expect("bootstrap on a healthy disk");
        drop(storage);
        disk.file_names()
            .into_iter()
            .filter(|name| name != storage::LOCK_FILE)
            .map(|name| {
                let contents = disk.file_contents(&name).expect("listed");
                (name, contents)
            })
            .collect()
    });
    let disk = SimDisk::new(1);
    for (name, contents) in files {
        disk.put_file(name, contents);
    }
    disk
}

/// The options every target opens its simulated directory with.
pub fn options() -> StorageOptions {
    StorageOptions::new(CLUSTER_ID, NODE_ID)
}
