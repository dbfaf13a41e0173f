//! Finding and reading policy files.
//!
//! A policy directory is read recursively, in sorted order, skipping
//! dot-names: a ConfigMap mount's kubelet snapshot (`..data`,
//! `..2026_01_01...`) is read once, through the links at the top, and a link
//! the kubelet's `..data` swap has just left dangling is a file leaving the
//! set, not an error. `fingerprint` hashes the same files for reload
//! change detection; [`bundle_entries`] flattens them into ConfigMap entries.

use std::hash::{Hash as _, Hasher};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::PolicyError;
use super::gatekeeper;

/// Every file under `dir` (recursively, sorted), skipping dot-names such as
/// the kubelet's `..data` so a ConfigMap mount is read once.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|source| PolicyError::Read {
            path: d.clone(),
            source,
        })?;
        for entry in rd {
            let entry = entry.map_err(|source| PolicyError::Read {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // A dangling symlink is a file the kubelet's `..data` swap has
            // just dropped (the link goes a moment after its target): it is
            // no longer part of the set, not a read error.
            if std::fs::metadata(&path).is_err() && std::fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A policy directory that was named (a flag, the config's `policies.dir`,
/// a command's argument) and cannot be used. Only `serve`'s default may be
/// absent (a laptop with no `policies/`): a named one that is not there is
/// a typo, and serving on with validation off would hide it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirError {
    #[error("{named_by} {}: no such directory", path.display())]
    Missing { named_by: String, path: PathBuf },
    #[error("{named_by} {}: not a directory", path.display())]
    NotADirectory { named_by: String, path: PathBuf },
    /// Not `#[source]`: the reason is in the message, and a chain printer
    /// (`{:#}`) would print it twice.
    #[error("{named_by} {}: {reason}", path.display())]
    Unreadable {
        named_by: String,
        path: PathBuf,
        reason: String,
    },
}

/// Refuses a named policy directory that is not there or not a directory;
/// `named_by` says where it was named (`--policies`, `config.yaml:
/// policies.dir`), for `--policies /mistyped: no such directory`.
pub fn require_dir(path: &Path, named_by: &str) -> Result<(), DirError> {
    let named_by = named_by.to_string();
    let path = path.to_path_buf();
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(DirError::NotADirectory { named_by, path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(DirError::Missing { named_by, path })
        }
        Err(e) => Err(DirError::Unreadable {
            named_by,
            path,
            reason: e.to_string(),
        }),
    }
}

/// Whether `dir` is absent (a dangling link counts): what a default policy
/// directory may be, for an empty set.
pub fn is_absent(dir: &Path) -> bool {
    std::fs::metadata(dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// Directories under `dir` (itself included), for watching.
pub fn dirs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = std::fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

pub(crate) fn is_rego(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "rego")
}

pub(crate) fn is_test_rego(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with("_test.rego"))
}

pub(crate) fn is_yaml(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
}

/// `text` with every path of a policy file (a `.rego`, `.yaml`, `.yml` or
/// `.json` name after one or more directories) cut to its base name: what
/// admission answers say names no directory of the server.
pub fn strip_directories(text: &str) -> String {
    static PATH: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"(?:[^\s:"'`/\\]*[/\\])+([^\s:"'`/\\]+\.(?:rego|ya?ml|json))"#).ok()
    });
    match PATH.as_ref() {
        Some(re) => re.replace_all(text, "$1").into_owned(),
        None => text.to_string(),
    }
}

/// Reads a multi-document YAML (or JSON) file as JSON values.
pub fn read_documents(path: &Path) -> Result<Vec<Json>, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_documents(&text, path)
}

/// Parses multi-document YAML (JSON is YAML) text; empty documents are skipped.
pub fn parse_documents(text: &str, path: &Path) -> Result<Vec<Json>, PolicyError> {
    crate::yaml::documents(text).map_err(|e| PolicyError::Document {
        path: path.to_path_buf(),
        doc: e.index,
        field: "(document)".into(),
        message: e.message,
    })
}

/// Adds one policy file to a content hash. [`fingerprint`] and
/// [`super::set::PolicySet::load_dir`] both hash this way, so a freshly
/// loaded set's fingerprint is the one a reload computes for the same files.
pub(super) fn hash_file(h: &mut impl Hasher, path: &Path, text: &str) {
    path.hash(h);
    text.hash(h);
}

/// A cheap content hash of every policy file, for change detection.
pub fn fingerprint(dir: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(files) = files_under(dir) {
        for f in files.iter().filter(|p| is_rego(p) || is_yaml(p)) {
            match std::fs::read_to_string(f) {
                Ok(t) => hash_file(&mut h, f, &t),
                Err(e) => {
                    f.hash(&mut h);
                    e.kind().hash(&mut h);
                }
            }
        }
    } else {
        "missing".hash(&mut h);
    }
    h.finish()
}

/// The files of `dir` a server needs, as ConfigMap entries: Rego modules
/// (not tests) and YAML holding templates or constraints (not suites or
/// samples). Keys flatten the relative path with `.`, since ConfigMap keys
/// cannot hold `/`; the server loads a flat directory the same way.
pub fn bundle_entries(
    dir: &Path,
) -> Result<std::collections::BTreeMap<String, String>, PolicyError> {
    let mut out = std::collections::BTreeMap::new();
    for path in files_under(dir)? {
        let keep = if is_rego(&path) {
            !is_test_rego(&path)
        } else if is_yaml(&path) {
            read_documents(&path)?.iter().any(|d| {
                gatekeeper::is_template(d)
                    || gatekeeper::is_constraint(d)
                    || super::expansion::is_expansion(d)
            })
        } else {
            false
        };
        if !keep {
            continue;
        }
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let key = rel
            .iter()
            .map(|c| c.to_string_lossy())
            .collect::<Vec<_>>()
            .join(".");
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        out.insert(key, text);
    }
    Ok(out)
}
