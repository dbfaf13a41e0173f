//! Multi-document YAML (JSON is YAML), read as JSON values. Shared by the
//! manifests `inject` reads and the policy files, which only differ in how
//! they name an error.

use serde::Deserialize as _;
use serde_json::Value;

/// A document that did not parse; `index` counts every document, empty ones too.
#[derive(Debug)]
pub struct DocumentError {
    pub index: usize,
    pub message: String,
}

/// Every non-empty document in `text`, in order.
pub fn documents(text: &str) -> Result<Vec<Value>, DocumentError> {
    let mut out = Vec::new();
    for (index, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(de).map_err(|e| DocumentError {
            index,
            message: e.to_string(),
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}
