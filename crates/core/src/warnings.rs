//! Clamping of the messages an admission answer carries (SPEC §10):
//! `response.warnings` and the lines of a denial's `status.message`.
//!
//! kubectl prints each warning on a line of its own, and the API server
//! truncates or drops warnings that are long or not printable, so a Rego
//! message (multi-line, unbounded) is made one line of at most
//! [`MAX_CHARS`] characters, and an answer carries at most [`MAX_COUNT`].
//! Both functions are idempotent: clamping a clamped list changes nothing.

/// The most characters (Unicode scalar values) one message keeps.
pub const MAX_CHARS: usize = 256;

/// The most messages one answer carries, the `… and N more` line included.
pub const MAX_COUNT: usize = 32;

/// One message as one printable line: line breaks and other control
/// characters become spaces, and a message longer than [`MAX_CHARS`] is cut
/// on a character boundary and ends with `…`.
pub fn clamp_warning(message: &str) -> String {
    let printable = |c: char| if unprintable(c) { ' ' } else { c };
    let mut out = String::with_capacity(message.len().min(MAX_CHARS * 4));
    for (i, c) in message.chars().enumerate() {
        if i == MAX_CHARS - 1 && message.chars().nth(MAX_CHARS).is_some() {
            out.push('…');
            break;
        }
        out.push(printable(c));
    }
    out
}

/// Whether [`clamp_warnings`] would leave `messages` as they are: few
/// enough, each short and printable. The common case, checked without
/// copying them.
pub fn is_clamped(messages: &[String]) -> bool {
    messages.len() <= MAX_COUNT
        && messages
            .iter()
            .all(|m| m.len() <= MAX_CHARS && !m.chars().any(unprintable))
}

/// What a warning line may not hold: control characters (line breaks among
/// them) and the Unicode line and paragraph separators.
fn unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// [`clamp_warnings`] on borrowed messages: the messages themselves, not a
/// copy, when clamping would change nothing (the common case).
pub fn clamped(messages: &[String]) -> std::borrow::Cow<'_, [String]> {
    if is_clamped(messages) {
        std::borrow::Cow::Borrowed(messages)
    } else {
        std::borrow::Cow::Owned(clamp_warnings(messages.to_vec()))
    }
}

/// Every message clamped by [`clamp_warning`], and at most [`MAX_COUNT`] of
/// them: past that, the first `MAX_COUNT - 1` and one `… and N more`.
pub fn clamp_warnings(messages: Vec<String>) -> Vec<String> {
    let total = messages.len();
    let keep = if total > MAX_COUNT {
        MAX_COUNT - 1
    } else {
        total
    };
    let mut out: Vec<String> = messages
        .into_iter()
        .take(keep)
        .map(|m| clamp_warning(&m))
        .collect();
    if total > keep {
        out.push(format!("… and {} more", total - keep));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_clamped` means "clamping changes nothing" (it may say no to a
    /// long line of multi-byte characters that clamping would keep).
    #[test]
    fn is_clamped_agrees_with_clamping() {
        let long = "x".repeat(MAX_CHARS + 1);
        let cases: Vec<Vec<String>> = vec![
            vec![],
            vec!["injected python into app".into()],
            vec!["two\nlines".into()],
            vec!["tab\there".into()],
            vec!["sep\u{2028}".into()],
            vec![long.clone()],
            vec!["x".repeat(MAX_CHARS)],
            vec!["é".repeat(MAX_CHARS / 2)],
            (0..MAX_COUNT).map(|i| i.to_string()).collect(),
            (0..=MAX_COUNT).map(|i| i.to_string()).collect(),
        ];
        let expected = [
            true, true, false, false, false, false, true, true, true, false,
        ];
        for (c, want) in cases.into_iter().zip(expected) {
            assert_eq!(is_clamped(&c), want, "{c:?}");
            assert_eq!(clamp_warnings(c.clone()) == c, want, "{c:?}");
            assert_eq!(*clamped(&c), clamp_warnings(c.clone()), "{c:?}");
        }
        let wide = vec!["é".repeat(MAX_CHARS - 1)];
        assert!(!is_clamped(&wide) && clamp_warnings(wide.clone()) == wide);
    }

    #[test]
    fn short_single_line_messages_are_unchanged() {
        assert_eq!(clamp_warning("short"), "short");
        assert_eq!(clamp_warning(""), "");
        let exact = "é".repeat(MAX_CHARS);
        assert_eq!(clamp_warning(&exact), exact, "256 characters fit");
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(clamp_warning("a\nb\r\nc\td"), "a b  c d");
        assert_eq!(clamp_warning("a\u{2028}b\u{0}c"), "a b c");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "x".repeat(1000);
        let c = clamp_warning(&long);
        assert_eq!(c.chars().count(), MAX_CHARS);
        assert!(c.ends_with('…'), "{c}");
        assert!(c.starts_with(&"x".repeat(MAX_CHARS - 1)));
        // Multi-byte characters are never split.
        let wide = "日本".repeat(200);
        let c = clamp_warning(&wide);
        assert_eq!(c.chars().count(), MAX_CHARS);
        assert!(c.ends_with('…'));
        let over = "a".repeat(MAX_CHARS + 1);
        assert_eq!(clamp_warning(&over).chars().count(), MAX_CHARS);
    }

    #[test]
    fn at_most_32_messages_per_answer() {
        let few: Vec<String> = (0..MAX_COUNT).map(|i| format!("w{i}")).collect();
        assert_eq!(clamp_warnings(few.clone()), few);
        let many: Vec<String> = (0..100).map(|i| format!("w{i}\nmore")).collect();
        let c = clamp_warnings(many);
        assert_eq!(c.len(), MAX_COUNT);
        assert_eq!(c[0], "w0 more");
        assert_eq!(c[MAX_COUNT - 2], "w30 more");
        assert_eq!(c[MAX_COUNT - 1], "… and 69 more");
        assert!(clamp_warnings(Vec::new()).is_empty());
    }

    #[test]
    fn clamping_is_idempotent() {
        let many: Vec<String> = (0..40).map(|i| format!("{i}{}", "y".repeat(300))).collect();
        let once = clamp_warnings(many);
        assert_eq!(clamp_warnings(once.clone()), once);
    }
}
