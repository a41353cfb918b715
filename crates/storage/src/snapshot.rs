//! Snapshot files: streamed into a temporary file, checksummed, fsynced, renamed into place and the
//! directory fsynced, so a snapshot file either exists whole or not at all.

use std::io::{self, Read, Write};

use raft::{Index, SnapshotMeta, Term};

use crate::codec::{self, Decoder, Encoder};
use crate::disk::{Disk, DiskFile};
use crate::error::{Error, Result};

pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"RAFTKVSN";
pub(crate) const SNAPSHOT_VERSION: u32 = 1;
const TRAILER_MAGIC: [u8; 4] = *b"SEND";
const TRAILER_BYTES: u64 = 16;
/// Bytes buffered before one `write_at`; also the chunk size of verification reads.
const CHUNK_BYTES: usize = 256 * 1024;
/// Metadata longer than this is damage (a configuration of a million members would still fit).
const MAX_META_BYTES: u32 = 16 << 20;

pub(crate) fn snapshot_name(index: Index, term: Term) -> String {
    format!("snap-{index:016x}-{term:016x}.snap")
}

pub(crate) fn snapshot_temp_name(index: Index, term: Term) -> String {
    format!("snap-{index:016x}-{term:016x}.tmp")
}

pub(crate) fn snapshot_receive_name(index: Index, term: Term) -> String {
    format!("snap-{index:016x}-{term:016x}.recv.tmp")
}

/// A snapshot file arriving from a leader in chunks (InstallSnapshot): the chunks are the bytes of the
/// leader's whole snapshot file, header and trailer included, written at their offsets into a temporary
/// file. [`crate::Storage::finish_receiving_snapshot`] makes it durable and verifies it.
pub struct ReceivingSnapshot {
    file: Box<dyn DiskFile>,
    temp_name: String,
    index: Index,
    term: Term,
}

impl ReceivingSnapshot {
    pub(crate) fn create(disk: &dyn Disk, index: Index, term: Term) -> Result<ReceivingSnapshot> {
        let temp_name = snapshot_receive_name(index, term);
        if disk.open(&temp_name).is_ok() {
            disk.remove(&temp_name).map_err(|e| Error::io("remove", &temp_name, e))?;
        }
        let file = disk.create(&temp_name).map_err(|e| Error::io("create", &temp_name, e))?;
        Ok(ReceivingSnapshot { file, temp_name, index, term })
    }

    /// The snapshot this file is for.
    pub fn index_and_term(&self) -> (Index, Term) {
        (self.index, self.term)
    }

    /// Writes one chunk at its offset.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.file.write_at(offset, data).map_err(|e| Error::io("write", &self.temp_name, e))
    }

    /// Makes the file durable, then checks its header, trailer and data checksum, and that it holds the
    /// snapshot it was announced as.
    pub(crate) fn finish(mut self, disk: &dyn Disk) -> Result<FinishedSnapshot> {
        self.file.sync_data().map_err(|e| Error::io("fsync", &self.temp_name, e))?;
        let meta = SnapshotReader::open(disk, &self.temp_name)?.verify()?;
        if meta.index != self.index || meta.term != self.term {
            return Err(Error::corrupt(
                &self.temp_name,
                16,
                format!("snapshot {}@{}, found {}@{}", self.index, self.term, meta.index, meta.term),
            ));
        }
        Ok(FinishedSnapshot { temp_name: self.temp_name, meta })
    }

    /// Removes the partial file.
    pub(crate) fn discard(self, disk: &dyn Disk) {
        drop(self.file);
        let _ = disk.remove(&self.temp_name);
    }
}

/// Parses `snap-<index>-<term>.snap` (16 lowercase hex digits each).
pub(crate) fn parse_snapshot_name(name: &str) -> Option<(Index, Term)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (index, term) = rest.split_once('-')?;
    let hex = |s: &str| {
        (s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some((hex(index)?, hex(term)?))
}

/// Encodes a snapshot file — header with the metadata, the data, trailer with the data's length and
/// CRC32C — into any [`Write`]: a file being written ([`SnapshotWriter`]), or a network stream (a backup
/// streamed by a node's admin endpoint). Write the data through it, then call
/// [`SnapshotEncoder::finish`]; the bytes are exactly the snapshot file format of the crate docs.
pub struct SnapshotEncoder<W: Write> {
    inner: W,
    data_bytes: u64,
    crc: u32,
}

impl<W: Write> SnapshotEncoder<W> {
    /// Writes the header (magic, version, metadata and its CRC32C).
    pub fn new(meta: &SnapshotMeta, mut inner: W) -> io::Result<SnapshotEncoder<W>> {
        let mut header = Encoder::default();
        header.bytes(&SNAPSHOT_MAGIC);
        header.u32(SNAPSHOT_VERSION);
        let mut meta_bytes = Encoder::default();
        codec::encode_snapshot_meta(&mut meta_bytes, meta);
        header.u32(u32::try_from(meta_bytes.buf.len()).expect("metadata under 4 GiB"));
        header.bytes(&meta_bytes.buf);
        let crc = crc32c::crc32c(&header.buf);
        header.u32(crc);
        inner.write_all(&header.buf)?;
        Ok(SnapshotEncoder { inner, data_bytes: 0, crc: 0 })
    }

    /// Writes the trailer and flushes; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let mut trailer = Encoder::default();
        trailer.u64(self.data_bytes);
        trailer.u32(self.crc);
        trailer.bytes(&TRAILER_MAGIC);
        self.inner.write_all(&trailer.buf)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Data bytes written so far.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }
}

impl<W: Write> Write for SnapshotEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.crc = crc32c::crc32c_append(self.crc, &data[..n]);
        self.data_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Appends to a [`DiskFile`] in writes of about [`CHUNK_BYTES`] (the disk interface writes at offsets).
struct DiskAppender {
    file: Box<dyn DiskFile>,
    offset: u64,
    buf: Vec<u8>,
}

impl Write for DiskAppender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_at(self.offset, &self.buf)?;
            self.offset += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Streams a snapshot's data into a temporary file. It owns its file and no borrow of the storage, so it can
/// be handed to a background thread; [`crate::Storage::publish_snapshot`] then publishes what
/// [`SnapshotWriter::finish`] returns.
pub struct SnapshotWriter {
    encoder: SnapshotEncoder<DiskAppender>,
    temp_name: String,
    meta: SnapshotMeta,
}

/// A snapshot whose data is durable in its temporary file, not yet published.
#[derive(Debug)]
pub struct FinishedSnapshot {
    pub(crate) temp_name: String,
    pub(crate) meta: SnapshotMeta,
}

impl FinishedSnapshot {
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }
}

impl SnapshotWriter {
    pub(crate) fn create(disk: &dyn Disk, meta: SnapshotMeta) -> Result<SnapshotWriter> {
        let temp_name = snapshot_temp_name(meta.index, meta.term);
        if disk.open(&temp_name).is_ok() {
            disk.remove(&temp_name).map_err(|e| Error::io("remove", &temp_name, e))?;
        }
        let file = disk.create(&temp_name).map_err(|e| Error::io("create", &temp_name, e))?;
        let appender = DiskAppender { file, offset: 0, buf: Vec::new() };
        // The header only fills the appender's buffer: nothing touches the disk yet.
        let encoder = SnapshotEncoder::new(&meta, appender).map_err(|e| Error::io("write", &temp_name, e))?;
        Ok(SnapshotWriter { encoder, temp_name, meta })
    }

    /// Writes the trailer (data length and CRC32C) and fsyncs the temporary file.
    pub fn finish(self) -> Result<FinishedSnapshot> {
        let name = self.temp_name;
        let mut appender = self.encoder.finish().map_err(|e| Error::io("write", &name, e))?;
        appender.file.sync_data().map_err(|e| Error::io("fsync", &name, e))?;
        Ok(FinishedSnapshot { temp_name: name, meta: self.meta })
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.encoder.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// Reads a snapshot's data and checks its CRC32C when the end is reached: the final `read` fails with
/// `InvalidData` if the data is damaged, so a consumer that reads to the end never accepts bad data.
pub struct SnapshotReader {
    file: Box<dyn DiskFile>,
    name: String,
    meta: SnapshotMeta,
    data_start: u64,
    data_bytes: u64,
    position: u64,
    crc: u32,
    expected_crc: u32,
}

impl SnapshotReader {
    /// Opens `name` and checks its header and trailer (not yet the data's checksum).
    pub(crate) fn open(disk: &dyn Disk, name: &str) -> Result<SnapshotReader> {
        let file = disk.open(name).map_err(|e| Error::io("open", name, e))?;
        SnapshotReader::from_file(file, name)
    }

    /// Opens a snapshot file anywhere (read-only), such as a backup made by `raftkv backup`, and checks
    /// its header and trailer; its data's checksum is checked as the last bytes are read (or by
    /// [`SnapshotReader::verify`]). Errors name the file by `path`.
    pub fn open_path(path: &std::path::Path) -> Result<SnapshotReader> {
        let name = path.display().to_string();
        let file = crate::disk::open_read_only(path).map_err(|e| Error::io("open", &name, e))?;
        SnapshotReader::from_file(file, &name)
    }

    fn from_file(file: Box<dyn DiskFile>, name: &str) -> Result<SnapshotReader> {
        let len = file.len_bytes().map_err(|e| Error::io("stat", name, e))?;
        let mut fixed = [0u8; 16];
        if len < 16 + 4 + TRAILER_BYTES {
            return Err(Error::corrupt(
                name,
                0,
                format!("a snapshot header and trailer, found a {len}-byte file"),
            ));
        }
        file.read_exact_at(0, &mut fixed).map_err(|e| Error::io("read", name, e))?;
        if fixed[..8] != SNAPSHOT_MAGIC {
            return Err(Error::ForeignFile {
                file: name.into(),
                why: "named like a snapshot but lacks the magic".into(),
            });
        }
        let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4"));
        let meta_len = u32::from_le_bytes(fixed[12..16].try_into().expect("4"));
        if meta_len > MAX_META_BYTES || 16 + u64::from(meta_len) + 4 + TRAILER_BYTES > len {
            return Err(Error::corrupt(
                name,
                12,
                format!("a metadata length that fits the file, found {meta_len}"),
            ));
        }
        let mut header = vec![0u8; 16 + meta_len as usize + 4];
        file.read_exact_at(0, &mut header).map_err(|e| Error::io("read", name, e))?;
        let crc_at = header.len() - 4;
        let stored = u32::from_le_bytes(header[crc_at..].try_into().expect("4"));
        if crc32c::crc32c(&header[..crc_at]) != stored {
            return Err(Error::corrupt(name, crc_at as u64, "a CRC32C matching the snapshot header"));
        }
        if version != SNAPSHOT_VERSION {
            return Err(Error::UnknownVersion {
                file: name.into(),
                found: version,
                supported: SNAPSHOT_VERSION,
            });
        }
        let mut dec = Decoder::new(&header[16..crc_at]);
        let meta = codec::decode_snapshot_meta(&mut dec)
            .map_err(|e| Error::corrupt(name, 16 + e.pos as u64, e.what))?;
        if dec.remaining() != 0 {
            return Err(Error::corrupt(name, 16 + dec.pos() as u64, "end of snapshot metadata"));
        }
        let mut trailer = [0u8; TRAILER_BYTES as usize];
        let trailer_at = len - TRAILER_BYTES;
        file.read_exact_at(trailer_at, &mut trailer).map_err(|e| Error::io("read", name, e))?;
        let data_start = header.len() as u64;
        let data_bytes = u64::from_le_bytes(trailer[..8].try_into().expect("8"));
        if trailer[12..] != TRAILER_MAGIC || data_start.checked_add(data_bytes) != Some(trailer_at) {
            return Err(Error::corrupt(
                name,
                trailer_at,
                format!("a trailer for {} data bytes, found {:02x?}", trailer_at - data_start, trailer),
            ));
        }
        let expected_crc = u32::from_le_bytes(trailer[8..12].try_into().expect("4"));
        Ok(SnapshotReader {
            file,
            name: name.into(),
            meta,
            data_start,
            data_bytes,
            position: 0,
            crc: 0,
            expected_crc,
        })
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The size of the snapshot's data (what `read` yields in total).
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// The CRC32C of the data, as the trailer records it.
    pub fn data_crc32c(&self) -> u32 {
        self.expected_crc
    }

    /// Reads the data to the end, discarding it, to check the checksum.
    pub fn verify(mut self) -> Result<SnapshotMeta> {
        let mut chunk = vec![0u8; CHUNK_BYTES];
        loop {
            match self.read(&mut chunk) {
                Ok(0) => return Ok(self.meta),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(Error::corrupt(
                        &self.name,
                        self.data_start,
                        format!(
                            "snapshot data with CRC32C {:#010x}, found {:#010x}",
                            self.expected_crc, self.crc
                        ),
                    ))
                }
                Err(e) => return Err(Error::io("read", &self.name, e)),
            }
        }
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.data_bytes - self.position;
        if remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = self.file.read_at(self.data_start + self.position, &mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} ends early", self.name)));
        }
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.position += n as u64;
        if self.position == self.data_bytes && self.crc != self.expected_crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: snapshot checksum mismatch", self.name),
            ));
        }
        Ok(n)
    }
}
