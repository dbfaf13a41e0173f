//! A memory budget per evaluation.
//!
//! The time limit alone does not bound memory: regorus checks the clock
//! between steps, not inside a builtin, and one builtin call can build a
//! value of any size. `numbers.range(1, 100000000)` reserves and fills
//! 2.4 GB in one call (7 s past a 500 ms limit); a chain of
//! `concat("", [s, s])` doubles a string each step (500 MiB in 25 steps).
//! Either gets a 256 MiB replica OOM-killed.
//!
//! regorus 0.14.1 has allocator-level limits (`allocator-memory-limits`),
//! which do stop both, but cannot be used by this crate as it stands: the
//! feature makes regorus install its own mimalloc as the global allocator,
//! and its `regorus-mimalloc-sys` declares `links = "mimalloc"` as the
//! binary's `mimalloc` crate does, so Cargo refuses the two in one build
//! even with the feature off (see `docs/POLICIES.md`, "Memory limit").
//!
//! So the builtins that can build a large value in one call are replaced
//! (regorus resolves extensions before builtins) by versions that first
//! charge the size of what they are about to build to the evaluation's
//! budget ([`Scope`]), and fail instead of building past it: an evaluation
//! over budget is an evaluation error, answered per `failureMode`. Each is
//! the builtin itself (same result, same undefined on a wrong type) with
//! that check in front: `numbers.range`, `numbers.range_step`, `concat`,
//! `replace`, `array.concat`, and the Go `sprintf` of [`super::compat`].
//! What an evaluation builds in its own loops (a comprehension) is bounded
//! by the time limit, at the interpreter's pace (about 100 MB in 500 ms in
//! the worst case measured).

use std::cell::Cell;

use regorus::Value;

/// The default budget of one evaluation (all policies of one request), in
/// bytes: `policies.memoryLimit`'s default.
pub const DEFAULT_MEMORY_LIMIT: u64 = crate::config::DEFAULT_POLICY_MEMORY_LIMIT;

/// What one element of an array costs: the value, and the number or
/// string it points to, roughly.
const ELEMENT_BYTES: u64 = 2 * std::mem::size_of::<Value>() as u64;

/// What a string of `len` bytes costs to build: it is built as a `String`,
/// then copied into the value's shared `str`, so both exist for a moment.
pub fn string_bytes(len: u64) -> u64 {
    len.saturating_mul(2)
}

thread_local! {
    /// `(limit, used)` of the evaluation running on this thread, if any.
    static BUDGET: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// The budget of the evaluation running on this thread, from [`Scope::new`]
/// until it is dropped. regorus evaluates on the calling thread, so every
/// guarded builtin an evaluation calls charges its own budget; outside a
/// scope (loading, warm-up) nothing is charged or refused.
pub struct Scope {
    previous: Option<(u64, u64)>,
}

impl Scope {
    pub fn new(limit: u64) -> Self {
        Self {
            previous: BUDGET.with(|b| b.replace(Some((limit, 0)))),
        }
    }

    /// What was charged so far.
    pub fn used(&self) -> u64 {
        BUDGET.with(|b| b.get().map_or(0, |(_, used)| used))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        BUDGET.with(|b| b.set(self.previous));
    }
}

/// The error of an evaluation over its budget, as regorus reports it (the
/// call's position, then this).
#[derive(Debug, thiserror::Error)]
#[error(
    "evaluation memory limit of {} exceeded: {builtin} would build {} (the evaluation's values so far: {})",
    mib(*limit),
    mib(*wanted),
    mib(*used)
)]
pub struct OverBudget {
    pub builtin: &'static str,
    pub limit: u64,
    pub wanted: u64,
    pub used: u64,
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Charges `bytes` about to be built by `builtin` to this thread's budget;
/// refuses past it (nothing is charged then). A string's cost is
/// [`string_bytes`].
pub fn charge(builtin: &'static str, bytes: u64) -> Result<(), OverBudget> {
    BUDGET.with(|b| match b.get() {
        Some((limit, used)) => {
            let total = used.saturating_add(bytes);
            if total > limit {
                Err(OverBudget {
                    builtin,
                    limit,
                    wanted: bytes,
                    used,
                })
            } else {
                b.set(Some((limit, total)));
                Ok(())
            }
        }
        None => Ok(()),
    })
}

/// Whether an evaluation error is this budget's.
pub fn is_over_budget(message: &str) -> bool {
    message.contains("evaluation memory limit of")
}

/// The message of an evaluation over budget, without regorus' position.
pub fn over_budget_message(message: &str) -> String {
    match message.find("evaluation memory limit of") {
        Some(i) => message[i..].lines().next().unwrap_or("").to_string(),
        None => message.to_string(),
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) if n.is_integer() => n.as_i64(),
        _ => None,
    }
}

/// `numbers.range(a, b)`: the integers from `a` to `b` inclusive, either
/// way; undefined when an operand is not an integer (non-strict).
fn range(args: Vec<Value>) -> anyhow::Result<Value> {
    let (Some(a), Some(b)) = (int(&args[0]), int(&args[1])) else {
        return Ok(Value::Undefined);
    };
    let n = a.abs_diff(b).saturating_add(1);
    charge("numbers.range", n.saturating_mul(ELEMENT_BYTES))?;
    let values: Vec<Value> = if a <= b {
        (a..=b).map(Value::from).collect()
    } else {
        (b..=a).rev().map(Value::from).collect()
    };
    Ok(Value::from(values))
}

/// `numbers.range_step(a, b, step)`: from `a` towards `b` by `step`
/// (positive), `b` included when reached; undefined when an operand is
/// not an integer or the step not positive (non-strict).
fn range_step(args: Vec<Value>) -> anyhow::Result<Value> {
    let (Some(a), Some(b), Some(step)) = (int(&args[0]), int(&args[1]), int(&args[2])) else {
        return Ok(Value::Undefined);
    };
    if step <= 0 {
        return Ok(Value::Undefined);
    }
    let n = (a.abs_diff(b) / step.unsigned_abs()).saturating_add(1);
    charge("numbers.range_step", n.saturating_mul(ELEMENT_BYTES))?;
    let values: Vec<Value> = if a <= b {
        (a..=b)
            .step_by(usize::try_from(step)?)
            .map(Value::from)
            .collect()
    } else {
        (b..=a)
            .rev()
            .step_by(usize::try_from(step)?)
            .map(Value::from)
            .collect()
    };
    Ok(Value::from(values))
}

/// The strings of an array or set, in order; `None` when it is neither, or
/// holds anything else.
fn strings(v: &Value) -> Option<Vec<&str>> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Set(s) => s.iter().collect(),
        _ => return None,
    };
    items
        .into_iter()
        .map(|i| match i {
            Value::String(s) => Some(s.as_ref()),
            _ => None,
        })
        .collect()
}

/// `concat(delimiter, collection)`.
fn concat(args: Vec<Value>) -> anyhow::Result<Value> {
    let (Value::String(delimiter), Some(parts)) = (&args[0], strings(&args[1])) else {
        return Ok(Value::Undefined);
    };
    let bytes = parts.iter().map(|p| p.len() as u64).sum::<u64>()
        + (delimiter.len() as u64).saturating_mul(parts.len().saturating_sub(1) as u64);
    charge("concat", string_bytes(bytes))?;
    Ok(Value::from(parts.join(delimiter)))
}

/// `replace(s, old, new)`: every `old` in `s` replaced by `new`.
fn replace(args: Vec<Value>) -> anyhow::Result<Value> {
    let (Value::String(s), Value::String(old), Value::String(new)) = (&args[0], &args[1], &args[2])
    else {
        return Ok(Value::Undefined);
    };
    // An empty `old` matches around every character.
    let matches = if old.is_empty() {
        s.chars().count() as u64 + 1
    } else {
        s.matches(old.as_ref()).count() as u64
    };
    let bytes = (s.len() as u64).saturating_add(matches.saturating_mul(new.len() as u64));
    charge("replace", string_bytes(bytes))?;
    Ok(Value::from(s.replace(old.as_ref(), new)))
}

/// `array.concat(a, b)`.
fn array_concat(args: Vec<Value>) -> anyhow::Result<Value> {
    let (Value::Array(a), Value::Array(b)) = (&args[0], &args[1]) else {
        return Ok(Value::Undefined);
    };
    let n = (a.len() + b.len()) as u64;
    charge("array.concat", n.saturating_mul(ELEMENT_BYTES))?;
    let mut out = Vec::with_capacity(a.len() + b.len());
    out.extend(a.iter().cloned());
    out.extend(b.iter().cloned());
    Ok(Value::from(out))
}

/// Registers the guarded builtins on `engine`.
pub fn install(engine: &mut regorus::Engine) {
    // Registering twice on one engine is the only failure; ours is fresh.
    let _ = engine.add_extension("numbers.range".into(), 2, Box::new(range));
    let _ = engine.add_extension("numbers.range_step".into(), 3, Box::new(range_step));
    let _ = engine.add_extension("concat".into(), 2, Box::new(concat));
    let _ = engine.add_extension("replace".into(), 3, Box::new(replace));
    let _ = engine.add_extension("array.concat".into(), 2, Box::new(array_concat));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guarded builtins answer what regorus' own answer, on every
    /// shape of argument, inside and outside a budget.
    #[test]
    fn guarded_builtins_answer_as_regorus_does() {
        let exprs = [
            "numbers.range(1, 5)",
            "numbers.range(5, 1)",
            "numbers.range(-2, 2)",
            "numbers.range(3, 3)",
            "numbers.range(1.5, 3)",
            "numbers.range(\"a\", 3)",
            "numbers.range_step(1, 10, 3)",
            "numbers.range_step(10, 1, 3)",
            "numbers.range_step(1, 9, 4)",
            "concat(\", \", [\"a\", \"b\", \"c\"])",
            "concat(\"-\", {\"b\", \"a\"})",
            "concat(\"\", [])",
            "concat(\"\", [\"a\", 1])",
            "concat(1, [\"a\"])",
            "concat(\"\", \"ab\")",
            "replace(\"aXbXc\", \"X\", \"--\")",
            "replace(\"abc\", \"\", \"-\")",
            "replace(\"abc\", \"z\", \"-\")",
            "replace(1, \"a\", \"b\")",
            "array.concat([1, 2], [3])",
            "array.concat([], [])",
            "array.concat([1], {2})",
        ];
        let answer = |e: &mut regorus::Engine, x: &str| {
            e.eval_query(format!("x := {x}"), false)
                .map(|r| format!("{:?}", r.result.first().map(|b| &b.bindings)))
                .unwrap_or_else(|err| format!("error {err}"))
        };
        let mut plain = regorus::Engine::new();
        plain.set_strict_builtin_errors(false);
        let mut guarded = regorus::Engine::new();
        guarded.set_strict_builtin_errors(false);
        install(&mut guarded);
        let _scope = Scope::new(DEFAULT_MEMORY_LIMIT);
        for x in exprs {
            assert_eq!(answer(&mut guarded, x), answer(&mut plain, x), "{x}");
        }
        // Where regorus' own panics (a zero or negative step divides by
        // zero or asks for a huge capacity), ours is undefined, as OPA's
        // non-strict error is.
        for x in [
            "numbers.range_step(1, 10, 0)",
            "numbers.range_step(1, 10, -1)",
            "numbers.range_step(1, 10, 1.5)",
        ] {
            assert_eq!(answer(&mut guarded, x), "None", "{x}");
        }
    }

    #[test]
    fn a_scope_charges_and_refuses() {
        assert!(charge("concat", u64::MAX).is_ok(), "no scope, no budget");
        let outer = Scope::new(100);
        assert!(charge("concat", 60).is_ok());
        {
            let inner = Scope::new(10);
            let err = charge("replace", 11).expect_err("over");
            assert_eq!(
                err.to_string(),
                "evaluation memory limit of 10 bytes exceeded: replace would build 11 bytes (the evaluation's values so far: 0 bytes)"
            );
            assert_eq!(inner.used(), 0);
        }
        assert_eq!(outer.used(), 60, "the outer scope is back");
        assert!(charge("concat", 41).is_err());
        drop(outer);
        assert!(charge("concat", u64::MAX).is_ok());
    }
}
