//! CLIENT, CONFIG and COMMAND: the introspection commands client libraries and tools send on connect.
//! Each answers just enough, in Redis's shapes, for `redis-cli`, `redis-benchmark`, redis-py and the
//! `redis` crate to work; what raftkv cannot honestly answer is an error, not a made-up value.

use bytes::Bytes;

use super::{error, ok, Action, Connection};
use crate::encode::Frame;
use crate::table;

impl Connection {
    /// `CLIENT ID | GETNAME | SETNAME name | SETINFO LIB-NAME|LIB-VER value | INFO`.
    pub(super) fn client(&mut self, args: &[Bytes]) -> Action {
        let sub = args[0].to_ascii_lowercase();
        let arity = match sub.as_slice() {
            b"id" | b"getname" | b"info" => 1,
            b"setname" => 2,
            b"setinfo" => 3,
            _ => return unknown_subcommand(&args[0], "CLIENT"),
        };
        if args.len() != arity {
            return error(subcommand_arity("client", &sub));
        }
        match sub.as_slice() {
            b"id" => Action::Reply(Frame::Integer(i64::try_from(self.client_id).unwrap_or(i64::MAX))),
            b"getname" => Action::Reply(self.name.clone().map_or(Frame::Null, Frame::Bulk)),
            b"setname" => match self.set_name(args[1].clone()) {
                Ok(()) => ok(),
                Err(text) => error(text),
            },
            b"setinfo" => self.set_info(&args[1], &args[2]),
            _ => Action::Reply(Frame::Bulk(Bytes::from(self.client_info_line()))),
        }
    }

    fn set_info(&mut self, attribute: &Bytes, value: &Bytes) -> Action {
        let shown = String::from_utf8_lossy(attribute);
        let slot = if attribute.eq_ignore_ascii_case(b"lib-name") {
            &mut self.lib_name
        } else if attribute.eq_ignore_ascii_case(b"lib-ver") {
            &mut self.lib_version
        } else {
            return error(format!("ERR Unrecognized option '{shown}'"));
        };
        if !value.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
            return error(format!("ERR {shown} cannot contain spaces, newlines or special characters."));
        }
        *slot = if value.is_empty() { None } else { Some(value.clone()) };
        ok()
    }

    /// CLIENT INFO's line, with the fields this layer knows (the server knows addresses and ages).
    fn client_info_line(&self) -> String {
        let text = |field: &Option<Bytes>| field.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        let mut flags = String::new();
        if self.multi.is_some() {
            flags.push('x');
        }
        if self.read_consistency == node::Consistency::Stale {
            flags.push('r');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let multi =
            self.multi.as_ref().map_or(-1, |state| i64::try_from(state.transaction.len()).unwrap_or(-1));
        format!(
            "id={} name={} db=0 flags={} multi={} resp={} lib-name={} lib-ver={}\n",
            self.client_id,
            text(&self.name).unwrap_or_default(),
            flags,
            multi,
            self.protocol.number(),
            text(&self.lib_name).unwrap_or_default(),
            text(&self.lib_version).unwrap_or_default(),
        )
    }

    /// `CONFIG GET pattern...`, `CONFIG SET name value...`, `CONFIG RESETSTAT`.
    pub(super) fn config(&mut self, args: &[Bytes]) -> Action {
        let sub = args[0].to_ascii_lowercase();
        match sub.as_slice() {
            b"get" if args.len() >= 2 => Action::Reply(Frame::Map(
                self.config_values()
                    .into_iter()
                    .filter(|(name, _)| args[1..].iter().any(|pattern| glob_match(pattern, name.as_bytes())))
                    .map(|(name, value)| (Frame::bulk(name), Frame::Bulk(Bytes::from(value))))
                    .collect(),
            )),
            b"set" if args.len() >= 3 && args.len() % 2 == 1 => self.config_set(&args[1..]),
            b"resetstat" if args.len() == 1 => ok(),
            b"get" | b"set" | b"resetstat" => error(subcommand_arity("config", &sub)),
            _ => unknown_subcommand(&args[0], "CONFIG"),
        }
    }

    /// The parameters CONFIG GET knows, with values true of raftkv: no RDB `save` schedule, every write
    /// is in the write-ahead log and fsynced before it is acknowledged (`appendonly yes`, `appendfsync
    /// always`), one database, not Redis Cluster.
    fn config_values(&self) -> Vec<(&'static str, String)> {
        vec![
            ("save", String::new()),
            ("appendonly", "yes".to_owned()),
            ("appendfsync", "always".to_owned()),
            ("databases", "1".to_owned()),
            ("cluster-enabled", "no".to_owned()),
            ("proto-max-bulk-len", self.limits.max_bulk_bytes.to_string()),
        ]
    }

    /// Nothing is settable at run time: setting a known parameter to its current value is OK (scripts
    /// do `CONFIG SET save ""`), anything else is refused with Redis's error shapes. All pairs are
    /// checked before answering, as in Redis.
    fn config_set(&self, pairs: &[Bytes]) -> Action {
        let values = self.config_values();
        for pair in pairs.chunks_exact(2) {
            let shown = String::from_utf8_lossy(&pair[0]);
            let Some((_, current)) =
                values.iter().find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(&pair[0]))
            else {
                return error(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{shown}'"
                ));
            };
            if current.as_bytes() != pair[1].as_ref() {
                return error(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{shown}') - raftkv does not change \
                     this setting at run time"
                ));
            }
        }
        ok()
    }
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO [name...]`, `COMMAND LIST`, `COMMAND DOCS [name...]`.
pub(super) fn command(args: &[Bytes]) -> Action {
    let Some(sub) = args.first() else {
        return Action::Reply(Frame::Array(
            table::COMMANDS.iter().map(table::CommandInfo::to_frame).collect(),
        ));
    };
    let sub_lower = sub.to_ascii_lowercase();
    match sub_lower.as_slice() {
        b"count" if args.len() == 1 => {
            Action::Reply(Frame::Integer(i64::try_from(table::COMMANDS.len()).unwrap_or(i64::MAX)))
        }
        b"info" if args.len() == 1 => {
            Action::Reply(Frame::Array(table::COMMANDS.iter().map(table::CommandInfo::to_frame).collect()))
        }
        b"info" => Action::Reply(Frame::Array(
            args[1..]
                .iter()
                .map(|name| table::lookup(name).map_or(Frame::Null, |row| row.to_frame()))
                .collect(),
        )),
        b"list" if args.len() == 1 => Action::Reply(Frame::Array(
            table::COMMANDS.iter().map(|row| Frame::Bulk(Bytes::from_static(row.name.as_bytes()))).collect(),
        )),
        // No documentation is served: an empty map is a valid answer, and redis-cli then simply offers no
        // hints instead of failing to connect.
        b"docs" => Action::Reply(Frame::Map(vec![])),
        b"count" | b"list" => error(subcommand_arity("command", &sub_lower)),
        _ => unknown_subcommand(sub, "COMMAND"),
    }
}

/// `ERR unknown subcommand 'x'. Try CLIENT HELP.`, as Redis 7 words it (the name cut at 128 bytes).
fn unknown_subcommand(sub: &[u8], command: &str) -> Action {
    let shown = String::from_utf8_lossy(&sub[..sub.len().min(128)]).into_owned();
    error(format!("ERR unknown subcommand '{shown}'. Try {command} HELP."))
}

/// `ERR wrong number of arguments for 'client|setname' command`.
fn subcommand_arity(command: &str, sub: &[u8]) -> String {
    format!("ERR wrong number of arguments for '{command}|{}' command", String::from_utf8_lossy(sub))
}

/// Case-insensitive glob matching as Redis's CONFIG GET does it: `*`, `?`, `[abc]`, `[^a-z]`, `\x`.
/// Iterative with one backtrack point, so no pattern can take more than O(pattern × name) steps.
pub(crate) fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // After a `*`: where in the pattern to resume, and the name position the star has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(_) => match_one(pattern, p, name[n]),
            None => None,
        };
        match step {
            Some(next) => {
                p = next;
                n += 1;
            }
            None => match star {
                Some((after_star, swallowed)) => {
                    p = after_star;
                    n = swallowed + 1;
                    star = Some((after_star, swallowed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*')
}

/// Whether the pattern element at `p` (not `*`) matches `c`; if so, the offset after the element.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    let c = c.to_ascii_lowercase();
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1].to_ascii_lowercase() == c).then_some(p + 2),
        b'[' => {
            let mut at = p + 1;
            let negate = pattern.get(at) == Some(&b'^');
            if negate {
                at += 1;
            }
            let mut matched = false;
            while at < pattern.len() && pattern[at] != b']' {
                if pattern[at] == b'\\' && at + 1 < pattern.len() {
                    matched |= pattern[at + 1].to_ascii_lowercase() == c;
                    at += 2;
                } else if at + 2 < pattern.len() && pattern[at + 1] == b'-' && pattern[at + 2] != b']' {
                    let (low, high) =
                        (pattern[at].to_ascii_lowercase(), pattern[at + 2].to_ascii_lowercase());
                    let (low, high) = if low <= high { (low, high) } else { (high, low) };
                    matched |= (low..=high).contains(&c);
                    at += 3;
                } else {
                    matched |= pattern[at].to_ascii_lowercase() == c;
                    at += 1;
                }
            }
            // An unclosed class ends with the pattern, as in Redis.
            (matched != negate).then_some((at + 1).min(pattern.len()))
        }
        other => (other.to_ascii_lowercase() == c).then_some(p + 1),
    }
}
