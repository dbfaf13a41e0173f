//! Making regorus answer as OPA does where they differ (pinned by
//! `tests/opa_differences.rs`, described in `docs/POLICIES.md`).
//!
//! - [`separate_paren_lines`]: OPA starts a new expression at a line that
//!   begins with `(`; regorus reads it as a call of the previous line's term.
//!   We end the previous line with `;`, which both read as a separator.
//! - [`split_multi_body`]: OPA v0 reads `head { a } { b }` as two definitions
//!   of `head`; regorus rejects it for set rules ("else cannot be used with
//!   set rules") and reads it as `else` for others. We repeat the head before
//!   each extra body, on the same line so error positions do not move.
//! - [`go_sprintf_str`]: OPA's `sprintf` is Go's `fmt.Sprintf` and never fails
//!   (`%!s(MISSING)`, `%!d(string=x)`, `%!(EXTRA ...)`); regorus' raises, which
//!   non-strict mode turns into undefined, so a `deny` with a sloppy message
//!   would silently not fire. We register a Go-compatible `sprintf` extension,
//!   which regorus resolves before its builtin.
//!
//! - [`hoist_not_operands`]: OPA moves a `not`'s dynamic operands out of
//!   it, so `not f(input.missing)` is undefined, not true (`not_operands`).
//!
//! The source rewrites are lexical: they skip strings, raw strings and
//! comments, and touch nothing when the pattern is absent. `tokens` gives
//! the same scan as tokens, for other rewrites (Gatekeeper's package
//! renaming in [`super::gatekeeper`]).

use std::borrow::Cow;

mod not_operands;
pub use not_operands::hoist_not_operands;

/// Lexical scan of Rego source: calls `f(index, byte, depth_stack)` for each
/// byte outside strings and comments.
fn scan(src: &str, mut f: impl FnMut(usize, u8, &[u8])) {
    lex(src, |_, i, c, stack| f(i, c, stack));
}

/// [`scan`], also telling where a string starts: calls `f(start, index,
/// byte, depth_stack)`, where `start == index` except for a string, which is
/// reported once with its opening quote's index as `start`.
fn lex(src: &str, mut f: impl FnMut(usize, usize, u8, &[u8])) {
    let b = src.as_bytes();
    let mut stack: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            q @ (b'"' | b'`') => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != q && !(q == b'"' && b[i] == b'\n') {
                    if q == b'"' && b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                // Reported once, at the closing quote: a string is a term.
                if i < b.len() {
                    f(start, i, q, &stack);
                }
                i += 1;
                continue;
            }
            c => {
                f(i, i, c, &stack);
                match c {
                    b'{' | b'[' | b'(' => stack.push(c),
                    b'}' | b']' | b')' => {
                        stack.pop();
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
}

/// What a [`Token`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A run of ASCII letters, digits and `_`: a name, keyword or number.
    Word,
    /// A string or raw string, quotes included.
    Str,
    /// Any other byte: `.`, `[`, `{`, `:=`'s two bytes one by one, ...
    Punct(u8),
}

/// One token of Rego source, as [`scan`] sees it: comments and whitespace
/// are not tokens, and nothing inside a string or a comment is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    /// Byte range in the source.
    pub start: usize,
    pub end: usize,
    /// Open brackets around it (`{`, `[`, `(`); 0 at the top level.
    pub depth: usize,
}

impl Token {
    /// Whether `next` starts right where this one ends.
    pub fn touches(&self, next: &Token) -> bool {
        self.end == next.start
    }
}

/// The tokens of Rego source, in order.
pub(crate) fn tokens(src: &str) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    lex(src, |start, i, c, stack| {
        let depth = stack.len();
        let kind = match c {
            b'"' | b'`' => TokenKind::Str,
            c if c.is_ascii_whitespace() => return,
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                if let Some(last) = out.last_mut()
                    && last.kind == TokenKind::Word
                    && last.end == i
                {
                    last.end = i + 1;
                    return;
                }
                TokenKind::Word
            }
            c => TokenKind::Punct(c),
        };
        out.push(Token {
            kind,
            start,
            end: i + 1,
            depth,
        });
    });
    out
}

fn insert_all(src: &str, mut inserts: Vec<(usize, String)>) -> Cow<'_, str> {
    if inserts.is_empty() {
        return Cow::Borrowed(src);
    }
    inserts.sort_by_key(|(i, _)| *i);
    let mut out = String::with_capacity(src.len() + 64);
    let mut last = 0;
    for (i, s) in inserts {
        out.push_str(&src[last..i]);
        out.push_str(&s);
        last = i;
    }
    out.push_str(&src[last..]);
    Cow::Owned(out)
}

/// Ends the line before a line starting with `(` with `;` when that `(` is
/// inside a body (innermost bracket `{`) and the previous line ends a term.
pub fn separate_paren_lines(src: &str) -> Cow<'_, str> {
    let mut inserts = Vec::new();
    // Position just after the last significant byte, and that byte.
    let mut last: Option<(usize, u8)> = None;
    let mut newline_since_last = false;
    scan(src, |i, c, stack| {
        if c == b'\n' {
            newline_since_last = true;
            return;
        }
        if c.is_ascii_whitespace() {
            return;
        }
        if c == b'('
            && newline_since_last
            && stack.last() == Some(&b'{')
            && let Some((end, prev)) = last
            && (prev.is_ascii_alphanumeric()
                || matches!(prev, b'_' | b')' | b']' | b'}' | b'"' | b'`'))
        {
            inserts.push((end, ";".to_string()));
        }
        newline_since_last = false;
        last = Some((i + 1, c));
    });
    insert_all(src, inserts)
}

/// Repeats a v0 rule head before each extra body: `h { a } { b }` becomes
/// `h { a } h { b }`.
pub fn split_multi_body(src: &str) -> Cow<'_, str> {
    let mut inserts = Vec::new();
    let mut line_start = true;
    let mut head_start = 0usize;
    // Whether the open top-level `{` is a rule body (vs a value literal).
    let mut body_open = false;
    let mut head: Option<String> = None;
    let mut after_body = false;
    scan(src, |i, c, stack| {
        if c == b'\n' {
            if stack.is_empty() {
                line_start = true;
            }
            return;
        }
        if c.is_ascii_whitespace() {
            return;
        }
        if stack.is_empty() {
            if c == b'{' {
                if after_body && let Some(h) = &head {
                    inserts.push((i, format!("{h} ")));
                    body_open = true;
                } else {
                    let before = src[head_start..i].trim_end();
                    body_open = !(before.ends_with('=') || before.is_empty());
                    head =
                        (body_open && !before.contains("else") && !before.starts_with("default"))
                            .then(|| before.to_string());
                }
                after_body = false;
                line_start = false;
                return;
            }
            after_body = false;
            if line_start {
                head_start = i;
                head = None;
            }
            line_start = false;
        } else if c == b'}' && stack.len() == 1 {
            after_body = body_open;
            body_open = false;
        }
    });
    insert_all(src, inserts)
}

/// Rewrites applied to every module before regorus parses it.
pub fn preprocess(src: &str, v0: bool) -> String {
    let s = separate_paren_lines(src);
    let s = if v0 { split_multi_body(&s) } else { s };
    hoist_not_operands(&s).into_owned()
}

// === sprintf ===

/// An argument as OPA hands it to Go: int, float64, or string (composite
/// values in their Rego text form).
enum GoArg {
    Int(i64),
    Big(String),
    Float(f64),
    Str(String),
}

impl GoArg {
    fn from(v: &regorus::Value) -> Self {
        match v {
            regorus::Value::Number(n) => {
                if let Some(i) = n.as_i64().filter(|_| n.is_integer()) {
                    GoArg::Int(i)
                } else if n.is_integer() {
                    GoArg::Big(n.format_decimal())
                } else {
                    GoArg::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            regorus::Value::String(s) => GoArg::Str(s.to_string()),
            other => GoArg::Str(rego_text(other)),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            GoArg::Int(_) => "int64", // OPA 1.x passes integers as int64
            GoArg::Big(_) => "*big.Int",
            GoArg::Float(_) => "float64",
            GoArg::Str(_) => "string",
        }
    }

    fn plain(&self) -> String {
        match self {
            GoArg::Int(i) => i.to_string(),
            GoArg::Big(s) | GoArg::Str(s) => s.clone(),
            GoArg::Float(f) => go_float_v(*f),
        }
    }
}

/// Rego's text form of a value (as OPA's `ast.Term.String()`).
fn rego_text(v: &regorus::Value) -> String {
    use regorus::Value as V;
    match v {
        V::Null => "null".into(),
        V::Bool(b) => b.to_string(),
        V::Number(n) => n.format_decimal(),
        V::String(s) => serde_json::to_string(s.as_ref()).unwrap_or_else(|_| s.to_string()),
        V::Array(a) => format!(
            "[{}]",
            a.iter().map(rego_text).collect::<Vec<_>>().join(", ")
        ),
        V::Set(s) if s.is_empty() => "set()".into(),
        V::Set(s) => format!(
            "{{{}}}",
            s.iter().map(rego_text).collect::<Vec<_>>().join(", ")
        ),
        V::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", rego_text(k), rego_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        V::Undefined => "undefined".into(),
    }
}

/// Go's `%v` of a float64: shortest representation, exponent form outside
/// [1e-4, 1e21).
fn go_float_v(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        go_exp(&format!("{f:e}"))
    } else {
        format!("{f}")
    }
}

/// Rust `1.5e-7` → Go `1.5e-07`.
fn go_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s.to_string(),
    }
}

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

fn pad(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(w) = spec.width else { return s };
    let len = s.chars().count();
    if len >= w {
        return s;
    }
    let fill = w - len;
    if spec.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if spec.zero && numeric {
        let (sign, digits) = match s.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", s.as_str()),
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

fn bad_verb(verb: char, a: &GoArg) -> String {
    format!("%!{verb}({}={})", a.type_name(), a.plain())
}

fn format_one(verb: char, spec: &Spec, a: &GoArg) -> String {
    let signed = |s: String| {
        if spec.plus && !s.starts_with('-') {
            format!("+{s}")
        } else {
            s
        }
    };
    let out = match (verb, a) {
        ('v', _) => signed(a.plain()),
        ('s', GoArg::Str(s)) => match spec.precision {
            Some(p) => s.chars().take(p).collect(),
            None => s.clone(),
        },
        ('q', GoArg::Str(s)) => serde_json::to_string(s).unwrap_or_else(|_| s.clone()),
        ('d', GoArg::Int(i)) => signed(i.to_string()),
        // `*big.Int` formats itself: `s` and `v` as `d`; an unknown verb
        // is `%!f(big.Int=...)`, without the pointer's star.
        ('d' | 's', GoArg::Big(s)) => signed(s.clone()),
        (_, GoArg::Big(s)) if !matches!(verb, 'b' | 'o' | 'O' | 'x' | 'X') => {
            return format!("%!{verb}(big.Int={s})");
        }
        ('x', GoArg::Int(i)) => format!("{}{:x}", if *i < 0 { "-" } else { "" }, i.unsigned_abs()),
        ('X', GoArg::Int(i)) => format!("{}{:X}", if *i < 0 { "-" } else { "" }, i.unsigned_abs()),
        ('o', GoArg::Int(i)) => format!("{}{:o}", if *i < 0 { "-" } else { "" }, i.unsigned_abs()),
        ('b', GoArg::Int(i)) => format!("{}{:b}", if *i < 0 { "-" } else { "" }, i.unsigned_abs()),
        ('x', GoArg::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
        ('X', GoArg::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
        ('c', GoArg::Int(i)) => u32::try_from(*i)
            .ok()
            .and_then(char::from_u32)
            .unwrap_or('\u{FFFD}')
            .to_string(),
        ('f' | 'F', GoArg::Float(f)) => signed(format!("{:.*}", spec.precision.unwrap_or(6), f)),
        ('f' | 'F', GoArg::Int(i)) => bad_verb(verb, &GoArg::Int(*i)),
        ('e', GoArg::Float(f)) => {
            signed(go_exp(&format!("{:.*e}", spec.precision.unwrap_or(6), f)))
        }
        ('g', GoArg::Float(f)) => signed(match spec.precision {
            Some(p) => format!("{:.*}", p, f),
            None => go_float_v(*f),
        }),
        ('t', GoArg::Str(s)) if s == "true" || s == "false" => s.clone(),
        _ => return bad_verb(verb, a),
    };
    let numeric = matches!(a, GoArg::Int(_) | GoArg::Big(_) | GoArg::Float(_));
    pad(out, spec, numeric)
}

/// Go's `tooLarge`: the bound on a width or precision.
const GO_MAX_WIDTH: i64 = 1_000_000;

/// A width or precision as Go's `parsenum` reads it.
enum GoNum {
    Absent,
    Num(usize),
    /// Go gives up on the whole rest of the format (`%!(NOVERB)`).
    Overflow,
}

/// Go's `parsenum`: digits are read while the number so far is not over
/// 10^6, so the largest width read is 10,000,009; a longer number is an
/// overflow and Go stops formatting there. Never saturates or allocates.
fn parse_num(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> GoNum {
    let mut n: Option<i64> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        let so_far = n.unwrap_or(0);
        if so_far > GO_MAX_WIDTH {
            return GoNum::Overflow;
        }
        n = Some(so_far * 10 + i64::from(d));
        chars.next();
    }
    match n.and_then(|n| usize::try_from(n).ok()) {
        Some(n) => GoNum::Num(n),
        None => GoNum::Absent,
    }
}

/// Go's `intFromArg` for a `*` width or precision: the next argument when it
/// is an int within ±10^6 (Go's `tooLarge`), else `None` (`%!(BADWIDTH)` or
/// `%!(BADPREC)`). The argument is consumed either way, when there is one.
fn star_arg(args: &[GoArg], used: &mut usize) -> Option<i64> {
    let a = args.get(*used)?;
    *used += 1;
    match a {
        GoArg::Int(i) if (-GO_MAX_WIDTH..=GO_MAX_WIDTH).contains(i) => Some(*i),
        _ => None,
    }
}

/// Go's `fmt.Sprintf` over OPA's argument conversion.
pub fn go_sprintf_str(format: &str, args: &[regorus::Value]) -> String {
    let args: Vec<GoArg> = args.iter().map(GoArg::from).collect();
    let mut out = String::with_capacity(format.len() + 16);
    let mut used = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec {
            minus: false,
            plus: false,
            zero: false,
            width: None,
            precision: None,
        };
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        // Width: digits, or `*` taking an int argument.
        if chars.peek() == Some(&'*') {
            chars.next();
            match star_arg(&args, &mut used) {
                Some(w) if w < 0 => {
                    spec.width = Some(w.unsigned_abs() as usize);
                    spec.minus = true;
                    spec.zero = false;
                }
                Some(w) => spec.width = Some(w as usize),
                None => out.push_str("%!(BADWIDTH)"),
            }
        } else {
            match parse_num(&mut chars) {
                GoNum::Overflow => {
                    out.push_str("%!(NOVERB)");
                    break;
                }
                GoNum::Absent => {}
                GoNum::Num(n) => spec.width = Some(n),
            }
        }
        // Precision: only when a character follows the `.`, as in Go.
        if chars.peek() == Some(&'.') && chars.clone().nth(1).is_some() {
            chars.next();
            if chars.peek() == Some(&'*') {
                chars.next();
                match star_arg(&args, &mut used) {
                    // Go: a negative precision argument makes no sense.
                    Some(p) if p >= 0 => spec.precision = Some(p as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
            } else {
                match parse_num(&mut chars) {
                    GoNum::Overflow => {
                        out.push_str("%!(NOVERB)");
                        break;
                    }
                    GoNum::Absent => spec.precision = Some(0),
                    GoNum::Num(n) => spec.precision = Some(n),
                }
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(used) {
            Some(a) => out.push_str(&format_one(verb, &spec, a)),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        used += 1;
    }
    if used < args.len() {
        let extra: Vec<String> = args[used..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.plain()))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

/// Registers the Go-compatible `sprintf` on `engine`.
pub fn install(engine: &mut regorus::Engine) {
    let f = |args: Vec<regorus::Value>| -> anyhow::Result<regorus::Value> {
        let (Some(regorus::Value::String(fmt)), Some(list)) = (args.first(), args.get(1)) else {
            return Ok(regorus::Value::Undefined);
        };
        let items: Vec<regorus::Value> = match list {
            regorus::Value::Array(a) => a.iter().cloned().collect(),
            // OPA: a non-array second operand is a type error (undefined).
            _ => return Ok(regorus::Value::Undefined),
        };
        let out = go_sprintf_str(fmt, &items);
        // A `%*d` pads to a million characters: counted in the budget.
        super::budget::charge("sprintf", super::budget::string_bytes(out.len() as u64))?;
        Ok(regorus::Value::from(out))
    };
    // Registering twice on one engine is the only failure; ours is fresh.
    let _ = engine.add_extension("sprintf".into(), 2, Box::new(f));
}

#[cfg(test)]
mod tests {
    use super::*;
    use regorus::Value as V;

    #[test]
    fn tokens_skip_strings_and_comments() {
        let src = "package a.b # package c\nx := \"import data.lib\" + `p\nq`[0]\n";
        let words: Vec<(TokenKind, &str, usize)> = tokens(src)
            .iter()
            .map(|t| (t.kind, &src[t.start..t.end], t.depth))
            .collect();
        use TokenKind::{Punct, Str, Word};
        assert_eq!(
            words,
            [
                (Word, "package", 0),
                (Word, "a", 0),
                (Punct(b'.'), ".", 0),
                (Word, "b", 0),
                (Word, "x", 0),
                (Punct(b':'), ":", 0),
                (Punct(b'='), "=", 0),
                (Str, "\"import data.lib\"", 0),
                (Punct(b'+'), "+", 0),
                (Str, "`p\nq`", 0),
                (Punct(b'['), "[", 0),
                (Word, "0", 1),
                (Punct(b']'), "]", 1),
            ]
        );
        let t = tokens("a.b c");
        assert!(t[0].touches(&t[1]) && !t[2].touches(&t[3]));
    }

    #[test]
    fn paren_lines_get_a_separator() {
        let src = "p if {\n\tx := input.a # c\n\t(x + 1) == 2\n}\n";
        assert_eq!(
            separate_paren_lines(src),
            "p if {\n\tx := input.a; # c\n\t(x + 1) == 2\n}\n"
        );
        let call = "p if {\n\tx := f(\n\t\t(1 + 2),\n\t)\n}\n";
        assert_eq!(separate_paren_lines(call), call, "inside a call: untouched");
        let s = "p if {\n\tx := \"a(\"\n\t(x) == \"a(\"\n}\n";
        assert_eq!(
            separate_paren_lines(s),
            "p if {\n\tx := \"a(\";\n\t(x) == \"a(\"\n}\n"
        );
        let op = "p if {\n\tx := 1 +\n\t(2)\n}\n";
        assert_eq!(
            separate_paren_lines(op),
            op,
            "continuation after an operator"
        );
    }

    #[test]
    fn multi_bodies_repeat_the_head() {
        let src = "deny[msg] { input.a; msg := \"{\" } { input.b; msg := \"b\" }\nq = {\"a\": 1} { true }\n";
        assert_eq!(
            split_multi_body(src),
            "deny[msg] { input.a; msg := \"{\" } deny[msg] { input.b; msg := \"b\" }\nq = {\"a\": 1} { true }\n"
        );
        let multi_line = "violation[{\"msg\": m}] {\n  m := 1\n}\n{\n  m := 2\n}\n";
        assert_eq!(
            split_multi_body(multi_line),
            "violation[{\"msg\": m}] {\n  m := 1\n}\nviolation[{\"msg\": m}] {\n  m := 2\n}\n"
        );
        let plain = "p { true }\nq { true }\np { false } else = 1 { true }\n";
        assert_eq!(split_multi_body(plain), plain);
    }

    #[test]
    fn sprintf_is_go_fmt() {
        let s = |f: &str, a: Vec<V>| go_sprintf_str(f, &a);
        assert_eq!(
            s("%s needs %s", vec![V::from("app")]),
            "app needs %!s(MISSING)"
        );
        assert_eq!(s("%d", vec![V::from("x")]), "%!d(string=x)");
        assert_eq!(
            s("%s", vec![V::from("a"), V::from(1)]),
            "a%!(EXTRA int64=1)"
        );
        assert_eq!(
            s(
                "%v|%d|%5.2f|%-4s|%03d|%%",
                vec![
                    V::from(1.5),
                    V::from(7),
                    V::from(1.23456),
                    V::from("ab"),
                    V::from(5)
                ]
            ),
            "1.5|7| 1.23|ab  |005|%"
        );
        assert_eq!(
            s(
                "%v %v",
                vec![
                    V::Bool(true),
                    V::from_json_str("[1,\"a\"]").unwrap_or(V::Null)
                ]
            ),
            "true [1, \"a\"]"
        );
        assert_eq!(
            s("%q %x", vec![V::from("a\"b"), V::from(255)]),
            "\"a\\\"b\" ff"
        );
    }

    /// Go's bounds on widths and precisions (fmt's `tooLarge`, 10^6): a
    /// width that would not fit never saturates into a huge allocation.
    #[test]
    fn sprintf_widths_are_bounded_as_in_go() {
        let s = |f: &str, a: Vec<V>| go_sprintf_str(f, &a);
        // A literal width is read while the number so far is <= 10^6.
        assert_eq!(s("%1000000d", vec![V::from(1)]).len(), 1_000_000);
        assert_eq!(s("%10000000d", vec![V::from(1)]).len(), 10_000_000);
        // One digit more is Go's overflow: `%!(NOVERB)`, and the rest of
        // the format is not read (the argument is then EXTRA).
        assert_eq!(
            s("a %100000000d b %s", vec![V::from(1)]),
            "a %!(NOVERB)%!(EXTRA int64=1)"
        );
        assert_eq!(
            s("%99999999999999999999999999s", vec![V::from("x")]),
            "%!(NOVERB)%!(EXTRA string=x)"
        );
        assert_eq!(
            s("%.99999999999999999999f", vec![V::from(1.5)]),
            "%!(NOVERB)%!(EXTRA float64=1.5)"
        );
        // A `*` width or precision from an argument: over 10^6 (or not an
        // int) is `%!(BADWIDTH)` / `%!(BADPREC)`, and the verb goes on.
        assert_eq!(
            s("%*d|", vec![V::from(10_000_000), V::from(7)]),
            "%!(BADWIDTH)7|"
        );
        assert_eq!(
            s("%*d", vec![V::from(1_000_001), V::from(7)]),
            "%!(BADWIDTH)7"
        );
        assert_eq!(
            s("%*d", vec![V::from(1_000_000), V::from(7)]).len(),
            1_000_000
        );
        assert_eq!(s("%*d", vec![V::from("x"), V::from(7)]), "%!(BADWIDTH)7");
        assert_eq!(s("%*d|", vec![V::from(3), V::from(7)]), "  7|");
        assert_eq!(s("%*d|", vec![V::from(-3), V::from(7)]), "7  |");
        assert_eq!(
            s("%.*f", vec![V::from(2_000_000), V::from(1.5)]),
            "%!(BADPREC)1.500000"
        );
        assert_eq!(
            s("%.*f", vec![V::from(-1), V::from(1.5)]),
            "%!(BADPREC)1.500000"
        );
        assert_eq!(s("%.*f", vec![V::from(2), V::from(1.5)]), "1.50");
        assert_eq!(s("%*d", vec![]), "%!(BADWIDTH)%!d(MISSING)");
        // A `.` with nothing after it is not a precision.
        assert_eq!(s("%.", vec![V::from(1)]), "%!.(int64=1)");
    }
}
