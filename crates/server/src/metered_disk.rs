//! A [`Disk`] that times every `fdatasync` of its files into the fsync histogram, around the real
//! [`FileDisk`]. Timing at the disk (rather than around a whole storage write) measures what the disk
//! costs, apart from encoding and the `write` call.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use storage::{Disk, DiskFile, DiskLock, FileDisk};

use crate::metrics::{seconds, Metrics};

pub struct MeteredDisk {
    inner: FileDisk,
    metrics: Arc<Metrics>,
}

impl MeteredDisk {
    pub fn new(inner: FileDisk, metrics: Arc<Metrics>) -> MeteredDisk {
        MeteredDisk { inner, metrics }
    }

    fn wrap(&self, file: Box<dyn DiskFile>) -> Box<dyn DiskFile> {
        Box::new(MeteredFile { inner: file, metrics: self.metrics.clone() })
    }
}

impl Disk for MeteredDisk {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn create(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        self.inner.create(name).map(|file| self.wrap(file))
    }
    fn open(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        self.inner.open(name).map(|file| self.wrap(file))
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn lock(&self, name: &str) -> io::Result<DiskLock> {
        self.inner.lock(name)
    }
}

struct MeteredFile {
    inner: Box<dyn DiskFile>,
    metrics: Arc<Metrics>,
}

impl DiskFile for MeteredFile {
    fn len_bytes(&self) -> io::Result<u64> {
        self.inner.len_bytes()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let started = Instant::now();
        crate::latency_trace::mark("fsync_begin");
        // The node loop runs on the runtime's only worker (see `node_loop`): while it waits for the disk,
        // the runtime moves to another thread and keeps reading and answering sockets, so the next batch
        // is parsed and queued by the time this one is durable. Off the runtime (the snapshot thread) this
        // just calls the closure.
        let result = tokio::task::block_in_place(|| self.inner.sync_data());
        crate::latency_trace::mark("fsync_end");
        self.metrics.fsync_seconds.observe(seconds(started.elapsed()));
        result
    }
}
