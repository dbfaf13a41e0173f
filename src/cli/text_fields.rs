//! The text log's fields, written so that no value can forge a line or a
//! field.
//!
//! tracing-subscriber's default field formatter writes a `%value` (Display)
//! as it is: a request `uid` of `"x\n2026-01-01T00:00:00Z ERROR ..."` would
//! end the per-admission line early and have a line of the attacker's
//! choosing follow, and any in-cluster client can call the Service with such
//! a uid. The same holds for the workload name, policy violation messages,
//! decode errors that quote the request, and every other value logged with
//! `%`. Rather than trusting each call site to pick `?`, this formatter
//! escapes every value, so no call site needs to know:
//!
//! - A value that reads as one token (no space, `"`, `=`, `\`, control or
//!   invisible character) is written as it is: `uid=8c1f...`,
//!   `workload=Pod/web`, `outcome=patched`.
//! - A value that is already a quoted, escaped string (what `?` gives for a
//!   string) is written as it is: `namespace="default"`.
//! - Anything else is quoted, with `"` and `\` escaped and every control,
//!   line-separator, bidirectional or zero-width character written as a
//!   Rust escape (`\n`, `\r`, `\t`, `\0`, `\u{1b}`, `\u{2028}`): one line
//!   per event, and one `name=value` per field.
//! - The message is the code's own text; its control characters are escaped
//!   all the same, but it is not quoted.
//!
//! The JSON format ([`super::json_line`]) escapes through serde_json's rules,
//! and escapes U+0085, U+2028 and U+2029 besides.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The field formatter for `--log-format text`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut v = Visitor {
            ansi: writer.has_ansi_escapes(),
            out: writer,
            result: Ok(()),
            empty: true,
            buf: String::new(),
        };
        fields.record(&mut v);
        v.result
    }
}

/// Whether `c` may not appear raw in a line: control characters (line
/// breaks, escape, NUL, C1), whitespace other than the space (the Unicode
/// line and paragraph separators among it), and the invisible characters
/// that reorder or hide text on a terminal (bidirectional controls,
/// zero-width characters, the BOM).
pub(crate) fn unsafe_char(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Writes an unsafe character as a Rust escape.
fn escape_char(out: &mut dyn fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        '\0' => out.write_str("\\0"),
        c => write!(out, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// A value that can stand bare after `name=`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, ' ' | '"' | '=' | '\\') || unsafe_char(c))
}

/// A whole quoted string with its escapes, as `?` writes a string.
fn is_quoted(s: &str) -> bool {
    let Some(inner) = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .filter(|_| s.len() >= 2)
    else {
        return false;
    };
    // After a backslash any character is escaped, a quote included; an
    // unescaped quote would end the string early.
    let mut escaped = false;
    for c in inner.chars() {
        if unsafe_char(c) {
            return false;
        }
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return false,
            _ => {}
        }
    }
    // A final backslash would escape the closing quote.
    !escaped
}

/// `"s"`, escaped.
fn quote(out: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            c if unsafe_char(c) => escape_char(out, c)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// `s` with its unsafe characters escaped, unquoted (the message).
fn escape_unsafe(out: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(at) = rest.find(unsafe_char) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or(' ');
        escape_char(out, c)?;
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// A value in whichever of the three forms is safe for it.
fn value(out: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    if is_token(s) || is_quoted(s) {
        out.write_str(s)
    } else {
        quote(out, s)
    }
}

struct Visitor<'w> {
    out: Writer<'w>,
    ansi: bool,
    result: fmt::Result,
    empty: bool,
    /// A `Debug` or `Display` value, rendered before it is judged.
    buf: String,
}

impl Visitor<'_> {
    /// Writes ` name=` (the space only between fields), as
    /// tracing-subscriber does: the name in italics and `=` dimmed when
    /// colours are on.
    fn name(&mut self, field: &Field) -> fmt::Result {
        self.pad()?;
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        if self.ansi {
            write!(self.out, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")
        } else {
            write!(self.out, "{name}=")
        }
    }

    fn pad(&mut self) -> fmt::Result {
        if self.empty {
            self.empty = false;
            Ok(())
        } else {
            self.out.write_char(' ')
        }
    }

    fn put(&mut self, f: impl FnOnce(&mut Self) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = f(self);
        }
    }

    /// A rendered value (in `buf`) under `field`.
    fn rendered(&mut self, field: &Field) -> fmt::Result {
        let buf = std::mem::take(&mut self.buf);
        let r = if field.name() == "message" {
            self.pad().and_then(|()| escape_unsafe(&mut self.out, &buf))
        } else {
            self.name(field).and_then(|()| value(&mut self.out, &buf))
        };
        self.buf = buf;
        self.buf.clear();
        r
    }

    fn number(&mut self, field: &Field, n: impl fmt::Display) {
        self.put(|v| {
            v.name(field)?;
            write!(v.out, "{n}")
        });
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, s: &str) {
        self.put(|v| {
            if field.name() == "message" {
                v.pad()?;
                escape_unsafe(&mut v.out, s)
            } else {
                // Always quoted, as tracing-subscriber quotes a `&str`.
                v.name(field)?;
                quote(&mut v.out, s)
            }
        });
    }

    fn record_debug(&mut self, field: &Field, d: &dyn fmt::Debug) {
        // Metadata of events bridged from the `log` crate, which the event
        // formatter has already written (as tracing-subscriber skips them).
        if field.name().starts_with("log.") {
            return;
        }
        self.put(|v| {
            v.buf.clear();
            write!(v.buf, "{d:?}")?;
            v.rendered(field)
        });
    }

    fn record_error(&mut self, field: &Field, e: &(dyn std::error::Error + 'static)) {
        self.put(|v| {
            v.buf.clear();
            write!(v.buf, "{e}")?;
            v.rendered(field)?;
            let Some(mut source) = e.source() else {
                return Ok(());
            };
            let mut sources = source.to_string();
            while let Some(next) = source.source() {
                write!(sources, ": {next}")?;
                source = next;
            }
            v.pad()?;
            let name = field.name();
            write!(
                v.out,
                "{}.sources=",
                name.strip_prefix("r#").unwrap_or(name)
            )?;
            quote(&mut v.out, &sources)
        });
    }

    fn record_u64(&mut self, field: &Field, n: u64) {
        self.number(field, n);
    }

    fn record_i64(&mut self, field: &Field, n: i64) {
        self.number(field, n);
    }

    fn record_u128(&mut self, field: &Field, n: u128) {
        self.number(field, n);
    }

    fn record_i128(&mut self, field: &Field, n: i128) {
        self.number(field, n);
    }

    fn record_f64(&mut self, field: &Field, n: f64) {
        self.number(field, n);
    }

    fn record_bool(&mut self, field: &Field, b: bool) {
        self.number(field, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::Captured;

    /// Lines from `f` through the text subscriber as `serve` builds it.
    fn text(f: impl Fn()) -> String {
        let out = Captured::default();
        let w = out.clone();
        let d = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .fmt_fields(TextFields)
                .with_ansi(false)
                .with_writer(move || w.clone())
                .finish(),
        );
        tracing::dispatcher::with_default(&d, || {
            tracing::callsite::rebuild_interest_cache();
            f();
        });
        out.text()
    }

    /// Reverses [`quote`]: the value of a quoted string.
    fn unquote(s: &str) -> Option<String> {
        let inner = s.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                'u' => {
                    let rest: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    let hex = rest.strip_prefix('{')?;
                    out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
                }
                _ => return None,
            }
        }
        Some(out)
    }

    /// `name=value` pairs after the message, values decoded.
    fn fields(line: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = line;
        while let Some(eq) = rest.find('=') {
            let name_start = rest[..eq].rfind(' ').map_or(0, |i| i + 1);
            let name = rest[name_start..eq].to_string();
            let after = &rest[eq + 1..];
            let (raw, next) = if after.starts_with('"') {
                let mut end = 1;
                let b = after.as_bytes();
                while end < b.len() && b[end] != b'"' {
                    end += if b[end] == b'\\' { 2 } else { 1 };
                }
                (
                    &after[..=end.min(after.len() - 1)],
                    &after[(end + 1).min(after.len())..],
                )
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            let val = if raw.starts_with('"') {
                unquote(raw).unwrap_or_else(|| panic!("bad quoted value {raw:?} in {line:?}"))
            } else {
                raw.to_string()
            };
            out.push((name, val));
            rest = next;
        }
        out
    }

    const NASTY: [char; 6] = ['\n', '\r', '\t', '\u{1b}', '\0', '\u{2028}'];

    /// Every kind of value, holding each control character followed by a
    /// would-be line, comes out as one line per event whose fields decode
    /// to the values logged.
    #[test]
    fn no_value_forges_a_line_or_a_field_and_each_decodes_back() {
        struct Shown(String);
        impl fmt::Display for Shown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        for c in NASTY {
            let v = format!("x{c}2026-01-01T00:00:00.000000Z ERROR forged: a=b \"q\" \\ {c}");
            let err = std::io::Error::other(v.clone());
            let out = text(|| {
                tracing::info!(
                    uid = %v,
                    namespace = v.as_str(),
                    workload = %Shown(v.clone()),
                    detail = ?v,
                    error = &err as &(dyn std::error::Error + 'static),
                    n = 3u64,
                    ok = true,
                    "admission"
                );
            });
            let lines: Vec<&str> = out.split('\n').filter(|l| !l.is_empty()).collect();
            assert_eq!(lines.len(), 1, "{c:?}: one event, one line:\n{out}");
            let line = lines[0];
            assert!(!line.chars().any(unsafe_char), "{c:?}: raw {line:?}");
            assert!(
                line.contains(" INFO otel_admission::cli::text_fields::tests: admission uid=\""),
                "{line}"
            );
            let got = fields(line);
            let want: Vec<(String, String)> = [
                ("uid", v.clone()),
                ("namespace", v.clone()),
                ("workload", v.clone()),
                ("detail", v.clone()),
                ("error", v.clone()),
                ("n", "3".into()),
                ("ok", "true".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            assert_eq!(got, want, "{c:?}: {line}");
        }
    }

    /// Plain values look as they did with tracing-subscriber's formatter.
    #[test]
    fn ordinary_values_are_unchanged() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum Op {
            Create,
        }
        let out = text(|| {
            tracing::info!(
                endpoint = "mutate",
                uid = %"8c1f-22",
                workload = %"Pod/web-1",
                operation = ?Op::Create,
                dry_run = false,
                duration_us = 42u64,
                names = ?["a", "b"],
                "admission"
            );
            tracing::warn!("message with\nnewline and \u{1b}[31m colour");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].ends_with(
                "admission endpoint=\"mutate\" uid=8c1f-22 workload=Pod/web-1 operation=Create dry_run=false duration_us=42 names=\"[\\\"a\\\", \\\"b\\\"]\""
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with("message with\\nnewline and \\u{1b}[31m colour"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn the_three_forms() {
        let mut s = String::new();
        for v in [
            "plain",
            "",
            "a b",
            "\"ok\"",
            "\"bad\"quote\"",
            "\"esc\\n\"",
            "\"raw\nnl\"",
            "k=v",
            "\"ends\\\"",
        ] {
            value(&mut s, v).expect("fmt");
            s.push('|');
        }
        assert_eq!(
            s,
            "plain|\"\"|\"a b\"|\"ok\"|\"\\\"bad\\\"quote\\\"\"|\"esc\\n\"|\"\\\"raw\\nnl\\\"\"|\"k=v\"|\"\\\"ends\\\\\\\"\"|"
        );
    }
}
