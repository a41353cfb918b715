//! The server's own small state in the data directory: the **incarnation counter**.
//!
//! kv's client ids are `(node id, incarnation, counter)`; the node glue opens a fresh session each life,
//! and the state machine keeps sessions across restarts, so a restarted node must never reuse the ids of
//! an earlier life (its sequence numbers would collide with cached replies). The counter is bumped and made
//! durable on every start, before the node can propose anything.
//!
//! It lives in `DATA_DIR/server/INCARNATION` — a subdirectory, because the storage crate owns every
//! regular file at the top of the data directory (and refuses files it did not write), while it ignores
//! directories. It is bumped only after `Storage::open` took the directory's lock, so two processes can
//! never bump it at once. Format: the decimal number, then a newline; written to a temp file, fsynced,
//! renamed, directory fsynced.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::Path;

const SUBDIR: &str = "server";
const FILE: &str = "INCARNATION";
const TEMP_FILE: &str = "INCARNATION.tmp";

/// Reads the previous incarnation (0 if none), writes and syncs the next one, and returns it.
pub fn bump_incarnation(data_dir: &Path) -> io::Result<u64> {
    let dir = data_dir.join(SUBDIR);
    fs::create_dir_all(&dir)?;
    let path = dir.join(FILE);
    let previous = match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: expected a decimal number, found {:?}", path.display(), text.trim()),
            )
        })?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
        Err(error) => return Err(error),
    };
    let next = previous + 1;
    let temp = dir.join(TEMP_FILE);
    let mut file = File::create(&temp)?;
    writeln!(file, "{next}")?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, &path)?;
    File::open(&dir)?.sync_all()?;
    // The directory entry of `server/` itself must be durable too the first time.
    File::open(data_dir)?.sync_all()?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnation_counts_up_across_calls() {
        let dir = std::env::temp_dir().join(format!("raftkv-incarnation-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(bump_incarnation(&dir).unwrap(), 1);
        assert_eq!(bump_incarnation(&dir).unwrap(), 2);
        assert_eq!(bump_incarnation(&dir).unwrap(), 3);
        fs::remove_dir_all(&dir).unwrap();
    }
}
