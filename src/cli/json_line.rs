//! The JSON log line, written straight into the line buffer.
//!
//! The same line as tracing-subscriber's `json().flatten_event(true)`:
//! `timestamp` (RFC 3339, microseconds, UTC), `level`, the event's fields
//! in order (`message` among them), then `target`. Its formatter goes
//! through serde for every key and value, and a `time` formatter for the
//! timestamp, on the line every admission writes. Here keys are written as
//! they are (field names are Rust identifiers), values are escaped in runs,
//! numbers through `Display`, and the timestamp written from the clock's
//! calendar fields.
//!
//! Span fields are not written: nothing in this crate opens a span, and the
//! dependencies' spans (kube's HTTP layer) are below the default level.
//! Hand-written because no maintained crate formats tracing events as JSON
//! without serde's per-value machinery.

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter for `--log-format json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        timestamp(&mut writer, SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.write_str(",\"")?;
        // Field names are identifiers (a raw one keeps its `r#`-less name);
        // escaped all the same, in case a macro was given a string key.
        escape(self.out, field.name())?;
        self.out.write_str("\":")
    }

    fn put(&mut self, f: impl FnOnce(&mut Self) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = f(self);
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(|s| {
            s.key(field)?;
            string(s.out, value)
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(|s| {
            s.key(field)?;
            s.out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(|s| {
            s.key(field)?;
            write!(s.out, "{value}")
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(|s| {
            s.key(field)?;
            write!(s.out, "{value}")
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(|s| {
            s.key(field)?;
            // JSON has no NaN or infinity; serde_json writes them as null.
            if value.is_finite() {
                write!(s.out, "{value}")
            } else {
                s.out.write_str("null")
            }
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(|s| {
            s.key(field)?;
            s.out.write_char('"')?;
            write!(Escaped(s.out), "{value}")?;
            s.out.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(|s| {
            s.key(field)?;
            s.out.write_char('"')?;
            write!(Escaped(s.out), "{value:?}")?;
            s.out.write_char('"')
        });
    }
}

/// A JSON string, quoted and escaped.
fn string(out: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    escape(out, s)?;
    out.write_char('"')
}

/// Escapes for the inside of a JSON string, as serde_json does, and
/// besides writes U+0085, U+2028 and U+2029 as `\u` escapes: valid raw in
/// JSON, but line breaks to many line-oriented readers (Python's
/// `splitlines`, JavaScript before ES2019, some log viewers), where a value
/// holding one would cut the line in two. The same value parses back
/// either way.
fn escape(out: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    crate::json_text::escape_pieces(s, |p| line_breaks(out, p))
}

/// Writes `p`, its Unicode line breaks escaped. Their UTF-8 forms start
/// with 0xC2 or 0xE2, so a piece without either byte goes through whole.
fn line_breaks(out: &mut dyn fmt::Write, p: &str) -> fmt::Result {
    if !p.bytes().any(|b| b == 0xc2 || b == 0xe2) {
        return out.write_str(p);
    }
    let mut rest = p;
    while let Some(at) = rest.find(['\u{85}', '\u{2028}', '\u{2029}']) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or(' ');
        write!(out, "\\u{:04x}", u32::from(c))?;
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// A `fmt::Write` that escapes what goes through it.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(self.0, s)
    }
}

/// `2026-12-06T23:35:38.366178Z`: UTC to the microsecond, as
/// tracing-subscriber's default timer writes it. The calendar fields come
/// from the `time` crate (integer arithmetic); only its format-description
/// formatter, which the default timer runs per line, is left out.
fn timestamp(out: &mut dyn fmt::Write, now: SystemTime) -> fmt::Result {
    let t = time::OffsetDateTime::from(now);
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::Captured;
    use std::time::{Duration, UNIX_EPOCH};

    /// Lines from `f` through both formatters: ours, then tracing-subscriber's.
    fn both(f: impl Fn()) -> (String, String) {
        let run = |json: bool| {
            let out = Captured::default();
            let w = out.clone();
            let b = tracing_subscriber::fmt().with_writer(move || w.clone());
            let d = if json {
                tracing::Dispatch::new(b.event_format(JsonLine).finish())
            } else {
                tracing::Dispatch::new(b.json().flatten_event(true).finish())
            };
            tracing::dispatcher::with_default(&d, || {
                tracing::callsite::rebuild_interest_cache();
                f();
            });
            out.text()
        };
        (run(true), run(false))
    }

    /// Every kind of field, and strings that need escaping, come out as
    /// tracing-subscriber writes them, the timestamp aside.
    #[test]
    fn lines_match_tracing_subscribers_json() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum Op {
            Create,
        }
        let (ours, theirs) = both(|| {
            let err = std::io::Error::other("disk \"full\"");
            tracing::info!(
                endpoint = "mutate",
                uid = %"u-\"1\"\n\u{1}é",
                count = 3u64,
                delta = -4i64,
                ratio = 0.5f64,
                nan = f64::NAN,
                dry_run = false,
                operation = ?Op::Create,
                error = &err as &(dyn std::error::Error + 'static),
                "admission {}", "done\\"
            );
            tracing::warn!("plain");
        });
        let strip = |s: &str| -> Vec<serde_json::Value> {
            s.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).expect(l);
                    let ts = v["timestamp"].take();
                    assert!(
                        ts.as_str()
                            .is_some_and(|t| t.len() == 27 && t.ends_with('Z')),
                        "{ts}"
                    );
                    v
                })
                .collect()
        };
        assert_eq!(
            strip(&ours),
            strip(&theirs),
            "\nours:   {ours}\ntheirs: {theirs}"
        );
        // Key order is tracing-subscriber's too.
        let keys = |s: &str| -> Vec<String> {
            let first = s.lines().next().unwrap_or_default();
            first
                .split("\",\"")
                .filter_map(|p| {
                    p.split("\":")
                        .next()
                        .map(|k| k.trim_start_matches("{\"").to_string())
                })
                .take(3)
                .collect()
        };
        assert_eq!(keys(&ours)[..2], keys(&theirs)[..2]);
        assert!(
            ours.lines()
                .all(|l| l.ends_with(",\"target\":\"otel_admission::cli::json_line::tests\"}")),
            "{ours}"
        );
    }

    /// Each control character and Unicode line break, in every kind of
    /// field: one line per event, no raw line break in it, and the values
    /// parse back exactly.
    #[test]
    fn no_value_breaks_a_line() {
        let mut out = String::new();
        for c in [
            '\n', '\r', '\t', '\u{1b}', '\0', '\u{85}', '\u{2028}', '\u{2029}',
        ] {
            let v = format!("x{c}{{\"level\":\"ERROR\"}} \u{2028}é{c}");
            let err = std::io::Error::other(v.clone());
            let (ours, _) = both(|| {
                tracing::info!(
                    uid = %v,
                    namespace = v.as_str(),
                    detail = ?v,
                    error = &err as &(dyn std::error::Error + 'static),
                    "{v}"
                );
            });
            assert!(
                !ours
                    .trim_end_matches('\n')
                    .contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']),
                "{c:?}: {ours:?}"
            );
            let line: serde_json::Value = serde_json::from_str(ours.trim_end()).expect(&ours);
            for k in ["uid", "namespace", "error", "message"] {
                assert_eq!(line[k], v.as_str(), "{c:?} {k}: {ours}");
            }
            assert_eq!(line["detail"], format!("{v:?}"), "{c:?}: {ours}");
            out.push_str(&ours);
        }
        assert!(out.contains("\\u2028") && out.contains("\\u0085"), "{out}");
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        let at = |s: u64, us: u64| {
            let mut o = String::new();
            timestamp(
                &mut o,
                UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us),
            )
            .expect("fmt");
            o
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(at(1_796_600_138, 366_178), "2026-12-06T23:35:38.366178Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
        // A day at a time over four centuries: the date is the calendar's.
        for day in (0..146_097u64).step_by(97) {
            let t = time::OffsetDateTime::from_unix_timestamp(day as i64 * 86_400).expect("ts");
            assert!(
                at(day * 86_400, 0).starts_with(&t.date().to_string()),
                "day {day}"
            );
        }
    }
}
