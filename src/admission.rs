//! The `admission.k8s.io/v1` wire protocol (SPEC §3).
//!
//! We own these types rather than use kube-core's because the response must
//! carry `patch` as a base64 string (kube-core writes an array of numbers,
//! kube-rs#1781), and because the request's `object` is kept raw: `/mutate`
//! decodes it as a typed Pod, `/validate` hands the whole review to Rego, and
//! neither pays for the other's parse.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const API_VERSION_V1: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// Why a request body is not an AdmissionReview we can answer. Maps to HTTP 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("body is not a valid AdmissionReview: {field}: {message}")]
    Json { field: String, message: String },
    #[error("apiVersion must be \"admission.k8s.io/v1\", got {0:?}")]
    ApiVersion(String),
    #[error("kind must be \"AdmissionReview\", got {0:?}")]
    Kind(String),
    #[error("AdmissionReview has no `request`")]
    MissingRequest,
    #[error("request.uid must not be empty")]
    EmptyUid,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

/// An AdmissionRequest. `object` and `old_object` stay raw JSON.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default, borrow)]
    pub object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub old_object: Option<&'a RawValue>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub user_info: UserInfo,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// A parsed review: the request plus the body it borrows from, which
/// `/validate` passes whole to the policy engine.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub request: Request<'a>,
    pub body: &'a [u8],
}

/// Re-parses a body that failed, tracking the path to the bad field.
fn decode_error(body: &[u8]) -> DecodeError {
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, Review<'_>>(de) {
        Ok(_) => DecodeError::Json {
            field: "body".into(),
            message: "invalid JSON".into(),
        },
        Err(e) => {
            let field = e.path().to_string();
            DecodeError::Json {
                field: if field == "." { "body".into() } else { field },
                message: json_reason(&e.into_inner()),
            }
        }
    }
}

/// What serde_json says is wrong, without its position when the field path
/// locates it: `invalid type: map, expected a sequence`, not `... at line 1
/// column 504`, which in a one-line body (what the API server sends) is no
/// help, and in a re-parsed part of the body points at the wrong place. A
/// syntax error keeps its position: the path stops where the text broke.
pub fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if e.is_data() {
        let at = format!(" at line {} column {}", e.line(), e.column());
        if let Some(reason) = text.strip_suffix(&at) {
            return reason.to_string();
        }
    }
    text
}

/// Why `object` (`request.object` of a review) is not a `T`, naming the
/// field: `request.object.spec.containers: invalid type: map, expected a
/// sequence`. For the error path only: it parses `object` again, tracking
/// the path, which the fast parse does not pay for. `None` when this parse
/// finds nothing wrong (the fast one refused something else).
pub fn object_error<T: serde::de::DeserializeOwned>(object: &str) -> Option<String> {
    let de = &mut serde_json::Deserializer::from_str(object);
    let e = serde_path_to_error::deserialize::<_, T>(de).err()?;
    let path = e.path().to_string();
    let field = match path.as_str() {
        "." => "request.object".to_string(),
        p if p.starts_with('[') => format!("request.object{p}"),
        p => format!("request.object.{p}"),
    };
    Some(format!("{field}: {}", json_reason(e.inner())))
}

/// Only `request.uid`, skipping everything else, for answering a request
/// whose full decode did not happen (overload, deadline).
pub fn peek_uid(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Outer {
        request: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        uid: String,
    }
    serde_json::from_slice::<Outer>(body)
        .ok()
        .map(|o| o.request.uid)
        .filter(|u| !u.is_empty())
}

/// Parses a body into a request, checking the envelope.
pub fn decode(body: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    // The fast path; only a body that fails is parsed again to name the field.
    let review: Review<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => return Err(decode_error(body)),
    };
    if review.api_version != API_VERSION_V1 {
        return Err(DecodeError::ApiVersion(review.api_version));
    }
    if review.kind != KIND {
        return Err(DecodeError::Kind(review.kind));
    }
    let request = review.request.ok_or(DecodeError::MissingRequest)?;
    if request.uid.is_empty() {
        return Err(DecodeError::EmptyUid);
    }
    Ok(Decoded { request, body })
}

impl Request<'_> {
    /// True for the one request injection applies to: CREATE of a core/v1 pod.
    pub fn is_pod_create(&self) -> bool {
        self.operation == Operation::Create
            && self.resource.group.is_empty()
            && self.resource.resource == "pods"
            && self.sub_resource.as_deref().is_none_or(str::is_empty)
    }

    /// `kind/name` for logs; the name may be empty on CREATE with generateName.
    /// Displayed where it is written, not built as a `String` per request.
    pub fn workload(&self) -> Workload<'_> {
        Workload(self)
    }
}

/// [`Request::workload`]: `kind/name`.
pub struct Workload<'r>(&'r Request<'r>);

impl std::fmt::Display for Workload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.0.name.is_empty() {
            "<generated>"
        } else {
            &self.0.name
        };
        write!(f, "{}/{}", self.0.kind.kind, name)
    }
}

/// The `/mutate` dispatch point: the injection core implements it.
pub trait Mutate: Send + Sync + 'static {
    fn mutate(&self, review: &Decoded<'_>) -> Verdict;

    /// Whether the work is pure and bounded by the body's size (no I/O, no
    /// waiting), so that a small body may be answered on the async worker
    /// itself: for such work the hand-off to the blocking pool costs more
    /// than the work. Unbounded implementations keep the pool, and with it an
    /// answer at the deadline whatever the work does.
    fn bounded(&self) -> bool {
        false
    }
}

/// The `/validate` dispatch point: the policy engine implements it.
pub trait Validate: Send + Sync + 'static {
    fn validate(&self, review: &Decoded<'_>) -> Verdict;
}

/// What the server decided about one request. Built by the injection core and
/// the policy engine; encoded by [`encode`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// JSON Patch operations; an empty patch is never sent.
    pub patch: Option<crate::patch::Patch>,
    pub warnings: Vec<String>,
    /// Set when the request is denied; every message is listed.
    pub denials: Vec<String>,
    pub audit_annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct StatusOut {
    code: u16,
    message: String,
    reason: &'static str,
}

/// How a verdict was answered, for metrics and the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Allowed,
    Patched,
    Denied,
}

/// Encodes a verdict as the response AdmissionReview.
///
/// Written field by field rather than through a derived struct: the patch,
/// a few KiB of base64, is encoded straight into the answer, where a
/// `RawValue` or a `&str` field would be scanned once more.
/// Every other value goes through serde_json, escaped.
pub fn encode(uid: &str, verdict: &Verdict) -> Result<(Vec<u8>, Answer), serde_json::Error> {
    let denied = !verdict.denials.is_empty();
    let patch = match &verdict.patch {
        Some(p) if !p.is_empty() && !denied => Some(p.json()),
        _ => None,
    };
    let answer = match (denied, patch.is_some()) {
        (true, _) => Answer::Denied,
        (false, true) => Answer::Patched,
        (false, false) => Answer::Allowed,
    };
    let b64 = patch.as_ref().map_or(0, |p| p.len().div_ceil(3) * 4);
    let said: usize = verdict.warnings.iter().map(|w| w.len() + 3).sum();
    let mut out = Vec::with_capacity(b64 + 192 + uid.len() + said);
    out.extend_from_slice(b"{\"apiVersion\":\"");
    out.extend_from_slice(API_VERSION_V1.as_bytes());
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(KIND.as_bytes());
    out.extend_from_slice(b"\",\"response\":{\"uid\":");
    serde_json::to_writer(&mut out, uid)?;
    out.extend_from_slice(if denied {
        b",\"allowed\":false,\"status\":"
    } else {
        b",\"allowed\":true"
    });
    if denied {
        serde_json::to_writer(
            &mut out,
            &StatusOut {
                code: 403,
                message: verdict.denials.join("; "),
                reason: "Forbidden",
            },
        )?;
    }
    if let Some(json) = &patch {
        out.extend_from_slice(b",\"patch\":\"");
        // SIMD base64, into the reserved room: with a scalar encoder, the
        // base64 is most of the cost of encoding an answer.
        base64_simd::STANDARD.encode_append(json, &mut out);
        out.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
    }
    // One line each, at most 256 characters, a bounded count (SPEC §10):
    // the API server truncates or drops longer ones.
    if !verdict.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        serde_json::to_writer(&mut out, &crate::warnings::clamped(&verdict.warnings))?;
    }
    if !verdict.audit_annotations.is_empty() {
        out.extend_from_slice(b",\"auditAnnotations\":");
        serde_json::to_writer(&mut out, &verdict.audit_annotations)?;
    }
    out.extend_from_slice(b"}}");
    Ok((out, answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::{Value, json};

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request
        }))
        .expect("json")
    }

    fn one_op(path: &[crate::patch::Token<'_>], value: &Value) -> crate::patch::Patch {
        let mut p = crate::patch::Patch::new();
        p.add(path, value).expect("op");
        p
    }

    fn pod_request() -> Value {
        json!({
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "object": {"metadata": {}}
        })
    }

    #[test]
    fn decodes_a_pod_create() {
        let body = review(pod_request());
        let r = decode(&body).expect("decodes");
        assert!(r.request.is_pod_create());
        assert_eq!(r.request.namespace.as_deref(), Some("shop"));
        assert_eq!(
            r.request.object.map(|o| o.get()),
            Some(r#"{"metadata":{}}"#)
        );
        assert_eq!(r.request.workload().to_string(), "Pod/<generated>");
    }

    #[test]
    fn envelope_errors_are_named() {
        let mut wrong_version = pod_request();
        wrong_version["uid"] = json!(7);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "body is not a valid AdmissionReview"),
            (review(wrong_version), "request.uid"),
            (
                serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": pod_request()})).expect("j"),
                "apiVersion must be \"admission.k8s.io/v1\", got \"admission.k8s.io/v1beta1\"",
            ),
            (
                serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"})).expect("j"),
                "kind must be \"AdmissionReview\"",
            ),
            (
                serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).expect("j"),
                "no `request`",
            ),
        ];
        for (body, needle) in cases {
            let err = decode(&body).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    /// A field's error names its path and says what is wrong, without
    /// serde_json's `at line 1 column N` (a one-line body's column); a
    /// syntax error keeps its position, the one thing that locates it.
    #[test]
    fn decode_errors_name_the_path_not_the_column() {
        let mut uid = pod_request();
        uid["uid"] = json!(7);
        let mut op = pod_request();
        op["operation"] = json!("CREAT");
        let mut kind = pod_request();
        kind["kind"] = json!("Pod");
        for (body, want) in [
            (
                review(uid),
                "body is not a valid AdmissionReview: request.uid: invalid type: integer `7`, expected a string",
            ),
            (
                review(op),
                "body is not a valid AdmissionReview: request.operation: unknown variant `CREAT`, expected one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT`",
            ),
            (
                review(kind),
                "body is not a valid AdmissionReview: request.kind: invalid type: string \"Pod\", expected struct GroupVersionKind",
            ),
        ] {
            assert_eq!(decode(&body).expect_err(want).to_string(), want);
        }
        let syntax = decode(b"{\"apiVersion\": }").expect_err("syntax");
        assert!(
            syntax.to_string().contains("at line 1 column 16"),
            "{syntax}"
        );
    }

    /// `request.object`'s errors, found on the error path by parsing it
    /// again, name the field from the review's root.
    #[test]
    fn object_errors_name_the_field_from_the_review_root() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Shape {
            spec: Option<k8s_openapi::api::core::v1::PodSpec>,
        }
        assert_eq!(
            object_error::<Shape>(r#"{"spec": {"containers": {"name": "a"}}}"#).as_deref(),
            Some("request.object.spec.containers: invalid type: map, expected a sequence")
        );
        assert_eq!(
            object_error::<Shape>(r#""a pod""#).as_deref(),
            Some("request.object: invalid type: string \"a pod\", expected struct Shape")
        );
        // serde reads a struct from an array too, field by field.
        assert_eq!(
            object_error::<Shape>(r#"[1]"#).as_deref(),
            Some("request.object[0]: invalid type: integer `1`, expected PodSpec")
        );
        assert_eq!(object_error::<Shape>(r#"{"spec": null}"#), None);
    }

    #[test]
    fn other_operations_and_subresources_are_not_injected() {
        for (field, value) in [
            ("operation", json!("UPDATE")),
            ("subResource", json!("status")),
            (
                "resource",
                json!({"group": "apps", "version": "v1", "resource": "deployments"}),
            ),
        ] {
            let mut req = pod_request();
            req[field] = value;
            let body = review(req);
            assert!(
                !decode(&body).expect("ok").request.is_pod_create(),
                "{field}"
            );
        }
    }

    fn response(bytes: &[u8]) -> Value {
        serde_json::from_slice::<Value>(bytes).expect("json")["response"].clone()
    }

    #[test]
    fn allowed_has_no_patch_fields() {
        let (bytes, answer) = encode("u-1", &Verdict::default()).expect("enc");
        let r = response(&bytes);
        assert_eq!(answer, Answer::Allowed);
        assert_eq!(r, json!({"uid": "u-1", "allowed": true}));
    }

    #[test]
    fn empty_patch_is_not_sent() {
        let v = Verdict {
            patch: Some(crate::patch::Patch::new()),
            ..Default::default()
        };
        let (bytes, answer) = encode("u", &v).expect("enc");
        assert_eq!(answer, Answer::Allowed);
        let r = response(&bytes);
        assert!(
            r.get("patch").is_none() && r.get("patchType").is_none(),
            "{r}"
        );
    }

    #[test]
    fn patch_is_base64_json_patch() {
        let mut patch = crate::patch::Patch::new();
        patch
            .add(
                &otel_admission_core::path!["metadata", "labels"],
                &json!({"a": "b"}),
            )
            .expect("op");
        let v = Verdict {
            patch: Some(patch.clone()),
            warnings: vec!["injected python".into()],
            ..Default::default()
        };
        let (bytes, answer) = encode("u", &v).expect("enc");
        assert_eq!(answer, Answer::Patched);
        let r = response(&bytes);
        assert_eq!(r["patchType"], "JSONPatch");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().expect("patch is a string"))
            .expect("base64");
        let back: json_patch::Patch = serde_json::from_slice(&raw).expect("patch json");
        assert_eq!(back, patch.to_json_patch().expect("patch"));
        assert_eq!(r["warnings"], json!(["injected python"]));
    }

    #[test]
    fn denial_is_403_with_every_message_and_no_patch() {
        let v = Verdict {
            patch: Some(one_op(&otel_admission_core::path!["x"], &json!(1))),
            denials: vec![
                "[no-latest] image uses :latest".into(),
                "[limits] no memory limit".into(),
            ],
            ..Default::default()
        };
        let (bytes, answer) = encode("u", &v).expect("enc");
        assert_eq!(answer, Answer::Denied);
        let r = response(&bytes);
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 403);
        let msg = r["status"]["message"].as_str().expect("msg");
        assert!(
            msg.contains("[no-latest]") && msg.contains("[limits]"),
            "{msg}"
        );
        assert!(r.get("patch").is_none());
    }

    #[test]
    fn every_field_is_escaped_and_the_answer_is_one_json_document() {
        let v = Verdict {
            patch: Some(one_op(
                &otel_admission_core::path!["metadata", "labels", "k\"/"],
                &json!("v\u{e9}\n"),
            )),
            warnings: vec!["a \"quoted\" \\ warning".into()],
            audit_annotations: [("otel-admission.io/\"k".to_string(), "v\"".to_string())].into(),
            ..Default::default()
        };
        let (bytes, answer) = encode("u\"id\\", &v).expect("enc");
        assert_eq!(answer, Answer::Patched);
        let doc: Value = serde_json::from_slice(&bytes).expect("one JSON document");
        assert_eq!(doc["apiVersion"], API_VERSION_V1);
        assert_eq!(doc["kind"], KIND);
        let r = &doc["response"];
        assert_eq!(r["uid"], "u\"id\\");
        assert_eq!(r["allowed"], true);
        assert_eq!(r["warnings"], json!(["a \"quoted\" \\ warning"]));
        assert_eq!(
            r["auditAnnotations"],
            json!({"otel-admission.io/\"k": "v\""})
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().expect("patch"))
            .expect("base64");
        let back: Value = serde_json::from_slice(&raw).expect("patch json");
        assert_eq!(
            back,
            json!([{"op": "add", "path": "/metadata/labels/k\"~1", "value": "v\u{e9}\n"}])
        );
    }

    #[test]
    fn warnings_are_clamped_in_every_answer() {
        let verdict = Verdict {
            warnings: (0..100)
                .map(|i| format!("line {i}\nsecond line {}", "x".repeat(400)))
                .collect(),
            ..Default::default()
        };
        let (json, _) = encode("u", &verdict).expect("encode");
        let v: Value = serde_json::from_slice(&json).expect("json");
        let w = v["response"]["warnings"].as_array().expect("warnings");
        assert_eq!(w.len(), 32, "a bounded count");
        for x in w {
            let s = x.as_str().expect("string");
            assert!(!s.contains('\n') && s.chars().count() <= 256, "{s}");
        }
        assert!(
            w[31].as_str().is_some_and(|s| s.contains("69 more")),
            "{:?}",
            w[31]
        );
    }
}
