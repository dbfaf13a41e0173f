//! Dependencies point one way (issue 13): no cycle among the top-level
//! modules, nor among the direct children of any folder, counting the
//! `crate::` and `super::` paths in non-test code. A child using its parent
//! folder's own items is not an edge between siblings; a path through a
//! parent's `pub use` re-export counts as an edge to the child that defines
//! the item.
//!
//! Since issue 31 the layers are crates (`crates/core` cannot name the
//! adapters: the compiler refuses); within each crate modules still must
//! not form cycles. `cargo test --test architecture -- --nocapture` prints the graph;
//! `ARCHITECTURE_SRC=<dir>` points it at another tree.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// `src/inject/decide.rs` → `["inject", "decide"]`; `lib.rs` → `[]`.
fn module_of(root: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_string();
    }
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source with comments, string and char literals blanked out, so
/// neither braces nor paths inside them count.
fn code_only(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if s[i..].starts_with("//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if s[i..].starts_with("/*") {
            let end = s[i + 2..].find("*/").map_or(b.len(), |j| i + 2 + j + 2);
            out.extend(s[i..end].chars().filter(|c| *c == '\n'));
            i = end;
            continue;
        }
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if c == b'r' && !prev_ident {
            let hashes = s[i + 1..].bytes().take_while(|x| *x == b'#').count();
            if b.get(i + 1 + hashes) == Some(&b'"') {
                let close = format!("\"{}", "#".repeat(hashes));
                let start = i + 2 + hashes;
                let end = s[start..]
                    .find(&close)
                    .map_or(b.len(), |j| start + j + close.len());
                out.push_str("\"\"");
                out.extend(s[i..end].chars().filter(|c| *c == '\n'));
                i = end;
                continue;
            }
        }
        if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                } else if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
            continue;
        }
        if c == b'\'' {
            // A char literal ('x', '\n', '{'), not a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let end = s[i + 2..].find('\'').map_or(b.len(), |j| i + 2 + j + 1);
                out.push_str("' '");
                i = end;
                continue;
            }
            let ch_len = s[i + 1..].chars().next().map_or(1, char::len_utf8);
            if b.get(i + 1 + ch_len) == Some(&b'\'') {
                out.push_str("' '");
                i += 2 + ch_len;
                continue;
            }
        }
        let ch = s[i..].chars().next().expect("char");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Removes every item under `#[cfg(test)]` (a `mod tests { .. }`, a test
/// helper), and returns the names of `#[cfg(test)] mod x;` declarations.
fn strip_tests(code: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut test_mods = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let body_start = after.find(['{', ';']).unwrap_or(after.len());
        let head = after[..body_start].trim();
        if after[body_start..].starts_with(';') {
            if let Some(name) = head
                .strip_prefix("mod ")
                .or_else(|| head.strip_prefix("pub mod "))
            {
                test_mods.push(name.trim().to_string());
            }
            rest = &after[body_start + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, ch) in after[body_start..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = body_start + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    (out, test_mods)
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let base: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut p = prefix.to_vec();
        p.extend(base);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let (mut depth, mut cur) = (0, String::new());
        for ch in inner.chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&p, &cur, out);
                    cur.clear();
                    continue;
                }
                _ => {}
            }
            cur.push(ch);
        }
        expand(&p, &cur, out);
    } else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        let mut p = prefix.to_vec();
        p.extend(
            path.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "self")
                .map(String::from),
        );
        out.push(p);
    }
}

/// Every `crate::`/`super::` path in `code`, made absolute.
fn paths(module: &Module, is_mod_file: bool, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` trees (they may span lines and nest braces).
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before_ok = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        let after = &rest[at + 4..];
        let end = after.find(';').unwrap_or(after.len());
        let tree = after[..end].trim();
        if before_ok && (tree.starts_with("crate::") || tree.starts_with("super::")) {
            expand(&[], tree, &mut out);
        }
        rest = &after[end.min(after.len())..];
    }
    // Inline paths: `crate::a::b(...)`, `super::x::Y`.
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(j) = code[from..].find(anchor) {
            let at = from + j;
            from = at + anchor.len();
            let b = code.as_bytes();
            if at > 0
                && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_' || b[at - 1] == b':')
            {
                continue;
            }
            let tail: String = code[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(
                tail.split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    // Absolute module paths.
    out.into_iter()
        .filter_map(|p| {
            let mut abs: Vec<String> = Vec::new();
            let mut it = p.into_iter().peekable();
            match it.peek().map(String::as_str) {
                Some("crate") => {
                    it.next();
                }
                Some("super") => {
                    // In `a/b.rs` (module a::b) `super` is `a`; in `a/b/mod.rs` too.
                    let _ = is_mod_file;
                    abs = module.clone();
                    while it.peek().map(String::as_str) == Some("super") {
                        it.next();
                        abs.pop();
                    }
                }
                _ => return None,
            }
            abs.extend(it);
            Some(abs)
        })
        .collect()
}

struct Crate {
    modules: BTreeSet<Module>,
    /// `(module, item)` → the child module a `pub use child::..::item` points at.
    reexports: BTreeMap<(Module, String), Module>,
    /// Non-test code per module.
    code: BTreeMap<Module, (String, bool, PathBuf)>,
}

fn load(dir: &str) -> Crate {
    // `ARCHITECTURE_SRC=<dir>` checks another tree (an older checkout's
    // `src`, for the before-and-after graph in issue 13's note).
    let root = std::env::var_os("ARCHITECTURE_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut code = BTreeMap::new();
    let mut test_only: HashSet<Module> = HashSet::new();
    for f in &files {
        if f.file_name().is_some_and(|n| n == "main.rs") {
            continue; // the binary: a separate crate
        }
        let text = std::fs::read_to_string(f).expect("read");
        let m = module_of(&root, f);
        let (stripped, test_mods) = strip_tests(&code_only(&text));
        for t in test_mods {
            let mut child = m.clone();
            child.push(t);
            test_only.insert(child);
        }
        let is_mod = f.file_name().is_some_and(|n| n == "mod.rs");
        code.insert(m, (stripped, is_mod, f.clone()));
    }
    code.retain(|m, _| !test_only.iter().any(|t| m.starts_with(t)));
    let modules: BTreeSet<Module> = code.keys().cloned().collect();
    let mut reexports = BTreeMap::new();
    for (m, (c, _, _)) in &code {
        let mut rest = c.as_str();
        while let Some(at) = rest.find("pub use ") {
            let after = &rest[at + 8..];
            let end = after.find(';').unwrap_or(after.len());
            let mut trees = Vec::new();
            expand(
                &[],
                after[..end].trim().trim_start_matches("self::"),
                &mut trees,
            );
            for t in trees {
                let Some(item) = t.last().cloned() else {
                    continue;
                };
                let target: Module = if t.first().is_some_and(|s| s == "crate") {
                    resolve(&modules, &t[1..]).0
                } else {
                    let mut child = m.clone();
                    child.push(t[0].clone());
                    if !modules.contains(&child) {
                        continue;
                    }
                    child
                };
                reexports.insert((m.clone(), item), target);
            }
            rest = &after[end.min(after.len())..];
        }
    }
    Crate {
        modules,
        reexports,
        code,
    }
}

/// The longest known module prefix of `path`, and what follows it.
fn resolve(modules: &BTreeSet<Module>, path: &[String]) -> (Module, Vec<String>) {
    for k in (0..=path.len()).rev() {
        if modules.contains(&path[..k].to_vec()) {
            return (path[..k].to_vec(), path[k..].to_vec());
        }
    }
    (Vec::new(), path.to_vec())
}

/// Per folder (`[]` is the crate): child → children it uses, with one
/// example file for each edge.
type Graphs = BTreeMap<Module, BTreeMap<String, BTreeMap<String, PathBuf>>>;

fn graphs(c: &Crate) -> Graphs {
    let mut g: Graphs = BTreeMap::new();
    for (m, (code, is_mod, file)) in &c.code {
        for p in paths(m, *is_mod, code) {
            let (mut target, rest) = resolve(&c.modules, &p);
            if let Some(item) = rest.first()
                && let Some(t) = c.reexports.get(&(target.clone(), item.clone()))
            {
                target = t.clone();
            }
            let k = m.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if k < m.len() && k < target.len() {
                g.entry(m[..k].to_vec())
                    .or_default()
                    .entry(m[k].clone())
                    .or_default()
                    .entry(target[k].clone())
                    .or_insert_with(|| file.clone());
            }
        }
    }
    g
}

/// Strongly connected components with more than one node (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeMap<String, PathBuf>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeMap<String, PathBuf>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: HashSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flat_map(|e| e.keys()) {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: HashSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = g
        .iter()
        .flat_map(|(a, e)| std::iter::once(a.as_str()).chain(e.keys().map(String::as_str)))
        .collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Each crate's modules, with the least it must hold (a wrong path would
/// find nothing and pass).
const CRATES: [(&str, usize); 3] = [
    ("src", 20),
    ("crates/core/src", 40),
    ("crates/policy/src", 10),
];

#[test]
fn no_module_cycles_at_any_level() {
    let mut problems = Vec::new();
    for (dir, least) in CRATES {
        let c = load(dir);
        assert!(
            c.modules.len() > least,
            "{dir}: found only {} modules",
            c.modules.len()
        );
        let g = graphs(&c);
        for (folder, edges) in &g {
            let name = if folder.is_empty() {
                dir.to_string()
            } else {
                format!("{dir}: {}", folder.join("::"))
            };
            println!("{name}:");
            for (from, to) in edges {
                println!(
                    "  {from} -> {}",
                    to.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            for cycle in cycles(edges) {
                let witness: Vec<String> = cycle
                    .iter()
                    .flat_map(|a| {
                        edges[a]
                            .iter()
                            .filter(|(b, _)| cycle.contains(b))
                            .map(move |(b, f)| format!("{a} -> {b} ({})", f.display()))
                    })
                    .collect();
                problems.push(format!("{name}: cycle {cycle:?}: {}", witness.join("; ")));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "module cycles:\n{}",
        problems.join("\n")
    );
}

/// A layer crate (the core, the policy engine) cannot see the adapters:
/// the compiler keeps that, since they are another crate that depends on it. What keeps the runtime, the
/// cluster client, HTTP and metrics out is its manifest: none of them is a
/// dependency, and kube comes without its client.
#[rstest::rstest]
#[case::core("crates/core/Cargo.toml")]
#[case::policy("crates/policy/Cargo.toml")]
fn a_layer_crate_depends_on_no_runtime_client_http_or_metrics(#[case] path: &str) {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .expect("the crate's manifest");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|d| d.split("\n[").next())
        .expect("a [dependencies] table");
    let names: Vec<&str> = deps
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['=', '.', ' ']).next())
        .collect();
    for banned in [
        "tokio",
        "hyper",
        "hyper-util",
        "axum",
        "tower",
        "prometheus-client",
        "kube-client",
        "kube-runtime",
        "reqwest",
        "notify",
        "otel-admission",
    ] {
        assert!(
            !names.contains(&banned),
            "{path} depends on {banned}: {names:?}"
        );
    }
    // kube, if at all, for the CustomResource derive only.
    if let Some(kube) = deps.lines().find(|l| l.trim_start().starts_with("kube")) {
        assert!(
            kube.contains("default-features = false")
                && !kube.contains("client")
                && !kube.contains("runtime"),
            "kube without its client: {kube}"
        );
    }
}

/// The checker itself: a cycle through a `use` group, a `super::` path and a
/// re-export is found; test code and strings are not counted.
#[test]
fn the_checker_sees_grouped_super_and_reexported_paths_and_skips_tests_and_strings() {
    let code = code_only(
        "use crate::a::{b::{X, Y}, c};\nfn f() { super::d::g(); let s = \"crate::zz::q\"; }\n#[cfg(test)]\nmod tests { use crate::t::u; }\n",
    );
    let (code, _) = strip_tests(&code);
    let m: Module = vec!["a".into(), "e".into()];
    let got = paths(&m, false, &code);
    let want: Vec<Vec<String>> = vec![
        vec!["a".into(), "b".into(), "X".into()],
        vec!["a".into(), "b".into(), "Y".into()],
        vec!["a".into(), "c".into()],
        vec!["a".into(), "b".into(), "X".into()],
        vec!["a".into(), "d".into(), "g".into()],
    ];
    for w in &want {
        assert!(got.contains(w), "{w:?} in {got:?}");
    }
    assert!(
        !got.iter().any(|p| p.contains(&"zz".to_string())),
        "{got:?}"
    );
    assert!(!got.iter().any(|p| p.contains(&"t".to_string())), "{got:?}");
    let mut g = BTreeMap::new();
    g.insert(
        "a".to_string(),
        BTreeMap::from([("b".to_string(), PathBuf::new())]),
    );
    g.insert(
        "b".to_string(),
        BTreeMap::from([("c".to_string(), PathBuf::new())]),
    );
    g.insert(
        "c".to_string(),
        BTreeMap::from([("a".to_string(), PathBuf::new())]),
    );
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
    g.remove("c");
    assert!(cycles(&g).is_empty());
}
