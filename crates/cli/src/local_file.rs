//! `local.toml`: what a `raftkv local` cluster is, kept in its folder; the locks around it; its ports.
//!
//! The file is a small subset of TOML, one `key = value` a line:
//!
//! ```toml
//! cluster_id = 1234567        # every node is started with it; peers refuse another id
//! nodes = 3                   # the first nodes, ids 1..=nodes, bootstrapped together
//! base_port = 7001            # node N: clients base+N-1, peers base+100+N-1
//! admin_base_port = 8001      # node N: admin HTTP admin_base+N-1 (written by each start)
//! node.4 = "voter"            # added by `raftkv local add`: joins, then is promoted
//! node.5 = "learner"          # added by `raftkv local add --learner`
//! node.2 = "removed"          # removed by `raftkv local remove`: directory kept, never started again
//! ```
//!
//! Files written before `raftkv local add` existed hold only the first three lines and mean the same:
//! `admin_base_port` and the `node.N` lines are optional.
//!
//! Two locks live next to it. `local.toml.lock` serializes every read-modify-write of the file, so two
//! `raftkv local add` that race both land, under different ids. `supervisor.lock` is held by the
//! running `raftkv local` for its whole life: the way `add` and `remove` know that a supervisor will act
//! on what they write (flock(2) locks vanish with their process, so a crash leaves nothing stale).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The node ids whose ports the scheme can give: id 101 would take the client port of peer 1.
pub const MAX_NODE_ID: u64 = 100;

/// What became of a node that `raftkv local add` or `remove` recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Voter,
    Learner,
    Removed,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Voter => "voter",
            Role::Learner => "learner",
            Role::Removed => "removed",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "voter" => Some(Role::Voter),
            "learner" => Some(Role::Learner),
            "removed" => Some(Role::Removed),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LocalFile {
    pub cluster_id: u64,
    /// The first nodes (ids 1..=nodes), bootstrapped together with `--member` flags.
    pub nodes: u64,
    pub base_port: u16,
    pub admin_base_port: Option<u16>,
    /// Nodes added or removed since: ids above `nodes` are added ones, any id may be removed.
    pub changes: BTreeMap<u64, Role>,
}

impl LocalFile {
    pub fn new(cluster_id: u64, nodes: u64, base_port: u16, admin_base_port: u16) -> LocalFile {
        LocalFile {
            cluster_id,
            nodes,
            base_port,
            admin_base_port: Some(admin_base_port),
            changes: BTreeMap::new(),
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join("local.toml")
    }

    /// The file in `dir`, or `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<LocalFile>, String> {
        let path = LocalFile::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => LocalFile::parse(&text).map(Some).map_err(|e| format!("{}: {e}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(format!("reading {}: {error}", path.display())),
        }
    }

    pub fn parse(text: &str) -> Result<LocalFile, String> {
        let mut values = BTreeMap::new();
        let mut changes = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (key, value) = line.split_once('=').ok_or_else(|| format!("not `key = value`: {line:?}"))?;
            let (key, value) = (key.trim(), value.trim());
            if let Some(id) = key.strip_prefix("node.") {
                let id: u64 = id.parse().map_err(|_| format!("bad node id in {line:?}"))?;
                let role = Role::parse(value.trim_matches('"'))
                    .ok_or_else(|| format!("{line:?}: a node is \"voter\", \"learner\" or \"removed\""))?;
                changes.insert(id, role);
            } else {
                let number: u64 = value.parse().map_err(|_| format!("{key} is not a number: {value:?}"))?;
                values.insert(key.to_string(), number);
            }
        }
        let field = |key: &str| values.get(key).copied().ok_or_else(|| format!("no valid {key}"));
        let port =
            |key: &str, value: u64| u16::try_from(value).map_err(|_| format!("{key} {value} is no port"));
        Ok(LocalFile {
            cluster_id: field("cluster_id")?,
            nodes: field("nodes")?,
            base_port: port("base_port", field("base_port")?)?,
            admin_base_port: values
                .get("admin_base_port")
                .map(|&v| port("admin_base_port", v))
                .transpose()?,
            changes,
        })
    }

    pub fn render(&self) -> String {
        let mut text = format!(
            "cluster_id = {}\nnodes = {}\nbase_port = {}\n",
            self.cluster_id, self.nodes, self.base_port
        );
        if let Some(admin) = self.admin_base_port {
            text.push_str(&format!("admin_base_port = {admin}\n"));
        }
        if !self.changes.is_empty() {
            text.push_str(
                "# Nodes added (raftkv local add) or removed (raftkv local remove) since the start.\n",
            );
        }
        for (id, role) in &self.changes {
            text.push_str(&format!("node.{id} = \"{}\"\n", role.as_str()));
        }
        text
    }

    /// Writes the file whole through a temporary file and a rename, so a reader sees the old or the new.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let path = LocalFile::path(dir);
        let temporary = dir.join("local.toml.tmp");
        let written = File::create(&temporary).and_then(|mut file| {
            file.write_all(self.render().as_bytes())?;
            file.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Node `id`'s role: a first node is a voter unless removed; `None`: no such node.
    pub fn role(&self, id: u64) -> Option<Role> {
        match self.changes.get(&id) {
            Some(&role) => Some(role),
            None if (1..=self.nodes).contains(&id) => Some(Role::Voter),
            None => None,
        }
    }

    /// Every node that should run, in id order.
    pub fn running_ids(&self) -> Vec<u64> {
        let added = self.changes.keys().copied().filter(|&id| id > self.nodes);
        (1..=self.nodes).chain(added).filter(|&id| self.role(id) != Some(Role::Removed)).collect()
    }

    /// The id `raftkv local add` gives next: ids are never reused, removed ones included.
    pub fn next_id(&self) -> u64 {
        self.changes.keys().copied().chain([self.nodes]).max().unwrap_or(0) + 1
    }

    pub fn client_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", client_port(self.base_port, id))
    }
}

pub fn client_port(base: u16, id: u64) -> u16 {
    base + id as u16 - 1
}

pub fn peer_port(base: u16, id: u64) -> u16 {
    base + 100 + id as u16 - 1
}

pub fn admin_port(admin_base: u16, id: u64) -> u16 {
    admin_base + id as u16 - 1
}

/// Checks that node `id`'s ports exist (a base near 65,535 would run past the last port) and do not
/// collide with another node's.
pub fn check_ports(base_port: u16, admin_base_port: u16, id: u64) -> Result<(), String> {
    if id > MAX_NODE_ID {
        return Err(format!("a local cluster has node ids up to {MAX_NODE_ID}; node {id} would share ports"));
    }
    let last = id as u16 - 1;
    if base_port.checked_add(100 + last).is_none() {
        return Err(format!("--base-port {base_port} leaves no room for node {id}'s peer port"));
    }
    if admin_base_port.checked_add(last).is_none() {
        return Err(format!("--admin-base-port {admin_base_port} leaves no room for node {id}"));
    }
    Ok(())
}

/// An flock(2) on a file in the cluster's folder, released when dropped (or when the process dies).
pub struct FolderLock {
    _file: File,
}

/// Waits for the exclusive lock on `local.toml`'s edits: hold it around every read-modify-write.
pub fn lock_for_edit(dir: &Path) -> Result<FolderLock, String> {
    lock(dir, "local.toml.lock", libc::LOCK_EX)?.ok_or_else(|| "unreachable: a blocking lock".to_string())
}

/// Takes the lock that says "a `raftkv local` supervises this folder"; `None` if another one holds it.
pub fn lock_as_supervisor(dir: &Path) -> Result<Option<FolderLock>, String> {
    lock(dir, "supervisor.lock", libc::LOCK_EX | libc::LOCK_NB)
}

/// True while a `raftkv local` supervises `dir`.
pub fn supervisor_running(dir: &Path) -> Result<bool, String> {
    Ok(lock(dir, "supervisor.lock", libc::LOCK_SH | libc::LOCK_NB)?.is_none())
}

fn lock(dir: &Path, name: &str, operation: libc::c_int) -> Result<Option<FolderLock>, String> {
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    // SAFETY: flock(2) on a descriptor we own for as long as `file` lives.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), operation) } == 0 {
        return Ok(Some(FolderLock { _file: file }));
    }
    let error = std::io::Error::last_os_error();
    if error.kind() == std::io::ErrorKind::WouldBlock {
        return Ok(None);
    }
    Err(format!("locking {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_from_before_local_add_still_loads_and_means_three_voters() {
        let old = LocalFile::parse("cluster_id = 77\nnodes = 3\nbase_port = 7001\n").unwrap();
        assert_eq!(old.admin_base_port, None);
        assert_eq!(old.running_ids(), [1, 2, 3]);
        assert_eq!(old.next_id(), 4);
    }

    #[test]
    fn added_and_removed_nodes_round_trip_and_ids_are_never_reused() {
        let mut file = LocalFile::new(77, 3, 7001, 8001);
        file.changes.insert(4, Role::Voter);
        file.changes.insert(5, Role::Learner);
        file.changes.insert(2, Role::Removed);
        file.changes.insert(6, Role::Removed);
        let text = file.render();
        assert_eq!(LocalFile::parse(&text).unwrap(), file, "{text}");
        assert_eq!(file.running_ids(), [1, 3, 4, 5]);
        assert_eq!(file.next_id(), 7);
        assert_eq!(file.role(5), Some(Role::Learner));
        assert_eq!(file.role(9), None);
    }

    #[test]
    fn a_bad_role_is_refused_with_the_line() {
        let error = LocalFile::parse("cluster_id = 1\nnodes = 3\nbase_port = 7001\nnode.4 = \"boss\"\n");
        assert!(error.unwrap_err().contains("node.4"));
    }
}
