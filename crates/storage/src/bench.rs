//! The disk benchmark behind `raftkv bench-disk`: the raw `fdatasync` rate of a directory's disk, and WAL
//! appends per second at batch sizes 1, 16 and 256 with 100-byte entries, all measured in one run in one
//! directory so the figures are comparable.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::{Configuration, Entry, EntryPayload};

use crate::disk::{Disk, FileDisk};
use crate::error::{Error, Result};
use crate::storage::{Storage, StorageOptions};

/// The batch sizes measured.
pub const BENCH_BATCH_SIZES: [usize; 3] = [1, 16, 256];
/// Payload bytes per entry.
pub const BENCH_ENTRY_BYTES: usize = 100;
const RAW_WRITE_BYTES: usize = 4096;

/// One line of the result table.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub name: String,
    /// Entries per batch; `None` for the raw fsync measurement.
    pub batch_size: Option<usize>,
    /// `fdatasync` calls (raw) or WAL batches per second.
    pub batches_per_second: f64,
    pub entries_per_second: f64,
}

/// The whole report: where it ran, and the rows.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub dir: PathBuf,
    pub seconds_per_measurement: f64,
    pub rows: Vec<BenchRow>,
}

/// Runs every measurement for about `seconds_per_measurement` each, in a fresh subdirectory of `dir` that
/// is removed afterwards.
pub fn bench_disk(dir: &Path, seconds_per_measurement: f64) -> Result<BenchReport> {
    let duration = Duration::from_secs_f64(seconds_per_measurement.max(0.1));
    let root = dir.join(format!("raftkv-bench-disk-{}", std::process::id()));
    let result = run_all(&root, duration);
    let _ = std::fs::remove_dir_all(&root);
    Ok(BenchReport { dir: root, seconds_per_measurement, rows: result? })
}

fn run_all(root: &Path, duration: Duration) -> Result<Vec<BenchRow>> {
    let mut rows = vec![raw_fsync(root, duration)?];
    for batch_size in BENCH_BATCH_SIZES {
        rows.push(wal_appends(root, batch_size, duration)?);
    }
    Ok(rows)
}

fn file_disk(path: &Path) -> Result<FileDisk> {
    FileDisk::new(path).map_err(|e| Error::io("create directory", path.display().to_string(), e))
}

fn raw_fsync(root: &Path, duration: Duration) -> Result<BenchRow> {
    let disk = file_disk(&root.join("raw"))?;
    let name = "raw-fsync.bin";
    let mut file = disk.create(name).map_err(|e| Error::io("create", name, e))?;
    let block = vec![0xabu8; RAW_WRITE_BYTES];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < duration {
        file.write_at(syncs * RAW_WRITE_BYTES as u64, &block).map_err(|e| Error::io("write", name, e))?;
        file.sync_data().map_err(|e| Error::io("fsync", name, e))?;
        syncs += 1;
    }
    let rate = syncs as f64 / started.elapsed().as_secs_f64();
    Ok(BenchRow {
        name: "raw 4 KiB append + fdatasync".into(),
        batch_size: None,
        batches_per_second: rate,
        entries_per_second: rate,
    })
}

fn wal_appends(root: &Path, batch_size: usize, duration: Duration) -> Result<BenchRow> {
    let disk = file_disk(&root.join(format!("wal-batch-{batch_size}")))?;
    let (mut storage, _) = Storage::open(disk, StorageOptions::new(1, 1))?;
    storage.bootstrap(Configuration::with_voters([1]))?;
    let payload = Bytes::from(vec![0x42u8; BENCH_ENTRY_BYTES]);
    let started = Instant::now();
    let mut next_index = 1u64;
    let mut batches = 0u64;
    let mut batch = Vec::with_capacity(batch_size);
    while started.elapsed() < duration {
        batch.clear();
        for _ in 0..batch_size {
            batch.push(Entry { index: next_index, term: 1, payload: EntryPayload::Command(payload.clone()) });
            next_index += 1;
        }
        storage.write(None, &batch)?;
        batches += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(BenchRow {
        name: format!("WAL append, batch {batch_size}"),
        batch_size: Some(batch_size),
        batches_per_second: batches as f64 / seconds,
        entries_per_second: (batches * batch_size as u64) as f64 / seconds,
    })
}

impl BenchReport {
    fn raw_rate(&self) -> f64 {
        self.rows.iter().find(|r| r.batch_size.is_none()).map_or(0.0, |r| r.batches_per_second)
    }

    fn entries_rate(&self, batch_size: usize) -> f64 {
        self.rows.iter().find(|r| r.batch_size == Some(batch_size)).map_or(0.0, |r| r.entries_per_second)
    }

    /// Batch-1 WAL batches/s as a fraction of the raw fsync rate (goal: at least 0.8).
    pub fn batch1_vs_raw(&self) -> f64 {
        self.entries_rate(1) / self.raw_rate()
    }

    /// Batch-256 entries/s over batch-1 entries/s (goal: at least 100).
    pub fn batch256_speedup(&self) -> f64 {
        self.entries_rate(256) / self.entries_rate(1)
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "raftkv bench-disk in {} ({} s per measurement)",
            self.dir.display(),
            self.seconds_per_measurement
        )?;
        writeln!(f, "{:<32} {:>12} {:>14} {:>12}", "measurement", "batches/s", "entries/s", "vs raw fsync")?;
        let raw = self.raw_rate();
        for row in &self.rows {
            let entries = match row.batch_size {
                None => "-".to_string(),
                Some(_) => format!("{:.0}", row.entries_per_second),
            };
            let relative = 100.0 * row.batches_per_second / raw;
            writeln!(
                f,
                "{:<32} {:>12.0} {:>14} {:>11.1}%",
                row.name, row.batches_per_second, entries, relative
            )?;
        }
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        writeln!(
            f,
            "goal batch 1 >= 80% of raw fsync rate: {:.1}% ({})",
            100.0 * self.batch1_vs_raw(),
            verdict(self.batch1_vs_raw() >= 0.8)
        )?;
        write!(
            f,
            "goal batch 256 >= 100x batch-1 entries/s: {:.0}x ({})",
            self.batch256_speedup(),
            verdict(self.batch256_speedup() >= 100.0)
        )
    }
}
