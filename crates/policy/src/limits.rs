//! What a policy may cost the server: nothing an admin's mistake does may
//! take the webhook down.
//!
//! - **Compile time.** regorus 0.14.1's parser is exponential in the nesting
//!   of collection literals: at `[`, `{` it first tries a comprehension,
//!   parsing the first item, and when no `|` follows it parses that item
//!   again as an element. A first item that is itself a collection is
//!   parsed twice at each level: a 20-deep array literal takes over 20 s to
//!   compile, 30 deep would take hours. [`check_nesting`] refuses such a
//!   source before regorus sees it, in time linear in its length.
//!   regorus' own [`regorus::utils::limits::PolicyLengthConfig`] (1 MiB,
//!   20,000 lines, 1,024 columns per file) is in effect on every engine:
//!   nothing here sets it.
//! - **Memory**: see [`super::budget`].

use super::compat::{Token, TokenKind, tokens};

/// The deepest bracket nesting (`[`, `{`, `(` together) a Rego source may
/// have. regorus itself refuses an expression nested deeper than 32, but
/// only after parsing its way down there; the shipped pack goes to 9 and
/// Gatekeeper's library to 6.
pub const MAX_NESTING: usize = 32;

/// The deepest chain of collection literals a Rego source may have, each
/// in the first item of the one around it (`[[[`, `{"a": {"a": {`,
/// `[{"a": [{`): the nesting regorus parses in time exponential in
/// (2^depth). 12 deep parses in about 0.1 s (0.2 s in the worst shape
/// measured, `[{"a": [{...`); 14 took 0.4 to 0.9 s, 16 took 1.7 to 5 s, 20
/// over 20 s. A literal in a later item (`[1, [...]]`, `{"a": 1, "b":
/// {...}}`) is parsed once and does not deepen the chain, so realistic test
/// inputs stay well below it: the shipped pack's deepest is 9, Gatekeeper's
/// library's 4.
pub const MAX_LITERAL_NESTING: usize = 12;

/// One bracket open during [`check_nesting`]'s scan.
#[derive(Clone, Copy)]
struct Open {
    /// A collection literal (array, set, object, comprehension), as opposed
    /// to a call's or a group's `(`, a reference's `[` or a rule body's `{`,
    /// which regorus parses once each time around them is parsed.
    literal: bool,
    /// For a literal: how many literals, itself included, regorus parses it
    /// under as a first item (its cost is 2 to that power).
    chain: usize,
    /// For a literal: still in its first item (no `,` or `|` yet).
    first: bool,
}

/// Whether the `{` after `prev` opens a literal (a set, an object or a
/// comprehension) rather than a rule body (`if {`, `else {`, `p {`, `f(x)
/// {`, `p[x] {`, `every x in xs {`).
fn brace_is_literal(src: &str, prev: Option<&Token>) -> bool {
    match prev {
        None => false,
        Some(t) => match t.kind {
            TokenKind::Word => matches!(
                &src[t.start..t.end],
                "as" | "in" | "contains" | "not" | "some"
            ),
            TokenKind::Str => false,
            TokenKind::Punct(c) => !matches!(c, b')' | b']' | b'}'),
        },
    }
}

/// Whether the `[` after `prev` opens an array (or array comprehension)
/// rather than a reference's index (`x[0]`, `f(x)[0]`, `deny[msg]`).
fn bracket_is_literal(prev: Option<&Token>, open: &Token) -> bool {
    match prev {
        None => true,
        Some(t) => {
            let term_end = matches!(
                t.kind,
                TokenKind::Word | TokenKind::Str | TokenKind::Punct(b')' | b']' | b'}')
            );
            !(term_end && t.touches(open))
        }
    }
}

/// Refuses a Rego source nested deeper than [`MAX_NESTING`] or with a chain
/// of first-item literals deeper than [`MAX_LITERAL_NESTING`], before
/// regorus parses it. The error names the line of the bracket that went too
/// deep: `nesting deeper than 32 at line 7`. Strings, raw strings and
/// comments are skipped (`compat::tokens`).
pub fn check_nesting(src: &str) -> Result<(), String> {
    nesting(src).map(drop)
}

/// [`check_nesting`]'s scan: the deepest nesting and literal chain found.
fn nesting(src: &str) -> Result<(usize, usize), String> {
    let toks = tokens(src);
    let (mut deepest, mut longest) = (0, 0);
    let line_of = |at: usize| src[..at].bytes().filter(|b| *b == b'\n').count() + 1;
    let mut stack: Vec<Open> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let TokenKind::Punct(c) = t.kind else {
            continue;
        };
        let prev = i.checked_sub(1).map(|p| &toks[p]);
        match c {
            b'[' | b'{' | b'(' => {
                if stack.len() >= MAX_NESTING {
                    return Err(format!(
                        "nesting deeper than {MAX_NESTING} at line {}",
                        line_of(t.start)
                    ));
                }
                let literal = match c {
                    b'[' => bracket_is_literal(prev, t),
                    b'{' => brace_is_literal(src, prev),
                    _ => false,
                };
                let mut chain = 0;
                if literal {
                    // The innermost literal around it decides: in its first
                    // item the chain deepens, in a later one it does not.
                    chain = match stack.iter().rev().find(|o| o.literal) {
                        Some(o) if o.first => o.chain + 1,
                        Some(o) => o.chain,
                        None => 1,
                    };
                    if chain > MAX_LITERAL_NESTING {
                        return Err(format!(
                            "collection literals nested deeper than {MAX_LITERAL_NESTING} at line {} \
                             (regorus parses them in time exponential in that depth)",
                            line_of(t.start)
                        ));
                    }
                }
                stack.push(Open {
                    literal,
                    chain,
                    first: true,
                });
                deepest = deepest.max(stack.len());
                longest = longest.max(chain);
            }
            b']' | b'}' | b')' => {
                stack.pop();
            }
            b',' | b'|' => {
                if let Some(top) = stack.last_mut()
                    && top.literal
                {
                    top.first = false;
                }
            }
            _ => {}
        }
    }
    Ok((deepest, longest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!(
            "package p\n\nx := {}1{}\n",
            open.repeat(depth),
            close.repeat(depth)
        )
    }

    /// The literal chain is what regorus pays for; other nesting is cheap
    /// until [`MAX_NESTING`].
    #[rstest::rstest]
    #[case::arrays_12("[", "]", 12, None)]
    #[case::arrays_13(
        "[",
        "]",
        13,
        Some("collection literals nested deeper than 12 at line 3")
    )]
    #[case::objects_13("{\"a\": ", "}", 13, Some("collection literals nested deeper than 12"))]
    #[case::sets_20("{", "}", 20, Some("collection literals nested deeper than 12"))]
    #[case::arrays_of_objects(
        "[{\"a\": ",
        "}]",
        7,
        Some("collection literals nested deeper than 12")
    )]
    #[case::later_items_20("[1, ", "]", 20, None)]
    #[case::later_object_values_20("{\"z\": 1, \"a\": ", "}", 20, None)]
    #[case::calls_31("count(", ")", 31, None)]
    #[case::calls_33("count(", ")", 33, Some("nesting deeper than 32 at line 3"))]
    #[case::later_items_33("[1, ", "]", 33, Some("nesting deeper than 32 at line 3"))]
    fn limits(
        #[case] open: &str,
        #[case] close: &str,
        #[case] depth: usize,
        #[case] want: Option<&str>,
    ) {
        match (check_nesting(&nested(open, close, depth)), want) {
            (Ok(()), None) => {}
            (Err(e), Some(w)) => assert!(e.starts_with(w), "{e}"),
            (got, want) => panic!("{open}x{depth}: got {got:?}, want {want:?}"),
        }
    }

    /// Rule bodies, references, strings and comments are not literals.
    #[test]
    fn bodies_refs_strings_and_comments_do_not_count() {
        let deep_body = format!(
            "package p\nimport rego.v1\ndeny contains m if {{\n  {}\n}}\n",
            "every x in input.xs { ".repeat(20) + &"}".repeat(20)
        );
        assert_eq!(check_nesting(&deep_body), Ok(()));
        let refs = format!("package p\nx := input{}\n", "[input.a[0]]".repeat(30));
        assert_eq!(check_nesting(&refs), Ok(()));
        let text = format!(
            "package p\n# {}\nx := \"{}\"\ny := `{}`\n",
            "[".repeat(100),
            "{".repeat(100),
            "(".repeat(100)
        );
        assert_eq!(check_nesting(&text), Ok(()));
        // A comprehension's body is parsed once: `|` ends the first item.
        let compr = |d: usize| {
            format!(
                "package p\nx := [y | y := {}1{}]\n",
                "[".repeat(d),
                "]".repeat(d)
            )
        };
        assert_eq!(nesting(&compr(11)), Ok((12, 11)));
        assert!(check_nesting(&compr(13)).is_err());
    }

    /// Every real policy is far from both limits: the shipped pack's
    /// deepest (its tests' inputs) is 9 and 9, Gatekeeper templates' 5 and 2.
    #[test]
    fn the_shipped_pack_is_far_from_the_limits() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let (mut deepest, mut longest) = (0, 0);
        for f in super::super::files::files_under(&dir).expect("pack") {
            let src = std::fs::read_to_string(&f).expect("read");
            let sources = if super::super::files::is_rego(&f) {
                vec![src]
            } else if !super::super::files::is_yaml(&f) {
                continue;
            } else {
                // Every string of a YAML file: a template's Rego among them.
                let docs = super::super::files::parse_documents(&src, &f).expect("yaml");
                let mut out = Vec::new();
                let mut stack: Vec<&serde_json::Value> = docs.iter().collect();
                while let Some(v) = stack.pop() {
                    match v {
                        serde_json::Value::String(s) if s.contains("package") => {
                            out.push(s.clone())
                        }
                        serde_json::Value::Array(a) => stack.extend(a),
                        serde_json::Value::Object(o) => stack.extend(o.values()),
                        _ => {}
                    }
                }
                out
            };
            for s in sources {
                let (d, l) = nesting(&s).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                deepest = deepest.max(d);
                longest = longest.max(l);
            }
        }
        assert!(
            deepest <= 9 && longest <= 9,
            "pack nesting {deepest}, literal chain {longest}"
        );
    }
}
