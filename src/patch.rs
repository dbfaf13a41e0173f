//! The RFC 6902 JSON Patch a `/mutate` answer carries, each operation's
//! value kept as the JSON text it was serialized to when the edit was made.
//!
//! `json_patch::Patch` holds `serde_json::Value`s: every injected container,
//! volume and variable was turned into a tree of maps and strings, and the
//! answer then serialized that tree again, about a third of a typical
//! mutation's time (issue 16, `benches/inject.rs` `stages`). Here a value is
//! serialized once, straight from its typed struct, and the answer copies
//! the text. [`Patch::to_json_patch`] gives the `json_patch` form, to apply
//! the patch to a document (`inject`, the tests).

use json_patch::jsonptr::PointerBuf;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// An operation's kind; we only ever add, replace and remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Replace,
    Remove,
}

/// One operation: `{"op", "path", "value"?}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Operation {
    pub op: Op,
    pub path: PointerBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Box<RawValue>>,
}

impl PartialEq for Operation {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op
            && self.path == other.path
            && self.value.as_ref().map(|v| v.get()) == other.value.as_ref().map(|v| v.get())
    }
}

impl Operation {
    /// `add` of `value` at `path`, `value` serialized now.
    pub fn add<T: Serialize + ?Sized>(
        path: PointerBuf,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            op: Op::Add,
            path,
            value: Some(serde_json::value::to_raw_value(value)?),
        })
    }

    /// `replace` at `path` with `value`, serialized now.
    pub fn replace<T: Serialize + ?Sized>(
        path: PointerBuf,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            op: Op::Replace,
            value: Some(serde_json::value::to_raw_value(value)?),
            path,
        })
    }

    pub fn remove(path: PointerBuf) -> Self {
        Self {
            op: Op::Remove,
            path,
            value: None,
        }
    }
}

/// The operations, in the order they apply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Patch(pub Vec<Operation>);

impl Patch {
    /// The same operations as `json_patch` values, to apply them to a
    /// document. Through the patch's own JSON text, so it is exactly what
    /// the API server receives.
    pub fn to_json_patch(&self) -> Result<json_patch::Patch, serde_json::Error> {
        serde_json::to_vec(self).and_then(|b| serde_json::from_slice(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_as_rfc_6902_and_round_trips_through_json_patch() {
        let ops = Patch(vec![
            Operation::add(
                PointerBuf::from_tokens(["metadata", "labels", "a/b~c"]),
                "x\"y",
            )
            .expect("add"),
            Operation::replace(PointerBuf::from_tokens(["spec", "n"]), &json!({"k": [1]}))
                .expect("replace"),
            Operation::remove(PointerBuf::from_tokens(["spec", "old"])),
        ]);
        let text = serde_json::to_value(&ops).expect("json");
        assert_eq!(
            text,
            json!([
                {"op": "add", "path": "/metadata/labels/a~1b~0c", "value": "x\"y"},
                {"op": "replace", "path": "/spec/n", "value": {"k": [1]}},
                {"op": "remove", "path": "/spec/old"},
            ])
        );
        let mut doc = json!({"metadata": {"labels": {}}, "spec": {"n": 0, "old": 1}});
        json_patch::patch(&mut doc, &ops.to_json_patch().expect("patch").0).expect("applies");
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"a/b~c": "x\"y"}}, "spec": {"n": {"k": [1]}}})
        );
    }
}
