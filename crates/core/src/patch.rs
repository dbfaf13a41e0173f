//! The RFC 6902 JSON Patch a `/mutate` answer carries, kept as the JSON text
//! the answer sends and written an operation at a time.
//!
//! `json_patch::Patch` holds `serde_json::Value`s, so every injected
//! container, volume and variable would become a tree of maps and strings,
//! serialized again for the answer; a `RawValue` value and a `PointerBuf`
//! path per operation would still cost an allocation and a validation per
//! value, a path escaped token by token, and the list serialized once more.
//! Here each operation is written once, path and value, straight from the
//! typed structs into one buffer, and the answer base64-encodes that buffer
//! as it is.
//! [`Patch::to_json_patch`] gives the `json_patch` form, to apply the patch
//! to a document (`inject`, the tests).

use std::fmt;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};
use serde::Serialize;

use crate::json_text;

/// One reference token of a JSON Pointer path (RFC 6901).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// A member name, escaped when written (`~` as `~0`, `/` as `~1`).
    Key(&'a str),
    /// An array index.
    Index(usize),
}

impl<'a> From<&'a str> for Token<'a> {
    fn from(k: &'a str) -> Self {
        Self::Key(k)
    }
}

impl From<usize> for Token<'_> {
    fn from(i: usize) -> Self {
        Self::Index(i)
    }
}

/// A path as its tokens, e.g. `path!["spec", "containers", 0, "env", "-"]`.
#[macro_export]
macro_rules! path {
    ($($t:expr),* $(,)?) => {
        [$($crate::patch::Token::from($t)),*]
    };
}

/// The operations, in the order they apply, as one JSON array's text.
#[derive(Clone, PartialEq, Eq)]
pub struct Patch {
    /// `[` then the operations, comma-separated, then `]`: always a whole
    /// JSON document.
    json: Vec<u8>,
    len: usize,
}

impl Default for Patch {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Patch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.json))
    }
}

impl Patch {
    /// A patch with no operation: `[]`.
    pub fn new() -> Self {
        let mut json = Vec::with_capacity(1024);
        json.extend_from_slice(b"[]");
        Self { json, len: 0 }
    }

    /// How many operations.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The patch's JSON text, as the answer sends it.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// `add` of `value` at `path`, `value` serialized now.
    pub fn add<T: Serialize + ?Sized>(
        &mut self,
        path: &[Token<'_>],
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.push("add", path, Some(value))
    }

    /// `replace` at `path` with `value`, serialized now.
    pub fn replace<T: Serialize + ?Sized>(
        &mut self,
        path: &[Token<'_>],
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.push("replace", path, Some(value))
    }

    /// `remove` at `path`.
    pub fn remove(&mut self, path: &[Token<'_>]) {
        // No value, nothing that can fail to serialize.
        let _ = self.push::<()>("remove", path, None);
    }

    /// `add` of `value` at `path`, as the first operation: it applies
    /// before every other (the `metadata` a pod sent without one).
    pub fn add_first<T: Serialize + ?Sized>(
        &mut self,
        path: &[Token<'_>],
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let mut one = Patch::new();
        one.add(path, value)?;
        let op = &one.json[1..one.json.len() - 1];
        let at = 1;
        if self.len > 0 {
            self.json.insert(at, b',');
        }
        self.json.splice(at..at, op.iter().copied());
        self.len += 1;
        Ok(())
    }

    /// `add` of an env var at `path`: [`write_env`] for the forms the
    /// injection writes, serde for the rest.
    pub fn add_env(&mut self, path: &[Token<'_>], var: &EnvVar) -> Result<(), serde_json::Error> {
        self.push_with("add", path, Some(|out: &mut Vec<u8>| write_env(out, var)))
    }

    /// `replace` at `path` with an env var, as [`Patch::add_env`].
    pub fn replace_env(
        &mut self,
        path: &[Token<'_>],
        var: &EnvVar,
    ) -> Result<(), serde_json::Error> {
        self.push_with(
            "replace",
            path,
            Some(|out: &mut Vec<u8>| write_env(out, var)),
        )
    }

    /// Writes one operation, its value serialized by serde.
    fn push<T: Serialize + ?Sized>(
        &mut self,
        op: &str,
        path: &[Token<'_>],
        value: Option<&T>,
    ) -> Result<(), serde_json::Error> {
        self.push_with(
            op,
            path,
            value.map(|v| move |out: &mut Vec<u8>| serde_json::to_writer(out, v)),
        )
    }

    /// Writes one operation before the closing `]`, its value by `value`;
    /// on an error the text is left as it was.
    fn push_with(
        &mut self,
        op: &str,
        path: &[Token<'_>],
        value: Option<impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>>,
    ) -> Result<(), serde_json::Error> {
        let before = self.json.len() - 1;
        self.json.truncate(before);
        if self.len > 0 {
            self.json.push(b',');
        }
        self.json.extend_from_slice(b"{\"op\":\"");
        self.json.extend_from_slice(op.as_bytes());
        self.json.extend_from_slice(b"\",\"path\":\"");
        write_pointer(&mut self.json, path);
        self.json.push(b'"');
        if let Some(write) = value {
            self.json.extend_from_slice(b",\"value\":");
            if let Err(e) = write(&mut self.json) {
                self.json.truncate(before);
                self.json.push(b']');
                return Err(e);
            }
        }
        self.json.extend_from_slice(b"}]");
        self.len += 1;
        Ok(())
    }

    /// The same operations as `json_patch` values, to apply them to a
    /// document. From the patch's own JSON text, so it is exactly what the
    /// API server receives.
    pub fn to_json_patch(&self) -> Result<json_patch::Patch, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }
}

/// Written as the JSON array it is.
impl Serialize for Patch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(&self.json).map_err(serde::ser::Error::custom)?;
        let raw = serde_json::value::RawValue::from_string(text.to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// Read as an RFC 6902 patch (each operation checked by `json_patch`).
impl<'de> serde::Deserialize<'de> for Patch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ops = json_patch::Patch::deserialize(d)?;
        let json = serde_json::to_vec(&ops).map_err(serde::de::Error::custom)?;
        Ok(Self {
            json,
            len: ops.0.len(),
        })
    }
}

/// A JSON Pointer, inside a JSON string: RFC 6901's `~0` and `~1`, then
/// JSON's own escapes for what a key may hold.
fn write_pointer(out: &mut Vec<u8>, path: &[Token<'_>]) {
    for t in path {
        out.push(b'/');
        match *t {
            Token::Index(i) => {
                let mut buf = itoa::Buffer::new();
                out.extend_from_slice(buf.format(i).as_bytes());
            }
            Token::Key(k) if json_text::clean_run(k.as_bytes(), true) == k.len() => {
                out.extend_from_slice(k.as_bytes());
            }
            Token::Key(k) => {
                json_text::push_escaped(out, &k.replace('~', "~0").replace('/', "~1"));
            }
        }
    }
}

/// An env var as k8s-openapi serializes it (`name`, `value`, `valueFrom`),
/// written directly for a plain value and a `fieldRef`, the forms the
/// injection adds some twenty of per pod: serde's derived impls cost a call
/// per field and per string. Any other source goes through serde. `tests`
/// checks both against serde's text.
fn write_env(out: &mut Vec<u8>, var: &EnvVar) -> Result<(), serde_json::Error> {
    let field_path = match &var.value_from {
        None => None,
        Some(EnvVarSource {
            config_map_key_ref: None,
            field_ref:
                Some(ObjectFieldSelector {
                    api_version: None,
                    field_path,
                }),
            resource_field_ref: None,
            secret_key_ref: None,
        }) => Some(field_path),
        Some(_) => return serde_json::to_writer(out, var),
    };
    out.extend_from_slice(b"{\"name\":");
    json_text::write_string(out, &var.name);
    if let Some(v) = &var.value {
        out.extend_from_slice(b",\"value\":");
        json_text::write_string(out, v);
    }
    if let Some(p) = field_path {
        out.extend_from_slice(b",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":");
        json_text::write_string(out, p);
        out.extend_from_slice(b"}}");
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_as_rfc_6902_and_round_trips_through_json_patch() {
        let mut ops = Patch::new();
        ops.add(&path!["metadata", "labels", "a/b~c\"\\\n"], "x\"y")
            .expect("add");
        ops.replace(&path!["spec", "n"], &json!({"k": [1]}))
            .expect("replace");
        ops.remove(&path!["spec", "old"]);
        ops.add(&path!["spec", "list", 0], &2).expect("index");
        ops.add(&path!["spec", "list", "-"], &3).expect("end");
        assert_eq!(ops.len(), 5);
        let text = serde_json::to_value(&ops).expect("json");
        assert_eq!(
            text,
            json!([
                {"op": "add", "path": "/metadata/labels/a~1b~0c\"\\\n", "value": "x\"y"},
                {"op": "replace", "path": "/spec/n", "value": {"k": [1]}},
                {"op": "remove", "path": "/spec/old"},
                {"op": "add", "path": "/spec/list/0", "value": 2},
                {"op": "add", "path": "/spec/list/-", "value": 3},
            ])
        );
        let mut doc = json!({"metadata": {"labels": {}}, "spec": {"n": 0, "old": 1, "list": [1]}});
        json_patch::patch(&mut doc, &ops.to_json_patch().expect("patch").0).expect("applies");
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"a/b~c\"\\\n": "x\"y"}}, "spec": {"n": {"k": [1]}, "list": [2, 1, 3]}})
        );
    }

    #[test]
    fn the_first_operation_goes_before_the_others_and_the_text_stays_whole() {
        let mut p = Patch::new();
        p.add_first(&path!["metadata"], &json!({})).expect("first");
        assert_eq!(p.json(), br#"[{"op":"add","path":"/metadata","value":{}}]"#);
        let mut p = Patch::new();
        p.add(&path!["metadata", "labels"], &json!({"a": "b"}))
            .expect("add");
        p.add_first(&path!["metadata"], &json!({})).expect("first");
        let v: serde_json::Value = serde_json::from_slice(p.json()).expect("json");
        assert_eq!(v[0]["path"], "/metadata");
        assert_eq!(v[1]["path"], "/metadata/labels");
        assert_eq!(p.len(), 2);
    }

    /// Env vars written by hand are serde's text, byte for byte, and the
    /// other sources go through serde.
    #[test]
    fn env_vars_are_written_as_serde_writes_them() {
        use k8s_openapi::api::core::v1::{
            ConfigMapKeySelector, ResourceFieldSelector, SecretKeySelector,
        };
        let field = |p: &str, api: Option<&str>| EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: api.map(String::from),
                field_path: p.into(),
            }),
            ..Default::default()
        };
        let cases = [
            EnvVar {
                name: "OTEL_SERVICE_NAME".into(),
                value: Some("checkout".into()),
                value_from: None,
            },
            EnvVar {
                name: "EMPTY".into(),
                value: None,
                value_from: None,
            },
            EnvVar {
                name: "Q\"\\\n\u{1}é".into(),
                value: Some("a \"b\" \\ c\td".into()),
                value_from: None,
            },
            EnvVar {
                name: "OTEL_POD_IP".into(),
                value: None,
                value_from: Some(field("status.podIP", None)),
            },
            EnvVar {
                name: "BOTH".into(),
                value: Some("x".into()),
                value_from: Some(field("metadata.labels['a\"b']", None)),
            },
            EnvVar {
                name: "API".into(),
                value: None,
                value_from: Some(field("metadata.name", Some("v1"))),
            },
            EnvVar {
                name: "SECRET".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "s".into(),
                        key: "k".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: "CM".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "c".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: "LIMIT".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    resource_field_ref: Some(ResourceFieldSelector {
                        container_name: Some("app".into()),
                        resource: "limits.cpu".into(),
                        divisor: None,
                    }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: "EMPTY_SOURCE".into(),
                value: None,
                value_from: Some(EnvVarSource::default()),
            },
        ];
        for var in cases {
            let mut ours = Vec::new();
            write_env(&mut ours, &var).expect("env");
            let theirs = serde_json::to_vec(&var).expect("json");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{var:?}"
            );
        }
        let mut p = Patch::new();
        p.add_env(
            &path!["env", "-"],
            &EnvVar {
                name: "A".into(),
                value: Some("1".into()),
                value_from: None,
            },
        )
        .expect("add");
        p.replace_env(
            &path!["env", 0],
            &EnvVar {
                name: "A".into(),
                value: Some("2".into()),
                value_from: None,
            },
        )
        .expect("replace");
        assert_eq!(
            p.json(),
            br#"[{"op":"add","path":"/env/-","value":{"name":"A","value":"1"}},{"op":"replace","path":"/env/0","value":{"name":"A","value":"2"}}]"#
        );
    }

    /// A value that cannot be serialized leaves the patch as it was.
    #[test]
    fn a_failed_value_leaves_no_trace() {
        let mut p = Patch::new();
        p.add(&path!["a"], &1).expect("add");
        let bad: std::collections::HashMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(p.add(&path!["b"], &bad).is_err());
        assert_eq!(p.len(), 1);
        assert_eq!(p.json(), br#"[{"op":"add","path":"/a","value":1}]"#);
        assert_eq!(Patch::new().json(), b"[]");
    }
}
