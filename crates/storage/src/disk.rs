//! The small file-level interface all storage I/O goes through, and its real implementation.
//!
//! A [`Disk`] is one flat data directory: files are named by plain strings without slashes. Everything the
//! write-ahead log and the snapshot files need is here and nothing more, so that the simulated disk
//! ([`crate::SimDisk`]) can model every operation's crash behaviour exactly: data written to a file is
//! durable only after [`DiskFile::sync_data`]; a create, rename or remove is durable only after
//! [`Disk::sync_dir`].

use std::any::Any;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// One open file. Offsets are absolute; there is no cursor.
pub trait DiskFile: Send {
    /// The current length in bytes.
    fn len_bytes(&self) -> io::Result<u64>;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at `offset`, extending the file if needed. On error a prefix may have been
    /// written (a full disk reports the raw OS error ENOSPC).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (`fdatasync`). After an error the state of unsynced data is
    /// unknown and must never be assumed written: callers stop rather than retry.
    fn sync_data(&mut self) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(offset, buf)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than expected"));
            }
            offset += n as u64;
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Reads the whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len_bytes()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large for memory"))?;
        let mut buf = vec![0; len];
        self.read_exact_at(0, &mut buf)?;
        Ok(buf)
    }
}

/// Held while a data directory is locked; dropping it releases the lock.
pub struct DiskLock {
    _guard: Box<dyn Any + Send>,
}

impl DiskLock {
    /// Wraps whatever keeps the lock alive (an open, `flock`ed file; a simulated lock-table entry).
    pub fn new(guard: impl Any + Send) -> DiskLock {
        DiskLock { _guard: Box::new(guard) }
    }
}

impl std::fmt::Debug for DiskLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskLock")
    }
}

/// One data directory. `Send`, so a server may move its storage to a dedicated disk thread.
pub trait Disk: Send {
    /// A human-readable name of the directory, used in error messages.
    fn describe(&self) -> String;
    /// Creates a new, empty file; fails if `name` exists. The name is durable only after `sync_dir`.
    fn create(&self, name: &str) -> io::Result<Box<dyn DiskFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Box<dyn DiskFile>>;
    /// The names of all regular files, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Atomically renames `from` to `to`, replacing `to`. Durable only after `sync_dir`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file. Durable only after `sync_dir`.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes every earlier create, rename and remove in this directory durable (fsync of the directory).
    fn sync_dir(&self) -> io::Result<()>;
    /// Takes the exclusive lock named `name`, without waiting: fails with `WouldBlock` if anyone (another
    /// process, or another handle in this one) holds it.
    fn lock(&self, name: &str) -> io::Result<DiskLock>;
}

/// The real disk: a directory on the local file system. Locks are `flock(2)` locks, which the kernel
/// releases when the process dies, so a crashed node never leaves a stale lock behind.
#[derive(Clone, Debug)]
pub struct FileDisk {
    dir: PathBuf,
}

impl FileDisk {
    /// Uses `dir` as the data directory, creating it (and its parents) if missing.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<FileDisk> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        Ok(FileDisk { dir })
    }

    /// The directory this disk stands for.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad file name {name:?}")));
        }
        Ok(self.dir.join(name))
    }
}

struct RealFile {
    file: File,
}

/// Opens a file outside any data directory for reading only (a backup given on the command line).
pub(crate) fn open_read_only(path: &Path) -> io::Result<Box<dyn DiskFile>> {
    Ok(Box::new(RealFile { file: File::open(path)? }))
}

impl DiskFile for RealFile {
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Disk for FileDisk {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
    fn create(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(self.path(name)?)?;
        Ok(Box::new(RealFile { file }))
    }
    fn open(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).open(self.path(name)?)?;
        Ok(Box::new(RealFile { file }))
    }
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from)?, self.path(to)?)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name)?)
    }
    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
    fn lock(&self, name: &str) -> io::Result<DiskLock> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(self.path(name)?)?;
        if fs4::fs_std::FileExt::try_lock_exclusive(&file)? {
            Ok(DiskLock::new(file))
        } else {
            Err(io::Error::new(io::ErrorKind::WouldBlock, "lock is held by someone else"))
        }
    }
}

/// A boxed disk is a disk, so a server can choose the implementation at run time.
impl<T: Disk + ?Sized> Disk for Box<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn create(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        (**self).create(name)
    }
    fn open(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        (**self).open(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        (**self).list()
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        (**self).rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        (**self).remove(name)
    }
    fn sync_dir(&self) -> io::Result<()> {
        (**self).sync_dir()
    }
    fn lock(&self, name: &str) -> io::Result<DiskLock> {
        (**self).lock(name)
    }
}
