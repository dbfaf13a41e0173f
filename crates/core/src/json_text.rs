//! JSON strings written by hand, byte for byte as serde_json writes them,
//! for the two hot paths that write JSON text themselves: the patch
//! ([`crate::patch`]) and the log line. serde_json escapes each string
//! through its serializer (a key or a value at a time, each piece a call),
//! a fixed cost per string, and a patch is mostly short strings, keys
//! included.

use std::convert::Infallible;

/// Calls `put` with the pieces of `s` escaped for the inside of a JSON
/// string: the clean runs whole, and for `"`, `\` and the control
/// characters serde_json's escapes (`\n`, `\r`, `\t`, `\b`, `\f`, else
/// `\u00xx` in lower case). Everything else, non-ASCII included, as is.
pub fn escape_pieces<E>(s: &str, mut put: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        let at = start + clean_run(&bytes[start..], false);
        // Every byte that stops the scan is ASCII, so `at` is a char boundary.
        if start < at {
            put(&s[start..at])?;
        }
        let Some(&b) = bytes.get(at) else {
            return Ok(());
        };
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        if esc.is_empty() {
            let u = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            put(std::str::from_utf8(&u).unwrap_or_default())?;
        } else {
            put(esc)?;
        }
        start = at + 1;
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `x` is below `n` (n <= 0x80); bytes of 0x80 and above
/// never count.
fn any_below(x: u64, n: u8) -> bool {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0
}

/// Whether any byte of `x` is `b`.
fn any_is(x: u64, b: u8) -> bool {
    any_below(x ^ (ONES * u64::from(b)), 1)
}

/// The length of the prefix of `bytes` that needs no escape in a JSON
/// string, nor, for a JSON Pointer token, in a pointer (`~`, `/`):
/// eight bytes at a time, then one at a time.
pub(crate) fn clean_run(bytes: &[u8], pointer: bool) -> usize {
    let special =
        |b: u8| b < 0x20 || b == b'"' || b == b'\\' || (pointer && (b == b'~' || b == b'/'));
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        if any_below(x, 0x20)
            || any_is(x, b'"')
            || any_is(x, b'\\')
            || (pointer && (any_is(x, b'~') || any_is(x, b'/')))
        {
            break;
        }
        at += 8;
    }
    at + bytes[at..].iter().take_while(|&&b| !special(b)).count()
}

/// Appends `s` to `out` as a quoted JSON string.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_escaped(out, s);
    out.push(b'"');
}

/// Appends the inside of `s` as a JSON string (no quotes).
pub fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let _ = escape_pieces::<Infallible>(s, |p| {
        out.extend_from_slice(p.as_bytes());
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time scan stops where the byte-at-a-time one does, at
    /// every position of a special byte in a long run.
    #[test]
    fn clean_runs_end_at_the_first_special_byte() {
        for special in [0u8, 0x1f, b'"', b'\\', b'~', b'/'] {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes[at] = special;
                let pointer = matches!(special, b'~' | b'/');
                assert_eq!(
                    clean_run(&bytes, false),
                    if pointer { 20 } else { at },
                    "{special} at {at}"
                );
                assert_eq!(
                    clean_run(&bytes, true),
                    at,
                    "{special} at {at} in a pointer"
                );
            }
        }
        assert_eq!(
            clean_run("é日本🦀 and more text".as_bytes(), true),
            "é日本🦀 and more text".len()
        );
        assert_eq!(clean_run(b"", false), 0);
    }

    /// Every byte below 0x80 and some beyond, alone and in runs, as
    /// serde_json writes them.
    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut cases: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        cases.extend(
            [
                "",
                "plain",
                "a\"b\\c",
                "line\nbreak\r\n",
                "tab\there\u{1}\u{1f}\u{7f}",
                "é, ü, 日本, 🦀",
                "ends with \\",
                "\"",
                "k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)",
                "a long clean run of text, then a quote \" and more clean text after it\n",
                "0123456\u{1}89abcdef01234567\\",
            ]
            .map(String::from),
        );
        for s in cases {
            let mut ours = Vec::new();
            write_string(&mut ours, &s);
            let theirs = serde_json::to_vec(&s).expect("json");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{s:?}"
            );
        }
    }
}
