//! The sequential specification of one key: a register of strings that also appends, increments and
//! compares-and-sets. The search only asks one question of it: from this value, can this operation, with
//! this outcome, happen, and what is the value after it?

use crate::history::{Call, Value};

/// Applies `call` to `value` as a single-threaded store would. Returns the new value, or `None` when the
/// call could not have succeeded from `value` (a cas whose expected value differs, an incr of a value that
/// is not an integer). `result` is what an `:ok` completion reported, `None` for an `:info` operation;
/// when it contradicts the call (a read of another value, an incr that returned another integer) the step
/// is impossible too.
pub fn step(value: &Value, call: &Call, result: Option<&Value>) -> Option<Value> {
    match call {
        Call::Read => match result {
            Some(seen) if seen != value => None,
            _ => Some(value.clone()),
        },
        Call::Write(new) => Some(new.clone()),
        Call::Append(suffix) => {
            let mut out = value.clone().unwrap_or_default();
            out.push_str(suffix);
            Some(Some(out))
        }
        Call::Cas { expected, new } => (value == expected).then(|| new.clone()),
        Call::Incr => {
            let now = match value {
                None => 0,
                Some(text) => parse_canonical_i64(text)?,
            };
            let next = Some(now.checked_add(1)?.to_string());
            match result {
                Some(Some(told)) if *told != next.as_deref().unwrap_or_default() => None,
                _ => Some(next),
            }
        }
    }
}

/// Parses an integer the way Redis's INCR does: optional `-`, then decimal digits with no leading zero,
/// within `i64`. Anything else (`"05"`, `"+1"`, `" 1"`, `""`) is not an integer.
pub fn parse_canonical_i64(text: &str) -> Option<i64> {
    let parsed: i64 = text.parse().ok()?;
    (parsed.to_string() == text).then_some(parsed)
}

/// The canonical decimal text of an integer written in decimal with an optional sign: `+007` is `7`,
/// `-0` is `0`. Returns `None` when `text` is not such an integer. Works for integers of any length, so
/// an EDN integer and its decimal string compare equal however large it is.
pub fn canonical_integer(text: &str) -> Option<String> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return Some("0".to_string());
    }
    Some(if negative { format!("-{trimmed}") } else { trimmed.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Some(text.to_string())
    }

    #[test]
    fn read_must_see_the_value() {
        assert_eq!(step(&s("a"), &Call::Read, Some(&s("a"))), Some(s("a")));
        assert_eq!(step(&s("a"), &Call::Read, Some(&s("b"))), None);
        assert_eq!(step(&None, &Call::Read, Some(&s(""))), None, "nil differs from the empty string");
    }

    #[test]
    fn append_to_absent_key_starts_from_empty() {
        assert_eq!(step(&None, &Call::Append("x".into()), None), Some(s("x")));
        assert_eq!(step(&s("x"), &Call::Append("y".into()), None), Some(s("xy")));
    }

    #[test]
    fn cas_with_nil_expected_matches_only_absent() {
        let cas = Call::Cas { expected: None, new: s("1") };
        assert_eq!(step(&None, &cas, None), Some(s("1")));
        assert_eq!(step(&s(""), &cas, None), None);
    }

    #[test]
    fn incr_is_redis_like() {
        assert_eq!(step(&None, &Call::Incr, Some(&s("1"))), Some(s("1")));
        assert_eq!(step(&s("41"), &Call::Incr, Some(&s("42"))), Some(s("42")));
        assert_eq!(step(&s("41"), &Call::Incr, Some(&s("41"))), None);
        assert_eq!(step(&s("041"), &Call::Incr, None), None);
        assert_eq!(step(&s("x"), &Call::Incr, None), None);
        assert_eq!(step(&s(&i64::MAX.to_string()), &Call::Incr, None), None);
        assert_eq!(step(&s("-1"), &Call::Incr, None), Some(s("0")));
    }

    #[test]
    fn canonical_integers() {
        assert_eq!(canonical_integer("+007").as_deref(), Some("7"));
        assert_eq!(canonical_integer("-0").as_deref(), Some("0"));
        assert_eq!(canonical_integer("-12").as_deref(), Some("-12"));
        assert_eq!(
            canonical_integer("123456789012345678901234567890").as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(canonical_integer("1.5"), None);
        assert_eq!(canonical_integer("-"), None);
        assert_eq!(canonical_integer(""), None);
    }
}
