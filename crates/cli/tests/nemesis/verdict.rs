//! The end of a run: the history as an EDN file, `raftkv check`'s verdict on it, and the check that
//! every acknowledged write is in the final state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use lincheck::{Call, History, Op, Outcome};

use crate::workload::{kind_of, KeyKind};

/// Writes one EDN map per line.
pub fn write_edn(lines: &[String], path: &Path) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Runs `raftkv check FILE`; returns its exit code and its standard output.
pub fn raftkv_check(path: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .arg("check")
        .arg(path)
        .output()
        .expect("running raftkv check");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().unwrap_or(-1), stdout)
}

/// When an operation certainly ended, as a history position; `None` for one whose outcome is unknown,
/// which may take effect at any later moment.
fn certainly_over_at(op: &Op) -> Option<u64> {
    match op.outcome {
        Outcome::Info => None,
        _ => op.completed_at,
    }
}

/// Every acknowledged write that the final values do not account for, as readable lines.
///
/// Register keys (SET and APPEND of unique tokens): the final value is the value of one SET, or empty,
/// followed by appended tokens. An acknowledged SET must be that one, or have been overwritten by a SET
/// that could come after it (one that had not finished before it began). An acknowledged APPEND's token
/// must be in the final value unless a SET that could come after it wiped it. No token appears twice.
///
/// Counter keys: the final integer lies between the number of acknowledged INCRs and that number plus the
/// INCRs whose outcome is unknown.
pub fn lost_writes(history: &History, finals: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history.ops() {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut problems = Vec::new();
    for (key, ops) in by_key {
        let Some(value) = finals.get(key) else {
            problems.push(format!("{key}: no final value was read"));
            continue;
        };
        match kind_of(key) {
            KeyKind::Register => check_register(key, &ops, value.as_deref(), &mut problems),
            KeyKind::Counter => check_counter(key, &ops, value.as_deref(), &mut problems),
        }
    }
    problems
}

fn check_register(key: &str, ops: &[&Op], value: Option<&str>, problems: &mut Vec<String>) {
    let tokens: Vec<&str> = value.unwrap_or_default().split_whitespace().collect();
    let distinct: BTreeSet<&str> = tokens.iter().copied().collect();
    if distinct.len() != tokens.len() {
        problems.push(format!("{key}: a token appears twice in the final value {value:?}"));
    }
    let written = |op: &&Op| !matches!(op.outcome, Outcome::Fail);
    let sets: Vec<&Op> =
        ops.iter().copied().filter(|op| matches!(op.call, Call::Write(_))).filter(written).collect();
    // A SET that could take effect after `op` began: one not certainly over before `op` was invoked.
    let set_could_follow =
        |op: &Op| sets.iter().any(|s| certainly_over_at(s).is_none_or(|end| end > op.invoked_at));
    let final_set = tokens.first().filter(|t| t.starts_with('S')).and_then(|token| {
        sets.iter().find(|s| matches!(&s.call, Call::Write(Some(v)) if v.trim_end() == *token))
    });
    for op in ops.iter().filter(|op| matches!(op.outcome, Outcome::Ok(_))) {
        match &op.call {
            Call::Write(Some(v)) => {
                let overwritten = final_set.is_some_and(|last| {
                    std::ptr::eq(*last, *op) || certainly_over_at(last).is_none_or(|end| end > op.invoked_at)
                });
                if !overwritten {
                    problems.push(format!(
                        "{key}: acknowledged SET {v:?} ({op}) is lost: the final value {value:?} cannot come after it"
                    ));
                }
            }
            Call::Append(token) if !distinct.contains(token.trim_end()) && !set_could_follow(op) => {
                problems.push(format!(
                    "{key}: acknowledged APPEND {token:?} ({op}) is missing from the final value {value:?}"
                ));
            }
            _ => {}
        }
    }
}

fn check_counter(key: &str, ops: &[&Op], value: Option<&str>, problems: &mut Vec<String>) {
    let incrs = ops.iter().filter(|op| op.call == Call::Incr);
    let acknowledged = incrs.clone().filter(|op| matches!(op.outcome, Outcome::Ok(_))).count() as i64;
    let unknown = incrs.filter(|op| op.outcome == Outcome::Info).count() as i64;
    let Ok(count) = value.unwrap_or("0").parse::<i64>() else {
        problems.push(format!("{key}: the final value {value:?} is not an integer"));
        return;
    };
    if count < acknowledged || count > acknowledged + unknown {
        problems.push(format!(
            "{key}: final count {count}, but {acknowledged} INCRs were acknowledged and {unknown} more may \
             have happened"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finals(key: &str, value: Option<&str>) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([(key.to_string(), value.map(str::to_string))])
    }

    fn append(history: &mut History, process: i64, key: &str, token: &str) {
        history.invoke(process, key, Call::Append(token.into())).unwrap();
        history.complete_ok(process, None).unwrap();
    }

    fn set(history: &mut History, process: i64, key: &str, value: &str) {
        history.invoke(process, key, Call::Write(Some(value.into()))).unwrap();
        history.complete_ok(process, None).unwrap();
    }

    #[test]
    fn an_acknowledged_append_missing_from_the_final_value_is_lost() {
        let mut history = History::new();
        append(&mut history, 0, "r0-0", "A0.0 ");
        append(&mut history, 0, "r0-0", "A0.1 ");
        assert!(lost_writes(&history, &finals("r0-0", Some("A0.0 A0.1 "))).is_empty());
        let lost = lost_writes(&history, &finals("r0-0", Some("A0.1 ")));
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(lost[0].contains("APPEND \"A0.0 \""), "{lost:?}");
    }

    #[test]
    fn an_append_a_later_set_replaced_is_not_lost_but_a_token_twice_is_wrong() {
        let mut history = History::new();
        append(&mut history, 0, "r0-0", "A0.0 ");
        set(&mut history, 1, "r0-0", "S1.0 ");
        assert!(lost_writes(&history, &finals("r0-0", Some("S1.0 "))).is_empty());
        let twice = lost_writes(&history, &finals("r0-0", Some("S1.0 A0.0 A0.0 ")));
        assert!(twice.iter().any(|p| p.contains("appears twice")), "{twice:?}");
    }

    #[test]
    fn an_acknowledged_set_overwritten_by_one_that_finished_before_it_began_is_lost() {
        let mut history = History::new();
        set(&mut history, 0, "r0-0", "S0.0 ");
        set(&mut history, 1, "r0-0", "S1.0 ");
        assert!(lost_writes(&history, &finals("r0-0", Some("S1.0 "))).is_empty());
        let lost = lost_writes(&history, &finals("r0-0", Some("S0.0 ")));
        assert!(lost.iter().any(|p| p.contains("SET \"S1.0 \"")), "{lost:?}");
        // A SET whose outcome is unknown may take effect at any later moment: it can be the final one.
        history.invoke(2, "r0-0", Call::Write(Some("S2.0 ".into()))).unwrap();
        history.complete_info(2).unwrap();
        set(&mut history, 3, "r0-0", "S3.0 ");
        assert!(lost_writes(&history, &finals("r0-0", Some("S2.0 "))).is_empty());
    }

    #[test]
    fn a_counter_lies_between_its_acknowledged_incrs_and_those_plus_the_unknown_ones() {
        let mut history = History::new();
        for n in 1..=3 {
            history.invoke(0, "c2-0", Call::Incr).unwrap();
            history.complete_ok(0, Some(n.to_string())).unwrap();
        }
        history.invoke(1, "c2-0", Call::Incr).unwrap();
        history.complete_info(1).unwrap();
        for (count, ok) in [("2", false), ("3", true), ("4", true), ("5", false)] {
            let lost = lost_writes(&history, &finals("c2-0", Some(count)));
            assert_eq!(lost.is_empty(), ok, "final count {count}: {lost:?}");
        }
    }
}
