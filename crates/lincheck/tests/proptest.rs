//! Property tests.
//!
//! 1. Histories made by running random operations against a real sequential register, each given a
//!    random interval around the moment it took effect, are always linearizable; changing one read to a
//!    value nobody wrote makes them not linearizable.
//! 2. On small random histories (mostly wrong ones, with `:info` and `:fail` ops), the checker agrees
//!    with a brute-force search over every order, so its pruning never changes a verdict.

use lincheck::model::step;
use lincheck::{check, Call, History, Options, Outcome, Value, Verdict};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Planned {
    Read,
    Write(&'static str),
    Append(&'static str),
    Cas(Option<&'static str>, &'static str),
    Incr,
}

fn planned() -> impl Strategy<Value = Planned> {
    let word = prop::sample::select(vec!["a", "b", "1", "2"]);
    prop_oneof![
        3 => Just(Planned::Read),
        2 => word.clone().prop_map(Planned::Write),
        2 => prop::sample::select(vec!["x", "y"]).prop_map(Planned::Append),
        1 => (prop::option::of(word.clone()), word).prop_map(|(e, n)| Planned::Cas(e, n)),
        1 => Just(Planned::Incr),
    ]
}

fn call_of(planned: &Planned) -> Call {
    match planned {
        Planned::Read => Call::Read,
        Planned::Write(v) => Call::Write(Some(v.to_string())),
        Planned::Append(v) => Call::Append(v.to_string()),
        Planned::Cas(e, n) => Call::Cas { expected: e.map(str::to_string), new: Some(n.to_string()) },
        Planned::Incr => Call::Incr,
    }
}

/// How an op's client learned (or did not learn) its outcome.
#[derive(Clone, Copy, Debug)]
enum Report {
    Told,
    TimedOut,
    NeverCompleted,
}

fn report() -> impl Strategy<Value = Report> {
    prop_oneof![6 => Just(Report::Told), 1 => Just(Report::TimedOut), 1 => Just(Report::NeverCompleted)]
}

/// One op: what it does, how far before its effect it was invoked and after it completed, how it was
/// reported, and whether it took effect at all when its client did not learn the outcome.
type PlannedOp = (Planned, u32, u32, Report, bool);

fn planned_ops(max: usize) -> impl Strategy<Value = Vec<PlannedOp>> {
    prop::collection::vec((planned(), 0..40u32, 0..40u32, report(), any::<bool>()), 1..max)
}

/// Runs the plan against a sequential register (op `i` takes effect at time `10 * i`, if at all) and
/// records the history each client would have seen. Returns the history and the ids of its `:ok` reads.
fn run(plan: &[PlannedOp]) -> (History, Vec<usize>) {
    let mut value: Value = None;
    // (time, is completion, op index, outcome)
    let mut events: Vec<(u64, bool, usize, Option<Outcome>)> = Vec::new();
    for (i, (op, before, after, report, happens_if_unknown)) in plan.iter().enumerate() {
        let effect_at = 10 * i as u64 + 100;
        let call = call_of(op);
        let takes_effect = matches!(report, Report::Told) || *happens_if_unknown;
        let outcome = if takes_effect {
            match step(&value, &call, None) {
                Some(after) => {
                    let told = match call {
                        Call::Read | Call::Incr => after.clone(),
                        _ => None,
                    };
                    value = after;
                    Outcome::Ok(told)
                }
                None => Outcome::Fail, // a cas that did not match, an incr of a non-integer
            }
        } else {
            Outcome::Fail
        };
        let outcome = match report {
            Report::Told => outcome,
            // Indeterminate whether or not it happened, and however it would have ended.
            Report::TimedOut | Report::NeverCompleted => Outcome::Info,
        };
        events.push((effect_at - u64::from(*before), false, i, None));
        if !matches!(report, Report::NeverCompleted) {
            events.push((effect_at + u64::from(*after), true, i, Some(outcome)));
        }
    }
    events.sort_by_key(|&(time, is_completion, i, _)| (time, is_completion, i));
    let mut history = History::new();
    let mut reads = Vec::new();
    for (_, _, i, outcome) in events {
        let process = i as i64; // one process per op: intervals of one process never overlap
        match outcome {
            None => {
                history.invoke(process, "k", call_of(&plan[i].0)).unwrap();
            }
            Some(Outcome::Ok(v)) => {
                let id = history.complete_ok(process, v).unwrap();
                if matches!(plan[i].0, Planned::Read) {
                    reads.push(id);
                }
            }
            Some(Outcome::Fail) => {
                history.complete_fail(process).unwrap();
            }
            Some(Outcome::Info) => {
                history.complete_info(process).unwrap();
            }
        }
    }
    (history, reads)
}

/// Rebuilds `history` with the result of op `target` replaced by `value`.
fn with_result(history: &History, target: usize, value: Value) -> History {
    let ops = history.ops();
    let mut events: Vec<(u64, usize, bool)> = Vec::new();
    for (id, op) in ops.iter().enumerate() {
        events.push((op.invoked_at, id, false));
        if let Some(at) = op.completed_at {
            events.push((at, id, true));
        }
    }
    events.sort_unstable();
    let mut out = History::new();
    for (_, id, is_completion) in events {
        let op = &ops[id];
        if !is_completion {
            out.invoke(op.process, op.key.clone(), op.call.clone()).unwrap();
            continue;
        }
        match &op.outcome {
            Outcome::Ok(_) if id == target => out.complete_ok(op.process, value.clone()),
            Outcome::Ok(v) => out.complete_ok(op.process, v.clone()),
            Outcome::Fail => out.complete_fail(op.process),
            Outcome::Info => out.complete_info(op.process),
        }
        .unwrap();
    }
    out
}

/// Every order of every subset of the indeterminate ops, plus all completed ones, that respects real
/// time: is one of them a legal run of the register?
fn brute_force(history: &History, initial: &Value) -> bool {
    let ops: Vec<_> = history.ops().iter().filter(|op| op.outcome != Outcome::Fail).collect();
    let returns_at = |i: usize| match ops[i].outcome {
        Outcome::Ok(_) => ops[i].completed_at.unwrap_or(u64::MAX),
        _ => u64::MAX,
    };
    fn search(
        ops: &[&lincheck::Op],
        returns_at: &dyn Fn(usize) -> u64,
        done: &mut Vec<bool>,
        value: &Value,
    ) -> bool {
        let pending: Vec<usize> = (0..ops.len()).filter(|&i| !done[i]).collect();
        if pending.iter().all(|&i| !matches!(ops[i].outcome, Outcome::Ok(_))) {
            return true;
        }
        let barrier = pending.iter().map(|&i| returns_at(i)).min().unwrap_or(u64::MAX);
        for &i in &pending {
            if ops[i].invoked_at > barrier {
                continue;
            }
            let result = match &ops[i].outcome {
                Outcome::Ok(v) => Some(v),
                _ => None,
            };
            if let Some(after) = step(value, &ops[i].call, result) {
                done[i] = true;
                let found = search(ops, returns_at, done, &after);
                done[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    search(&ops, &returns_at, &mut vec![false; ops.len()], initial)
}

/// A small random history: op intervals drawn at random, results drawn at random (mostly wrong).
fn random_history() -> impl Strategy<Value = History> {
    let result = prop::option::of(prop::sample::select(vec!["a", "b", "1", "2", "x", "xy", "yx", "ax"]));
    let op =
        (planned(), 0..20u64, 1..20u64, prop_oneof![5 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)], result);
    prop::collection::vec(op, 1..9).prop_map(|ops| {
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, (_, start, length, _, _)) in ops.iter().enumerate() {
            events.push((*start, false, i));
            events.push((start + length, true, i));
        }
        events.sort_unstable();
        let mut history = History::new();
        for (_, is_completion, i) in events {
            let (planned, _, _, outcome, result) = &ops[i];
            let process = i as i64;
            if !is_completion {
                history.invoke(process, "k", call_of(planned)).unwrap();
            } else {
                match outcome {
                    0 => history.complete_ok(process, result.map(str::to_string)),
                    1 => history.complete_info(process),
                    _ => history.complete_fail(process),
                }
                .unwrap();
            }
        }
        history
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn histories_of_a_real_register_are_linearizable(plan in planned_ops(40)) {
        let (history, _) = run(&plan);
        prop_assert_eq!(check(&history, &Options::default()).verdict, Verdict::Linearizable);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught(plan in planned_ops(40), pick in any::<prop::sample::Index>()) {
        let (history, reads) = run(&plan);
        if reads.is_empty() {
            return Ok(());
        }
        let target = reads[pick.index(reads.len())];
        let mutated = with_result(&history, target, Some("never written".into()));
        let verdict = check(&mutated, &Options::default()).verdict;
        match verdict {
            Verdict::NotLinearizable(violation) => prop_assert!(
                violation.stuck.contains(&target) || !violation.linearized.is_empty(),
                "{:?}", violation
            ),
            other => prop_assert!(false, "expected a violation, got {:?}", other),
        }
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories(
        history in random_history(),
        initial in prop::option::of(prop::sample::select(vec!["", "a", "1"])),
    ) {
        let initial = initial.map(str::to_string);
        let expected = brute_force(&history, &initial);
        let verdict = check(&history, &Options { initial, ..Options::default() }).verdict;
        prop_assert_eq!(verdict == Verdict::Linearizable, expected, "{:?} for {:#?}", verdict, history.ops());
    }
}

/// Bytes that look like history lines: EDN punctuation, keywords and fragments, plus arbitrary bytes.
fn edn_noise() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            "(",
            ")",
            "#{",
            "#_",
            "#inst",
            "\"",
            "\\",
            "\\u00e9",
            "\\u12",
            ":",
            ",",
            " ",
            ";",
            ":process",
            ":type",
            ":invoke",
            ":ok",
            ":info",
            ":fail",
            ":f",
            ":cas",
            ":read",
            ":incr",
            ":key",
            ":value",
            "nil",
            "0",
            "-12",
            "99999999999999999999",
            "1.5",
            "\"k\"",
            "N",
            "\n",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// A cheap stand-in for the fuzz target of issue 8: the reader never panics, whatever the input.
    #[test]
    fn the_reader_never_panics(input in edn_noise()) {
        let _ = lincheck::parse_line(&input);
        if let Ok(read) = lincheck::read_history(input.as_slice()) {
            let _ = check(&read.history, &Options { initial: None, budget: 1000 });
        }
    }
}
