//! OPA's answer for `not` over an undefined operand.
//!
//! OPA's compiler (`rewriteDynamics`) moves the dynamic operands of each
//! expression (refs, calls, composites holding them) into assignments
//! before it, so in `not f(input.missing)` the assignment of
//! `input.missing` fails first and the body is undefined: the `not` never
//! runs. regorus evaluates the `not` as written, and a `not` of something
//! undefined is true. Checked against OPA 1.x (`scripts/opa-oracle.py`):
//!
//! | expression after `not`                 | OPA hoists                | `not` over undefined |
//! |----------------------------------------|---------------------------|----------------------|
//! | a ref: `input.missing`                 | only refs or calls inside brackets | true        |
//! | `a == b`, `a = b`                      | each side as a term, but a bare ref only by its brackets | true for refs |
//! | a call: `f(x)`, `startswith(x, "a")`   | each argument             | undefined            |
//! | an operator: `x > 0`, `x != 1`, `x in s` | each operand (a call)   | undefined            |
//!
//! where hoisting a term means: a ref, a call, a parenthesised expression
//! or a composite literal is hoisted whole; a scalar, a variable and a
//! comprehension (always defined) are not. We do the same on the source:
//! each hoisted operand `T` of a `not` gets `__oa_not_N := T;` before the
//! `not` (with the `not`'s `with` modifiers), on the same line, so a `not`
//! over an undefined operand leaves the body undefined, as in OPA. `T` is
//! evaluated twice; it is side-effect free.

use std::borrow::Cow;

use super::{Token, TokenKind, insert_all, tokens};

fn text<'a>(src: &'a str, t: &Token) -> &'a str {
    &src[t.start..t.end]
}

fn is_word(src: &str, t: &Token, w: &str) -> bool {
    t.kind == TokenKind::Word && text(src, t) == w
}

/// The binary operators and their precedence (OPA's parser: unification
/// lowest, then membership, comparison, `|`, `&`, `+ -`, `* / %`).
fn operator(src: &str, toks: &[Token], i: usize) -> Option<(usize, u8)> {
    let t = &toks[i];
    let next = toks.get(i + 1).filter(|n| t.touches(n));
    let next_is = |c: u8| next.is_some_and(|n| n.kind == TokenKind::Punct(c));
    match t.kind {
        TokenKind::Word if text(src, t) == "in" => Some((1, 1)),
        TokenKind::Punct(b'=') if next_is(b'=') => Some((2, 2)),
        TokenKind::Punct(b'!' | b'<' | b'>') if next_is(b'=') => Some((2, 2)),
        TokenKind::Punct(b'=') => Some((1, 0)),
        TokenKind::Punct(b'<' | b'>') => Some((1, 2)),
        TokenKind::Punct(b'|') => Some((1, 3)),
        TokenKind::Punct(b'&') => Some((1, 4)),
        TokenKind::Punct(b'+' | b'-') => Some((1, 5)),
        TokenKind::Punct(b'*' | b'/' | b'%') => Some((1, 6)),
        _ => None,
    }
}

/// An operator found at the top of an expression: where, how many tokens,
/// its precedence, and whether it is `==` or `=`.
struct Op {
    at: usize,
    len: usize,
    prec: u8,
    equality: bool,
}

/// The operators of `toks` at depth `base` (a `-` where an operand is
/// expected is a sign, not an operator).
fn operators(src: &str, toks: &[Token], base: usize) -> Vec<Op> {
    let mut out = Vec::new();
    let mut want_operand = true;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if t.depth == base
            && !want_operand
            && let Some((len, prec)) = operator(src, toks, i)
        {
            let equality = prec == 0 || (prec == 2 && text(src, t) == "=");
            out.push(Op {
                at: i,
                len,
                prec,
                equality,
            });
            want_operand = true;
            i += len;
            continue;
        }
        if t.depth == base {
            want_operand = false;
        }
        i += 1;
    }
    out
}

/// Whether `toks` (one term) is a literal that is always defined: a
/// number, string, `true`/`false`/`null`, a variable, or a comprehension.
fn always_defined(src: &str, toks: &[Token], base: usize) -> bool {
    let Some(first) = toks.first() else {
        return true;
    };
    let first = if first.kind == TokenKind::Punct(b'-') && toks.len() > 1 {
        &toks[1]
    } else {
        first
    };
    match first.kind {
        TokenKind::Str => toks.len() == 1,
        TokenKind::Word => {
            let w = text(src, first);
            if w.starts_with(|c: char| c.is_ascii_digit()) {
                return true; // a number, `1.5` being three tokens
            }
            toks.len() == 1 || (toks.len() == 2 && toks[0].kind == TokenKind::Punct(b'-'))
        }
        // A comprehension (`[x | ...]`, `{x | ...}`, `{k: v | ...}`), or a
        // composite of scalars only.
        TokenKind::Punct(b'[' | b'{') => {
            toks.iter()
                .any(|t| t.depth == base + 1 && t.kind == TokenKind::Punct(b'|'))
                || toks.iter().all(|t| {
                    t.kind != TokenKind::Word
                        || matches!(text(src, t), "true" | "false" | "null")
                        || text(src, t).starts_with(|c: char| c.is_ascii_digit())
                })
        }
        _ => false,
    }
}

/// The byte range of `toks`.
fn span(toks: &[Token]) -> Option<(usize, usize)> {
    Some((toks.first()?.start, toks.last()?.end))
}

/// OPA's `rewriteDynamicsOne`: a term that may be undefined is hoisted
/// whole; an expression with operators is a call, hoisted whole.
fn one(src: &str, toks: &[Token], base: usize, out: &mut Vec<(usize, usize)>) {
    if toks.is_empty() || always_defined(src, toks, base) && operators(src, toks, base).is_empty() {
        return;
    }
    out.extend(span(toks));
}

/// Whether `toks` is a call: a ref followed by one `(...)` that ends it.
fn call_args(toks: &[Token], base: usize) -> Option<&[Token]> {
    let open = toks
        .iter()
        .position(|t| t.depth == base && t.kind == TokenKind::Punct(b'('))?;
    let head_is_ref = open > 0
        && toks[..open]
            .iter()
            .all(|t| t.kind == TokenKind::Word || t.kind == TokenKind::Punct(b'.'));
    let last = toks.last()?;
    (head_is_ref && last.kind == TokenKind::Punct(b')') && last.depth == base + 1)
        .then(|| &toks[open + 1..toks.len() - 1])
}

/// Splits `toks` at the commas at depth `base`.
fn split_commas(toks: &[Token], base: usize) -> Vec<&[Token]> {
    toks.split(|t| t.depth == base && t.kind == TokenKind::Punct(b','))
        .filter(|a| !a.is_empty())
        .collect()
}

/// A bare ref (OPA's `rewriteDynamicsInTerm`): only what its brackets hold.
fn ref_brackets(src: &str, toks: &[Token], base: usize, out: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i < toks.len() {
        if toks[i].depth == base && toks[i].kind == TokenKind::Punct(b'[') {
            let close = toks[i + 1..]
                .iter()
                .position(|t| t.depth == base + 1 && t.kind == TokenKind::Punct(b']'))
                .map_or(toks.len(), |p| i + 1 + p);
            one(src, &toks[i + 1..close.min(toks.len())], base + 1, out);
            i = close + 1;
            continue;
        }
        i += 1;
    }
}

/// The operands OPA hoists out of the expression `toks` (after a `not`).
fn hoisted(src: &str, toks: &[Token], base: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let ops = operators(src, toks, base);
    // The operator that splits the expression: the lowest, the last of
    // equals (left associative).
    let lowest = ops.iter().map(|o| o.prec).min().unwrap_or(0);
    let Some(split) = ops.iter().rev().find(|o| o.prec == lowest) else {
        match call_args(toks, base) {
            Some(args) => {
                for arg in split_commas(args, base + 1) {
                    one(src, arg, base + 1, &mut out);
                }
            }
            None => ref_brackets(src, toks, base, &mut out),
        }
        return out;
    };
    for side in [&toks[..split.at], &toks[split.at + split.len..]] {
        let is_ref = operators(src, side, base).is_empty()
            && call_args(side, base).is_none()
            && side.first().is_some_and(|t| t.kind == TokenKind::Word)
            && !always_defined(src, side, base);
        if split.equality && is_ref {
            ref_brackets(src, side, base, &mut out);
        } else {
            one(src, side, base, &mut out);
        }
    }
    out
}

/// Where the expression starting at `toks[from]` ends (exclusive), at
/// depth `base`: a `;`, the enclosing closer, or a new line.
fn expr_end(src: &str, toks: &[Token], from: usize, base: usize) -> usize {
    let mut k = from;
    while k < toks.len() {
        let t = &toks[k];
        if t.depth < base {
            break;
        }
        if t.depth == base {
            if matches!(t.kind, TokenKind::Punct(b';' | b'}' | b']' | b')')) {
                break;
            }
            if k > from && src[toks[k - 1].end..t.start].contains('\n') {
                break;
            }
        }
        k += 1;
    }
    k
}

/// Inserts OPA's hoisted assignments before each `not` whose operands may
/// be undefined. Touches nothing when there is no such `not`.
pub fn hoist_not_operands(src: &str) -> Cow<'_, str> {
    let toks = tokens(src);
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut n = 0usize;
    for (i, t) in toks.iter().enumerate() {
        if !is_word(src, t, "not") {
            continue;
        }
        // `not` begins an expression: after a body's `{`, a `;`, a
        // comprehension's `|`, a v1 `if`, or at the start of a line.
        let after_if = i > 0 && is_word(src, &toks[i - 1], "if");
        let starts = i == 0
            || after_if
            || matches!(toks[i - 1].kind, TokenKind::Punct(b'{' | b';' | b'|'))
            || src[toks[i - 1].end..t.start].contains('\n');
        if !starts || (i > 0 && toks[i - 1].kind == TokenKind::Punct(b'.')) {
            continue;
        }
        let end = expr_end(src, &toks, i + 1, t.depth);
        let expr = &toks[i + 1..end];
        let with_at = expr
            .iter()
            .position(|x| x.depth == t.depth && is_word(src, x, "with"))
            .unwrap_or(expr.len());
        let operands = hoisted(src, &expr[..with_at], t.depth);
        if operands.is_empty() {
            continue;
        }
        let with = span(&expr[with_at..])
            .map(|(a, b)| format!(" {}", &src[a..b]))
            .unwrap_or_default();
        let mut guard = String::new();
        if after_if {
            // `p if not f(x)`: a one-expression body becomes a block.
            guard.push_str("{ ");
        }
        for (a, b) in operands {
            n += 1;
            guard.push_str(&format!("__oa_not_{n} := {}{with}; ", &src[a..b]));
        }
        inserts.push((t.start, guard));
        if after_if && let Some(last) = expr.last() {
            inserts.push((last.end, " }".into()));
        }
    }
    insert_all(src, inserts)
}

#[cfg(test)]
mod tests {
    use super::hoist_not_operands;

    /// The rewrite itself, one named row per shape of the table above; what
    /// the rewritten policies answer is in `tests/opa_differences.rs`.
    #[rstest::rstest]
    #[case::bare_ref("x { not input.a.b }", "x { not input.a.b }")]
    #[case::ref_with_dynamic_key(
        "x { not input.a[input.k] }",
        "x { __oa_not_1 := input.k; not input.a[input.k] }"
    )]
    #[case::ref_with_literal_key("x { not input.a[0] == 1 }", "x { not input.a[0] == 1 }")]
    #[case::equality_of_refs("x { not input.a == input.b }", "x { not input.a == input.b }")]
    #[case::equality_over_a_call(
        "x { not count(input.a) == 0 }",
        "x { __oa_not_1 := count(input.a); not count(input.a) == 0 }"
    )]
    #[case::builtin_arguments(
        "x { not startswith(input.a, \"x\") }",
        "x { __oa_not_1 := input.a; not startswith(input.a, \"x\") }"
    )]
    #[case::user_function_arguments(
        "x { not accept(rule, 1000, params.ranges) }",
        "x { __oa_not_1 := params.ranges; not accept(rule, 1000, params.ranges) }"
    )]
    #[case::comparison(
        "x { not input.a > 0 }",
        "x { __oa_not_1 := input.a; not input.a > 0 }"
    )]
    #[case::arithmetic_operand(
        "x { not input.a + input.b > 0 }",
        "x { __oa_not_1 := input.a + input.b; not input.a + input.b > 0 }"
    )]
    #[case::membership(
        "x { not input.a in [1, 2] }",
        "x { __oa_not_1 := input.a; not input.a in [1, 2] }"
    )]
    #[case::comprehension_is_defined(
        "x { not f([y | y := input.a[_]]) }",
        "x { not f([y | y := input.a[_]]) }"
    )]
    #[case::negative_number("x { not f(-1, y) }", "x { not f(-1, y) }")]
    #[case::with_modifier(
        "x { not f(input.a) with input as {} }",
        "x { __oa_not_1 := input.a with input as {}; not f(input.a) with input as {} }"
    )]
    #[case::v1_one_expression_body(
        "x if not f(input.a)\ny := 1",
        "x if { __oa_not_1 := input.a; not f(input.a) }\ny := 1"
    )]
    #[case::one_line_per_expression(
        "x {\n  not f(input.a)\n  input.b\n}",
        "x {\n  __oa_not_1 := input.a; not f(input.a)\n  input.b\n}"
    )]
    #[case::in_a_comprehension_body(
        "x := [y | y := input.a[_]; not f(y.b)]",
        "x := [y | y := input.a[_]; __oa_not_1 := y.b; not f(y.b)]"
    )]
    #[case::not_in_a_string_or_comment(
        "x { msg := \"not f(input.a)\" } # not f(input.a)",
        "x { msg := \"not f(input.a)\" } # not f(input.a)"
    )]
    fn hoists_as_opa_does(#[case] src: &str, #[case] want: &str) {
        assert_eq!(hoist_not_operands(src), want);
    }
}
