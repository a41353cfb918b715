//! A simulated disk: in memory, deterministic, and as hostile as a real one is allowed to be.
//!
//! Every random choice comes from the seed given to [`SimDisk::new`], so a run is reproducible. The model:
//!
//! - **File data** is kept twice: what reads see now, and what is durable. `sync_data` makes the current
//!   data and length durable. On [`SimDisk::crash`] every 4 KiB page written since the last sync is kept or
//!   lost independently (a kept page may be *torn*: only a prefix of its 512-byte sectors reaches the
//!   disk), and the file length is either the old durable one or the new one (zeros where a page was lost).
//! - **Directory operations** (create, rename, remove) are durable only after `sync_dir`. On a crash a random
//!   prefix of the unsynced ones survives (as a journaling file system commits metadata in order).
//! - **Faults on demand**: [`SimDisk::flip_bit`] damages stored bytes (media corruption, caught by the
//!   checksums); [`SimDisk::fail_next_sync`] makes the next `sync_data`/`sync_dir` fail; a capacity makes
//!   writes past it fail with ENOSPC after writing what fits; [`SimDisk::crash_after_ops`] makes every
//!   mutating operation after the k-th fail (the power went out), so a test can crash "after operation k".
//! - **Handles**: [`SimDisk`] is a cheap clone of one shared disk. A crash invalidates every file handle and
//!   lock of the "process" that was running, so a zombie writer can never touch the recovered state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::disk::{Disk, DiskFile, DiskLock};
use crate::error::ENOSPC;

/// The page size of the crash model: unsynced data is lost or kept in units of this many bytes.
pub const SIM_PAGE_BYTES: usize = 4096;
/// The sector size of the crash model: a torn page keeps a prefix of this many-byte sectors.
pub const SIM_SECTOR_BYTES: usize = 512;

/// Deterministic splitmix64; good enough to draw crash outcomes, and dependency-free.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

#[derive(Default, Debug)]
struct Inode {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a crash for certain.
    durable: Vec<u8>,
    /// Pages written (or zeroed by `set_len`) since the last sync. Invariant: outside these pages and below
    /// `min(data.len(), durable.len())`, `data` equals `durable`.
    dirty_pages: BTreeSet<usize>,
}

impl Inode {
    fn mark_dirty(&mut self, start: usize, end: usize) {
        if end > start {
            for page in start / SIM_PAGE_BYTES..=(end - 1) / SIM_PAGE_BYTES {
                self.dirty_pages.insert(page);
            }
        }
    }

    fn sync(&mut self) {
        let len = self.data.len();
        self.durable.resize(len, 0);
        for &page in &self.dirty_pages {
            let start = page * SIM_PAGE_BYTES;
            if start < len {
                let end = (start + SIM_PAGE_BYTES).min(len);
                self.durable[start..end].copy_from_slice(&self.data[start..end]);
            }
        }
        self.dirty_pages.clear();
    }

    /// Decides, page by page, what of the unsynced data a power loss leaves behind.
    fn crash(&mut self, rng: &mut Rng) {
        let new_len = if self.data.len() != self.durable.len() && rng.chance(1, 2) {
            self.data.len()
        } else {
            self.durable.len()
        };
        let mut result = std::mem::take(&mut self.durable);
        result.resize(new_len, 0);
        for &page in &self.dirty_pages {
            let start = page * SIM_PAGE_BYTES;
            let end = (start + SIM_PAGE_BYTES).min(new_len).min(self.data.len());
            if start >= end || !rng.chance(1, 2) {
                continue; // the page never reached the platter
            }
            let kept_end = if rng.chance(1, 4) {
                let sectors = (end - start).div_ceil(SIM_SECTOR_BYTES) as u64;
                (start + SIM_SECTOR_BYTES * rng.below(sectors) as usize).min(end)
            // torn
            } else {
                end
            };
            result[start..kept_end].copy_from_slice(&self.data[start..kept_end]);
        }
        self.data = result.clone();
        self.durable = result;
        self.dirty_pages.clear();
    }
}

#[derive(Clone, Debug)]
enum DirOp {
    Link { name: String, inode: u64 },
    Unlink { name: String },
}

#[derive(Debug)]
struct State {
    rng: Rng,
    /// Bumped by every crash: handles and locks of an older epoch belong to a dead process.
    epoch: u64,
    ops: u64,
    crash_after_ops: Option<u64>,
    fail_next_sync: bool,
    capacity_bytes: Option<u64>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    pending_dir_ops: Vec<DirOp>,
    locks: HashMap<String, u64>,
    next_lock_id: u64,
    crashes: u64,
}

impl State {
    /// Counts one mutating operation, or fails it if the simulated power has gone out.
    fn begin_op(&mut self, what: &str) -> io::Result<()> {
        if let Some(limit) = self.crash_after_ops {
            if self.ops >= limit {
                return Err(io::Error::other(format!("simulated power loss before {what}")));
            }
        }
        self.ops += 1;
        Ok(())
    }

    fn used_bytes(&self) -> u64 {
        let live: BTreeSet<&u64> = self.names.values().collect();
        live.iter().filter_map(|ino| self.inodes.get(ino)).map(|inode| inode.data.len() as u64).sum()
    }

    fn apply(names: &mut BTreeMap<String, u64>, op: &DirOp) {
        match op {
            DirOp::Link { name, inode } => {
                names.insert(name.clone(), *inode);
            }
            DirOp::Unlink { name } => {
                names.remove(name);
            }
        }
    }

    fn dir_op(&mut self, op: DirOp) {
        Self::apply(&mut self.names, &op);
        self.pending_dir_ops.push(op);
    }
}

/// The simulated disk. Clones share one disk (one "machine"); see the module docs for the fault model.
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl SimDisk {
    /// An empty disk whose every random choice derives from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            state: Arc::new(Mutex::new(State {
                rng: Rng(seed ^ 0x5EED_D15C),
                epoch: 0,
                ops: 0,
                crash_after_ops: None,
                fail_next_sync: false,
                capacity_bytes: None,
                inodes: HashMap::new(),
                next_inode: 1,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                pending_dir_ops: Vec::new(),
                locks: HashMap::new(),
                next_lock_id: 1,
                crashes: 0,
            })),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going so tests report the first panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Power loss: unsynced pages are kept, lost or torn; a random prefix of unsynced directory operations
    /// survives; every open handle and lock dies; the power-loss switch of [`Self::crash_after_ops`] resets.
    pub fn crash(&self) {
        let mut state = self.lock_state();
        let state = &mut *state;
        let keep = state.rng.below(state.pending_dir_ops.len() as u64 + 1) as usize;
        let mut names = std::mem::take(&mut state.durable_names);
        for op in &state.pending_dir_ops[..keep] {
            State::apply(&mut names, op);
        }
        state.pending_dir_ops.clear();
        state.names = names.clone();
        state.durable_names = names;
        let live: BTreeSet<u64> = state.names.values().copied().collect();
        state.inodes.retain(|ino, _| live.contains(ino));
        let mut inodes: Vec<_> = state.inodes.iter_mut().collect();
        inodes.sort_by_key(|(ino, _)| **ino); // deterministic order of random draws
        for (_, inode) in inodes {
            inode.crash(&mut state.rng);
        }
        state.epoch += 1;
        state.locks.clear();
        state.crash_after_ops = None;
        state.fail_next_sync = false;
        state.crashes += 1;
    }

    /// After `ops` more mutating operations in total (counted by [`Self::op_count`]), every further one
    /// fails as if the power went out; call [`Self::crash`] next. `None` turns the switch off.
    pub fn crash_after_ops(&self, ops: Option<u64>) {
        self.lock_state().crash_after_ops = ops;
    }

    /// Mutating operations so far: create, write, set_len, sync_data, rename, remove, sync_dir.
    pub fn op_count(&self) -> u64 {
        self.lock_state().ops
    }

    /// How many times this disk has crashed.
    pub fn crash_count(&self) -> u64 {
        self.lock_state().crashes
    }

    /// The next `sync_data` or `sync_dir` fails with EIO (and, as on Linux, the unsynced data stays
    /// unsynced: it may still be lost at a crash).
    pub fn fail_next_sync(&self) {
        self.lock_state().fail_next_sync = true;
    }

    /// Limits the bytes all files together may hold; writes beyond fail with ENOSPC. `None` = unlimited.
    pub fn set_capacity_bytes(&self, capacity: Option<u64>) {
        self.lock_state().capacity_bytes = capacity;
    }

    /// Flips one bit of a file, both in what reads see and in the durable copy (media corruption).
    /// Returns false if the file or the offset does not exist.
    pub fn flip_bit(&self, name: &str, offset: u64, bit: u8) -> bool {
        let mut state = self.lock_state();
        let Some(&ino) = state.names.get(name) else { return false };
        let inode = state.inodes.get_mut(&ino).expect("named inode exists");
        let offset = offset as usize;
        if offset >= inode.data.len() {
            return false;
        }
        inode.data[offset] ^= 1 << (bit % 8);
        if offset < inode.durable.len() {
            inode.durable[offset] ^= 1 << (bit % 8);
        }
        true
    }

    /// The names of all files, sorted (for tests and the simulator's trace).
    pub fn file_names(&self) -> Vec<String> {
        self.lock_state().names.keys().cloned().collect()
    }

    /// A copy of a file's current content, if it exists.
    pub fn file_contents(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.lock_state();
        state.names.get(name).map(|ino| state.inodes[ino].data.clone())
    }

    /// Replaces a file's content durably (for tests that fabricate damaged or foreign files).
    pub fn put_file(&self, name: &str, contents: &[u8]) {
        let mut state = self.lock_state();
        let ino = state.next_inode;
        state.next_inode += 1;
        state
            .inodes
            .insert(ino, Inode { data: contents.to_vec(), durable: contents.to_vec(), ..Inode::default() });
        state.names.insert(name.to_string(), ino);
        state.durable_names.insert(name.to_string(), ino);
    }

    /// Removes a file durably, bypassing the crash model (for tests that delete a segment by hand).
    pub fn delete_file(&self, name: &str) -> bool {
        let mut state = self.lock_state();
        let existed = state.names.remove(name).is_some();
        state.durable_names.remove(name);
        existed
    }
}

struct SimFile {
    disk: SimDisk,
    inode: u64,
    epoch: u64,
    name: String,
}

impl SimFile {
    fn with_inode<T>(
        &self,
        what: &str,
        mutating: bool,
        f: impl FnOnce(&mut Inode, &mut State) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut guard = self.disk.lock_state();
        let state = &mut *guard;
        if state.epoch != self.epoch {
            return Err(io::Error::other(format!("{}: handle from before a simulated crash", self.name)));
        }
        if mutating {
            state.begin_op(what)?;
        }
        let mut inode = state.inodes.remove(&self.inode).unwrap_or_default();
        let result = f(&mut inode, state);
        state.inodes.insert(self.inode, inode);
        result
    }
}

impl DiskFile for SimFile {
    fn len_bytes(&self) -> io::Result<u64> {
        self.with_inode("len", false, |inode, _| Ok(inode.data.len() as u64))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.with_inode("read", false, |inode, _| {
            let start = (offset as usize).min(inode.data.len());
            let n = buf.len().min(inode.data.len() - start);
            buf[..n].copy_from_slice(&inode.data[start..start + n]);
            Ok(n)
        })
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with_inode("write", true, |inode, state| {
            let start = offset as usize;
            let end = start + data.len();
            let mut writable = end;
            if let Some(capacity) = state.capacity_bytes {
                // This inode was taken out of the map, so used_bytes() counts everything else.
                let others = state.used_bytes();
                let room = capacity.saturating_sub(others) as usize;
                writable = end.min(room.max(inode.data.len()));
            }
            let writable = writable.max(start);
            if inode.data.len() < writable {
                inode.data.resize(writable, 0);
            }
            inode.data[start..writable].copy_from_slice(&data[..writable - start]);
            inode.mark_dirty(start, writable);
            if writable < end {
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            Ok(())
        })
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.with_inode("set_len", true, |inode, _| {
            let len = len as usize;
            let old = inode.data.len();
            inode.data.resize(len, 0);
            inode.mark_dirty(len.min(old), len.max(old));
            Ok(())
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with_inode("sync_data", true, |inode, state| {
            if std::mem::take(&mut state.fail_next_sync) {
                return Err(io::Error::other("simulated fsync failure (EIO)"));
            }
            inode.sync();
            Ok(())
        })
    }
}

struct SimLock {
    disk: SimDisk,
    name: String,
    id: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.disk.lock_state();
        if state.locks.get(&self.name) == Some(&self.id) {
            state.locks.remove(&self.name);
        }
    }
}

impl Disk for SimDisk {
    fn describe(&self) -> String {
        "simulated disk".to_string()
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        let mut state = self.lock_state();
        if state.names.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} exists")));
        }
        state.begin_op("create")?;
        let inode = state.next_inode;
        state.next_inode += 1;
        state.inodes.insert(inode, Inode::default());
        state.dir_op(DirOp::Link { name: name.to_string(), inode });
        let epoch = state.epoch;
        Ok(Box::new(SimFile { disk: self.clone(), inode, epoch, name: name.to_string() }))
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        let state = self.lock_state();
        let Some(&inode) = state.names.get(name) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{name} not found")));
        };
        Ok(Box::new(SimFile { disk: self.clone(), inode, epoch: state.epoch, name: name.to_string() }))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.file_names())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.lock_state();
        let Some(&inode) = state.names.get(from) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{from} not found")));
        };
        state.begin_op("rename")?;
        state.dir_op(DirOp::Link { name: to.to_string(), inode });
        state.dir_op(DirOp::Unlink { name: from.to_string() });
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.lock_state();
        if !state.names.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{name} not found")));
        }
        state.begin_op("remove")?;
        state.dir_op(DirOp::Unlink { name: name.to_string() });
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut state = self.lock_state();
        state.begin_op("sync_dir")?;
        if std::mem::take(&mut state.fail_next_sync) {
            return Err(io::Error::other("simulated directory fsync failure (EIO)"));
        }
        state.durable_names = state.names.clone();
        state.pending_dir_ops.clear();
        Ok(())
    }

    fn lock(&self, name: &str) -> io::Result<DiskLock> {
        let mut state = self.lock_state();
        if state.locks.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "lock is held by someone else"));
        }
        let id = state.next_lock_id;
        state.next_lock_id += 1;
        state.locks.insert(name.to_string(), id);
        Ok(DiskLock::new(SimLock { disk: self.clone(), name: name.to_string(), id }))
    }
}
